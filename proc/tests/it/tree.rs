//! Process trees: daemons end with their parent, however the parent ends;
//! non-daemons outlive a killed parent, as in CPython.

use std::time::Duration;

use mp_proc::{Connection, Error, Process, StartMethod, pipe};

use mp_testkit::guard;

mp_testkit::for_each_method!(
    daemon_grandchild_ends_when_its_parent_returns,
    daemon_grandchild_ends_when_its_parent_is_killed
);

/// A generous bound that only keeps a broken build from hanging the suite.
const HANG_GUARD: Duration = Duration::from_secs(120);

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Report {
    Started(u32),
    Ready(String),
}

/// Says it is ready on `report`, then waits on `hold` until killed or released.
fn holder((report, hold, who): (Connection, Connection, String)) {
    report.send(&Report::Ready(who)).unwrap();
    let _ = hold.recv_bytes();
}

/// Starts a daemon grandchild that waits on `hold`, waits until it is ready,
/// then returns (and its exit function terminates the daemon).
fn starts_daemon_and_returns((report, hold, method): (Connection, Connection, StartMethod)) {
    let (ready_here, ready_there) = pipe(true).unwrap();
    let mut d = Process::new(daemon_holder, (ready_there, report.clone(), hold))
        .daemon(true)
        .start_method(method);
    d.start().unwrap();
    assert_eq!(
        ready_here.recv::<Report>().unwrap(),
        Report::Ready("daemon".into())
    );
    report.send(&Report::Started(d.pid().unwrap())).unwrap();
}

fn daemon_holder((ready, report, hold): (Connection, Connection, Connection)) {
    ready.send(&Report::Ready("daemon".into())).unwrap();
    let _keep = report;
    let _ = hold.recv_bytes();
}

fn daemon_grandchild_ends_when_its_parent_returns(method: StartMethod) {
    let _g = guard();
    let (report_here, report_there) = pipe(true).unwrap();
    let (_hold_here, hold_there) = pipe(true).unwrap();
    let mut middle = Process::new(
        starts_daemon_and_returns,
        (report_there, hold_there, method),
    )
    .start_method(method);
    middle.start().unwrap();
    assert!(matches!(
        report_here.recv::<Report>().unwrap(),
        Report::Started(_)
    ));
    assert_eq!(middle.join().unwrap(), 0);
    // The daemon held `report` too: end of file means it is gone, although
    // `hold` never released it.
    assert!(
        report_here.poll(Some(HANG_GUARD)).unwrap(),
        "the daemon outlived its parent"
    );
    assert!(matches!(report_here.recv::<Report>(), Err(Error::Eof)));
}

/// Starts a daemon and a non-daemon grandchild, then waits to be killed.
fn starts_two_and_waits(
    (report, hold, worker_report, worker_hold, method): (
        Connection,
        Connection,
        Connection,
        Connection,
        StartMethod,
    ),
) {
    let mut d = Process::new(holder, (report.clone(), hold.clone(), "daemon".to_string()))
        .daemon(true)
        .start_method(method);
    d.start().unwrap();
    let mut w = Process::new(holder, (worker_report, worker_hold, "worker".to_string()))
        .start_method(method);
    w.start().unwrap();
    report.send(&Report::Started(d.pid().unwrap())).unwrap();
    report.send(&Report::Started(w.pid().unwrap())).unwrap();
    let _ = hold.recv_bytes();
}

fn daemon_grandchild_ends_when_its_parent_is_killed(method: StartMethod) {
    let _g = guard();
    let (report_here, report_there) = pipe(true).unwrap();
    let (hold_here, hold_there) = pipe(true).unwrap();
    let (worker_here, worker_there) = pipe(true).unwrap();
    let (worker_hold_here, worker_hold_there) = pipe(true).unwrap();
    let mut middle = Process::new(
        starts_two_and_waits,
        (
            report_there,
            hold_there,
            worker_there,
            worker_hold_there,
            method,
        ),
    )
    .start_method(method);
    middle.start().unwrap();
    let mut started = Vec::new();
    let mut daemon_ready = false;
    while started.len() < 2 || !daemon_ready {
        match report_here.recv::<Report>().unwrap() {
            Report::Started(pid) => started.push(pid),
            Report::Ready(who) => daemon_ready |= who == "daemon",
        }
    }
    assert_eq!(
        worker_here.recv::<Report>().unwrap(),
        Report::Ready("worker".into())
    );
    middle.kill().unwrap();
    assert_eq!(middle.join().unwrap(), -libc::SIGKILL);
    // The daemon notices the death (no code of the parent ran) and ends.
    assert!(
        report_here.poll(Some(HANG_GUARD)).unwrap(),
        "the daemon outlived its killed parent"
    );
    assert!(matches!(report_here.recv::<Report>(), Err(Error::Eof)));
    // The non-daemon goes on, as in CPython, until released.
    assert!(
        mp_testkit::exists(started[1]),
        "the non-daemon grandchild was killed with its parent"
    );
    drop(worker_hold_here);
    assert!(matches!(worker_here.recv::<Report>(), Err(Error::Eof)));
    drop(hold_here);
}
