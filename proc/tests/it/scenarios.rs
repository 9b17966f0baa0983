//! Behaviours that need a fresh process (the logger, the start method and
//! exit handlers are per process): each runs in a re-run of this binary, and
//! the test checks what it printed.

use std::sync::atomic::{AtomicBool, Ordering};

use mp_logging::Level;
use mp_proc::{Connection, Error, Process, StartMethod, pipe};

use mp_testkit::{SCENARIO, guard, records, scenario as run};

/// Not a test of its own: the body of the scenarios, selected by env var.
#[test]
fn scenario() {
    let Some((what, method)) = mp_testkit::requested_scenario() else {
        return;
    };
    match what.as_str() {
        "lifecycle" => lifecycle(method),
        "inherit" => inherit(method),
        "no_handler" => no_handler(method),
        "exit_joins" => exit_joins(method),
        "fork_warning" => fork_warning(),
        "set_start_method" => set_start_method(),
        "not_bootstrapped" => not_bootstrapped(),
        "helpers_end" => helpers_end(),
        "foreign_handles" => crate::trust::print_foreign_handles(),
        "preload" => crate::preload::scenario(),
        "remote_lifecycle" => remote_lifecycle(),
        other => panic!("unknown scenario {other}"),
    }
}

/// The log records of a scenario's stderr but the warning of a fork from a
/// threaded process (the test harness has threads).
fn records_but_fork_warnings(out: &std::process::Output) -> Vec<String> {
    records(out)
        .into_iter()
        .filter(|l| !l.contains("multi-threaded"))
        .collect()
}

fn log_from_child(_: ()) {
    mp_logging::get_logger().warning("from the child");
}

fn lifecycle(method: StartMethod) {
    mp_logging::log_to_stderr(Some(Level::Info));
    let mut p = Process::new(log_from_child, ())
        .name("Worker")
        .start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

/// A process on another host (the remote path on this machine: its agent
/// runs through a launcher command) logs to the parent's stderr under its
/// own name, and what it prints reaches the parent's stdout.
fn remote_lifecycle() {
    mp_logging::log_to_stderr(Some(Level::Info));
    fn log_and_print(_: ()) {
        mp_logging::get_logger().warning("from the far child");
        println!("printed on the far host");
    }
    let launcher = mp_proc::Launcher::command(["env", "MP_FAR=1"]);
    let mut p = Process::new(log_and_print, ())
        .name("Far")
        .launcher(launcher);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn a_remote_child_logs_to_the_parents_stderr_under_its_name() {
    let _g = guard();
    let out = run("remote_lifecycle:fork");
    let got = records_but_fork_warnings(&out);
    assert_eq!(
        got,
        [
            "[INFO/Far] child process calling self.run()",
            "[WARNING/Far] from the far child",
            "[INFO/Far] process shutting down",
            "[INFO/Far] process exiting with exitcode 0",
            "[INFO/MainProcess] process shutting down",
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("printed on the far host\n"), "{stdout}");
}

mp_testkit::for_each_method!(
    children_log_the_lifecycle_lines_under_their_own_name,
    children_inherit_level_and_handler,
    exit_terminates_daemons_and_joins_children
);

fn children_log_the_lifecycle_lines_under_their_own_name(method: StartMethod) {
    let _g = guard();
    let out = run(&format!("lifecycle:{method}"));
    let got = records_but_fork_warnings(&out);
    assert_eq!(
        got,
        [
            "[INFO/Worker] child process calling self.run()",
            "[WARNING/Worker] from the child",
            "[INFO/Worker] process shutting down",
            "[INFO/Worker] process exiting with exitcode 0",
            "[INFO/MainProcess] process shutting down",
        ]
    );
}

fn report_logger(conn: Connection) {
    let logger = mp_logging::get_logger();
    conn.send(&(
        logger.level() as u8,
        logger.has_stderr_handler(),
        mp_logging::process_name().to_string(),
    ))
    .unwrap();
}

fn inherit(method: StartMethod) {
    mp_logging::log_to_stderr(Some(Level::SubWarning));
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(report_logger, there)
        .name("Reporter")
        .start_method(method);
    p.start().unwrap();
    let (level, handler, name): (u8, bool, String) = here.recv().unwrap();
    assert_eq!((level, handler, name.as_str()), (25, true, "Reporter"));
    assert_eq!(p.join().unwrap(), 0);
}

fn no_handler(method: StartMethod) {
    mp_logging::get_logger().set_level(Level::Debug);
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(report_logger, there).start_method(method);
    p.start().unwrap();
    let (level, handler, _): (u8, bool, String) = here.recv().unwrap();
    assert_eq!((level, handler), (10, false));
    assert_eq!(p.join().unwrap(), 0);
}

fn children_inherit_level_and_handler(method: StartMethod) {
    let _g = guard();
    assert!(
        records(&run(&format!("inherit:{method}")))
            .iter()
            .all(|l| !l.contains("Reporter] process exiting") || l.starts_with("[INFO"))
    );
    let out = run(&format!("no_handler:{method}"));
    assert!(
        records(&out).is_empty(),
        "no handler, no records: {:?}",
        records(&out)
    );
}

fn hold_until_released(hold: Connection) {
    let _ = hold.recv_bytes();
}

fn exit_joins(method: StartMethod) {
    mp_logging::log_to_stderr(Some(Level::Info));
    // Worker waits for the daemon's end: the daemon holds the other end of
    // its connection. So at exit the daemon is alive until terminated, and
    // the worker until the daemon is gone.
    let (worker_end, daemon_end) = pipe(true).unwrap();
    let mut daemon = Process::new(hold_until_released, daemon_end)
        .name("Daemon")
        .daemon(true)
        .start_method(method);
    daemon.start().unwrap();
    let mut worker = Process::new(hold_until_released, worker_end)
        .name("Worker")
        .start_method(method);
    worker.start().unwrap();
    std::mem::forget(daemon);
    std::mem::forget(worker);
}

fn exit_terminates_daemons_and_joins_children(method: StartMethod) {
    let _g = guard();
    let got = records(&run(&format!("exit_joins:{method}")));
    let main: Vec<&str> = got
        .iter()
        .filter(|l| l.starts_with("[INFO/MainProcess]"))
        .map(String::as_str)
        .collect();
    let terminate = main
        .iter()
        .position(|l| *l == "[INFO/MainProcess] calling terminate() for daemon Daemon");
    // Each join line is printed only for a child still running when the
    // exit function lists them (as in CPython): the worker may already have
    // ended once the daemon is gone, so only their order is checked.
    let joins: Vec<usize> = main
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("[INFO/MainProcess] calling join() for process "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        main.first(),
        Some(&"[INFO/MainProcess] process shutting down"),
        "{got:?}"
    );
    assert!(terminate.is_some(), "{got:?}");
    assert!(joins.iter().all(|j| Some(*j) > terminate), "{got:?}");
    assert!(
        got.contains(&"[INFO/Worker] process exiting with exitcode 0".to_string()),
        "{got:?}"
    );
}

fn fork_warning() {
    mp_logging::log_to_stderr(Some(Level::Info));
    for _ in 0..2 {
        let mut p = Process::new(log_from_child, ()).start_method(StartMethod::Fork);
        p.start().unwrap();
        p.join().unwrap();
    }
}

#[test]
fn fork_from_a_threaded_parent_warns_once() {
    let _g = guard();
    let out = run("fork_warning");
    let warnings: Vec<String> = records(&out)
        .into_iter()
        .filter(|l| l.contains("multi-threaded"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.starts_with("[WARNING/MainProcess] This process (pid=")
            && w.ends_with(
                ") is multi-threaded, use of fork() may lead to deadlocks in the child."
            ),
        "{w}"
    );
}

static SET_BEFORE_START: AtomicBool = AtomicBool::new(false);

fn report_method(conn: Connection) {
    let forked = SET_BEFORE_START.load(Ordering::SeqCst);
    conn.send(&(
        mp_proc::get_start_method(),
        forked,
        nix::unistd::getppid().as_raw() as u32,
    ))
    .unwrap();
}

fn set_start_method() {
    assert_eq!(mp_proc::get_start_method(), StartMethod::Forkserver);
    mp_proc::set_start_method(StartMethod::Spawn).unwrap();
    assert!(matches!(
        mp_proc::set_start_method(StartMethod::Fork),
        Err(Error::ContextAlreadySet)
    ));
    assert_eq!(mp_proc::get_start_method(), StartMethod::Spawn);
    SET_BEFORE_START.store(true, Ordering::SeqCst);
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(report_method, there);
    p.start().unwrap();
    let (child_default, forked, ppid): (StartMethod, bool, u32) = here.recv().unwrap();
    assert_eq!(
        child_default,
        StartMethod::Spawn,
        "a child inherits the start method"
    );
    assert!(!forked, "spawned, so the parent's memory is not there");
    assert_eq!(
        ppid,
        std::process::id(),
        "spawned by this process, not a fork server"
    );
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn the_start_method_is_set_once_and_inherited() {
    let _g = guard();
    run("set_start_method");
}

fn not_bootstrapped() {
    // What a spawned child sees if its bootstrap did not run before main.
    // SAFETY: this scenario's process runs this one test on one thread.
    unsafe { std::env::set_var("__MP_PROC_CHILD", "99") };
    let mut p = Process::new(log_from_child, ()).start_method(StartMethod::Spawn);
    assert!(matches!(p.start(), Err(Error::NotBootstrapped)));
    assert!(matches!(
        mp_proc::spawn(|x: u8| x, 1),
        Err(Error::NotBootstrapped)
    ));
}

#[test]
fn a_child_whose_bootstrap_did_not_run_refuses_to_start_processes() {
    let _g = guard();
    run("not_bootstrapped");
}

/// The fork server of this process: a child whose command line has the marker.
pub(crate) fn forkserver_pid() -> Option<u32> {
    let me = std::process::id();
    mp_testkit::processes()
        .into_iter()
        .find_map(|(pid, ppid, _)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (ppid == me
                && String::from_utf8_lossy(&cmdline).contains("--multiprocessing-forkserver"))
            .then_some(pid)
        })
}

fn helpers_end() {
    // This scenario adopts its orphans, so it can wait for the fork server of
    // its own child after that child is gone.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "scenarios::scenario",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, "lifecycle:forkserver")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success());
    // Every descendant left behind (the fork server) is now our child; wait
    // until none is left. A helper that outlived its program would hang here
    // (the test's hang guard would report it).
    loop {
        match nix::sys::wait::wait() {
            Ok(_) => continue,
            Err(nix::errno::Errno::ECHILD) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn the_fork_server_holds_no_output_and_ends_with_its_program() {
    let _g = guard();
    let server = forkserver_pid().expect("the guard started the fork server");
    for fd in [0, 1, 2] {
        let target = std::fs::read_link(format!("/proc/{server}/fd/{fd}")).unwrap();
        assert_eq!(
            target.display().to_string(),
            "/dev/null",
            "fd {fd} of the fork server"
        );
    }
    run("helpers_end");
}

fn wait_for_release(conn: Connection) {
    let _ = conn.recv_bytes();
}

#[test]
fn a_killed_fork_server_is_replaced() {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut running = Process::new(wait_for_release, there).start_method(StartMethod::Forkserver);
    running.start().unwrap();
    let server = forkserver_pid().expect("the guard started the fork server");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The next start notices and starts a new server.
    let mut p = Process::new(log_from_child, ()).start_method(StartMethod::Forkserver);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_ne!(forkserver_pid(), Some(server));
    // A child of the dead server still ends and is joined; its exit code died
    // with the server, and is reported as 255, as CPython does.
    drop(here);
    assert_eq!(running.join().unwrap(), 255);
}
