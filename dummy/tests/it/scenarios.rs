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
        other => panic!("unknown scenario {other}"),
    }
}

fn panicking_thread() {
    mp_logging::log_to_stderr(Some(mp_logging::Level::Error));
    let mut p = mp_dummy::Process::new(|_: ()| panic!("boom in a thread"), ()).name("doomed");
    p.start().unwrap();
    println!("exit code {}", p.join().unwrap());
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
