//! Behaviours that need a fresh process (the logger): each runs in a re-run
//! of this binary, and the test checks what it printed.

use mp_testkit::{records, scenario as run};

/// Not a test of its own: the body of the scenarios, selected by env var.
#[test]
fn scenario() {
    let Some((what, _)) = mp_testkit::requested_scenario() else {
        return;
    };
    match what.as_str() {
        "panicking_thread" => panicking_thread(),
        "panicking_tasks" => panicking_tasks(),
        other => panic!("unknown scenario {other}"),
    }
}

fn panicking_thread() {
    mp_logging::log_to_stderr(Some(mp_logging::Level::Error));
    let mut p = mp_dummy::Process::new(|_: ()| panic!("boom in a thread"), ()).name("doomed");
    p.start().unwrap();
    println!("exit code {}", p.join().unwrap());
}

fn panicking_tasks() {
    let pool = mp_dummy::ThreadPool::new(Some(2)).unwrap();
    for _ in 0..20 {
        let e = pool.apply(|_: ()| -> u32 { panic!("a task's panic") }, ());
        println!("{}", e.unwrap_err());
        let e = pool.map(
            |x: u32| if x == 3 { panic!("a task's panic") } else { x },
            0..8,
        );
        println!("{}", e.unwrap_err());
    }
}

/// A task's panic is its call's error, and is printed nowhere: neither by a
/// worker thread nor by a caller that ran the task while it waited (as
/// CPython's pools print nothing for a task's exception).
#[test]
fn a_tasks_panic_is_its_calls_error_and_is_not_printed() {
    let _g = mp_testkit::guard();
    let out = run("panicking_tasks");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("the task panicked: a task's panic").count(),
        40,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("a task's panic"), "{stderr}");
}

/// A panicking target: exit code 1, as a process would report, and the
/// panic message in the log (threads log as their process, `MainProcess`,
/// as in CPython).
#[test]
fn a_panicking_thread_exits_1_and_its_message_is_logged() {
    let _g = mp_testkit::guard();
    let out = run("panicking_thread");
    assert!(String::from_utf8_lossy(&out.stdout).contains("exit code 1"));
    let logged = records(&out);
    assert!(
        logged
            .iter()
            .any(|l| l.starts_with("[ERROR/MainProcess] thread doomed panicked: boom in a thread")),
        "{logged:?}"
    );
}
