//! `parent_process()` that can be watched (issue 16): CPython's
//! `_TestProcess.test_parent_process_attributes` and `test_parent_process`,
//! and what `is_alive`/`join` mean on the other `ProcessInfo`s, under fork,
//! spawn and forkserver.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use mp_proc::{
    Connection, Error, Event, Process, StartMethod, active_children, current_process,
    parent_process, pipe,
};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    test_parent_process_attributes,
    test_parent_process,
    a_grandchild_holds_its_parents_sentinel_not_its_grandparents,
    an_active_child_info_is_watched_and_joined,
);

/// The deadline of a wait that only a bug makes long (CPython's
/// `support.LONG_TIMEOUT`).
const LONG: Duration = Duration::from_secs(300);

/// CPython's `_test_send_parent_process`.
fn send_parent_process(conn: Connection) {
    let parent = parent_process().unwrap();
    conn.send(&(parent.pid(), parent.name().to_owned()))
        .unwrap();
}

/// `_TestProcess.test_parent_process_attributes`.
fn test_parent_process_attributes(method: StartMethod) {
    let _g = guard();
    assert!(parent_process().is_none());
    let (rconn, wconn) = pipe(false).unwrap();
    let mut p = Process::new(send_parent_process, wconn).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let (parent_pid, parent_name): (u32, String) = rconn.recv().unwrap();
    assert_eq!(parent_pid, current_process().pid());
    assert_eq!(parent_pid, std::process::id());
    assert_eq!(parent_name, current_process().name());
}

/// CPython's `_test_report_parent_status`: whether the parent is alive, then
/// again after a join with a timeout (CPython's `support.SHORT_TIMEOUT`,
/// here a deadline only: the parent is killed meanwhile).
fn report_parent_status(wconn: Connection) {
    let parent = parent_process().unwrap();
    let status = |alive: bool| if alive { "alive" } else { "not alive" };
    wconn.send(&status(parent.is_alive())).unwrap();
    let ended = parent.join_timeout(LONG).unwrap();
    assert_eq!(ended, !parent.is_alive());
    wconn.send(&status(parent.is_alive())).unwrap();
}

/// CPython's `_test_create_grandchild_process`: starts the grandchild, then
/// waits for ever (CPython sleeps 300 s; here an event nobody sets).
fn create_grandchild_process((wconn, method, never): (Connection, StartMethod, Event)) {
    let mut p = Process::new(report_parent_status, wconn).start_method(method);
    p.start().unwrap();
    let _ = never.wait(Some(LONG));
}

/// `_TestProcess.test_parent_process`: a grandchild sees its parent alive,
/// then, after its parent is killed, its join on the parent returns and the
/// parent is not alive.
fn test_parent_process(method: StartMethod) {
    let _g = guard();
    let (rconn, wconn) = pipe(false).unwrap();
    let never = Event::new().unwrap();
    let mut p =
        Process::new(create_grandchild_process, (wconn, method, never)).start_method(method);
    p.start().unwrap();
    assert!(
        rconn.poll(Some(LONG)).unwrap(),
        "Could not communicate with child process"
    );
    assert_eq!(rconn.recv::<String>().unwrap(), "alive");
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGTERM);
    assert!(
        rconn.poll(Some(LONG)).unwrap(),
        "Could not communicate with child process"
    );
    assert_eq!(rconn.recv::<String>().unwrap(), "not alive");
}

/// `pipe:[inode]` of a descriptor of this process.
fn target_of(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .display()
        .to_string()
}

/// The grandchild: its parent's sentinel and every descriptor it holds.
fn report_descriptors(conn: Connection) {
    let parent = parent_process().unwrap();
    let sentinel = target_of(parent.sentinel().unwrap());
    conn.send(&(sentinel, mp_testkit::open_fds())).unwrap();
}

/// The child: its parent's sentinel, then its child's report.
fn start_reporter((conn, method): (Connection, StartMethod)) {
    let sentinel = target_of(parent_process().unwrap().sentinel().unwrap());
    conn.send(&sentinel).unwrap();
    let mut p = Process::new(report_descriptors, conn).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

/// The sentinel is the child's own: a grandchild holds its parent's alive
/// pipe, never its grandparent's (which would keep a dead grandparent looking
/// alive to nobody's benefit, and leak a descriptor per generation).
fn a_grandchild_holds_its_parents_sentinel_not_its_grandparents(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(start_reporter, (there, method)).start_method(method);
    p.start().unwrap();
    let grandparents: String = here.recv().unwrap();
    let (parents, grandchild_fds): (String, Vec<String>) = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(grandparents.starts_with("pipe:["), "{grandparents}");
    assert_ne!(grandparents, parents);
    let holds = |target: &str| {
        grandchild_fds
            .iter()
            .any(|f| f.ends_with(&format!("->{target}")))
    };
    assert!(holds(&parents), "{grandchild_fds:?} lacks {parents}");
    assert!(
        !holds(&grandparents),
        "{grandchild_fds:?} holds {grandparents}"
    );
}

fn wait_for_event(go: Event) {
    go.wait(Some(LONG)).unwrap();
}

/// An `active_children()` entry is watched as its `Process` is; the current
/// process is alive and cannot be joined.
fn an_active_child_info_is_watched_and_joined(method: StartMethod) {
    let _g = guard();
    let me = current_process();
    assert!(me.is_alive());
    assert!(me.sentinel().is_none());
    assert!(matches!(me.join(), Err(Error::Invalid { .. })));
    assert!(matches!(
        me.join_timeout(Duration::ZERO),
        Err(Error::Invalid { .. })
    ));

    let go = Event::new().unwrap();
    let mut p = Process::new(wait_for_event, go.clone()).start_method(method);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    let info = active_children()
        .into_iter()
        .find(|c| c.pid() == pid)
        .unwrap();
    assert!(info.is_alive());
    assert!(info.sentinel().is_some());
    assert!(!info.join_timeout(Duration::ZERO).unwrap());
    go.set();
    info.join().unwrap();
    assert!(!info.is_alive());
    assert!(info.join_timeout(Duration::ZERO).unwrap());
    assert_eq!(p.join().unwrap(), 0);
    assert!(!active_children().iter().any(|c| c.pid() == pid));
}
