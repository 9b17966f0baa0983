//! Behaviours that need a fresh process (the logger): each runs in a re-run
//! of this binary, and the test checks what it printed.

use mp_logging::Level;
use mp_proc::StartMethod;
use mp_testkit::{guard, records, scenario as run};

/// Not a test of its own: the body of the scenarios, selected by env var.
#[test]
fn scenario() {
    let Some((what, method)) = mp_testkit::requested_scenario() else {
        return;
    };
    match what.as_str() {
        "session" => session(method),
        "owner_killed" => owner_killed(method),
        "owner_waiting" => crate::deadlines::owner_killed_in_a_huge_wait(method),
        "smm_quiet" => crate::shared_memory::a_list_released_on_shutdown(method),
        #[cfg(feature = "pool")]
        "coordinator" => crate::partition::coordinator(method),
        other => panic!("unknown scenario {other}"),
    }
}

mp_testkit::for_each_method!(
    the_documented_session_prints_its_lines_and_leaves_nothing,
    a_manager_whose_owner_is_killed_exits_and_cleans_up,
);

/// Starts a manager, reports its directory and pid, then dies by SIGKILL.
fn owner_killed(method: StartMethod) {
    mp_proc::set_start_method(method).unwrap();
    mp_logging::log_to_stderr(Some(Level::Info));
    let m = mp_manager::SyncManager::start().unwrap();
    let children = mp_proc::active_children();
    println!("manager {} at {}", children[0].pid(), m.address());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
}

fn a_manager_whose_owner_is_killed_exits_and_cleans_up(method: StartMethod) {
    let _g = guard();
    let out = mp_testkit::scenario_output(&format!("owner_killed:{method}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (pid, socket) = stdout
        .lines()
        .find_map(|l| l.split_once("manager ").map(|(_, r)| r))
        .and_then(|r| r.split_once(" at "))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    let pid: u32 = pid.parse().unwrap();
    let socket = std::path::PathBuf::from(socket);
    // It is reparented, so its end can only be watched for.
    let deadline = mp_proc::plumbing::deadline_after(std::time::Duration::from_secs(20))
        .expect("a near deadline");
    while mp_testkit::exists(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "manager {pid} outlived its owner"
        );
        std::thread::yield_now();
    }
    assert!(!socket.exists(), "the socket is left behind");
    assert!(
        !socket.parent().unwrap().exists(),
        "the temp directory is left behind"
    );
}

/// Python's documented `log_to_stderr()` session.
fn session(method: StartMethod) {
    mp_proc::set_start_method(method).unwrap();
    let logger = mp_logging::log_to_stderr(Some(Level::Info));
    logger.warning("doomed");
    let m = mp_manager::SyncManager::start().unwrap();
    drop(m);
}

fn the_documented_session_prints_its_lines_and_leaves_nothing(method: StartMethod) {
    let _g = guard();
    let out = run(&format!("session:{method}"));
    let got = records(&out);
    let expected = [
        "[WARNING/MainProcess] doomed",
        "[INFO/SyncManager-1] child process calling self.run()",
        "[INFO/SyncManager-1] created temp directory ",
        "[INFO/SyncManager-1] manager serving at '",
        "[INFO/MainProcess] sending shutdown message to manager",
        "[INFO/SyncManager-1] manager exiting with exitcode 0",
    ];
    // In this order (CPython's own exit lines may come between).
    let mut at = 0;
    for line in &got {
        if at < expected.len() && line.starts_with(expected[at]) {
            at += 1;
        }
    }
    assert_eq!(at, expected.len(), "got:\n{}", got.join("\n"));
    let dir = got
        .iter()
        .find_map(|l| l.strip_prefix("[INFO/SyncManager-1] created temp directory "))
        .unwrap();
    assert!(dir.contains("/pymp-"), "{dir}");
    let socket = got
        .iter()
        .find_map(|l| l.strip_prefix("[INFO/SyncManager-1] manager serving at '"))
        .unwrap()
        .trim_end_matches('\'');
    assert!(
        socket.starts_with(dir) && socket.contains("/listener-"),
        "{socket}"
    );
    assert!(
        !std::path::Path::new(socket).exists(),
        "the socket is left behind"
    );
    assert!(
        !std::path::Path::new(dir).exists(),
        "the temp directory is left behind"
    );
}
