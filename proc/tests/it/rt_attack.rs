//! An attacker's review of issue 16's runtime (forkserver preloads, the
//! parent sentinel, SIGINT held in the fork server): each test pins down a
//! promise that a mistake in user code, or a hostile child, must not break.
//! Cases that need a process whose fork server has not started yet run in a
//! re-run of this binary, selected by [`SCENARIO`].

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use mp_proc::{Connection, Process, StartMethod, pipe, set_forkserver_preload};
use mp_testkit::guard;

/// The env var that selects a scenario of this file in a re-run.
const SCENARIO: &str = "MP_TEST_RT_ATTACK";

/// Not a test of its own: the body of this file's scenarios, in a re-run.
#[test]
fn rt_attack_scenario() {
    let Ok(what) = std::env::var(SCENARIO) else {
        return;
    };
    match what.as_str() {
        "preload_starts_a_process" => preload_starts_a_process(),
        other => panic!("unknown scenario {other}"),
    }
}

fn run(name: &str) -> Output {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rt_attack::rt_attack_scenario",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, name)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scenario {name} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn noop(_: ()) {}

/// What [`starts_a_process`] saw: 0 not run, 1 its start succeeded, 2 its
/// start was refused.
static PRELOAD_START: AtomicU8 = AtomicU8::new(0);

/// Whether this process's parent is a fork server (so that the test itself
/// never recurses past one nested server, with or without the fix).
fn parent_is_a_fork_server() -> bool {
    let ppid = std::os::unix::process::parent_id();
    std::fs::read(format!("/proc/{ppid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .any(|a| a == b"--multiprocessing-forkserver")
        })
        .unwrap_or(true)
}

/// A preload that starts a process under forkserver (as one that warms up
/// a cache with a pool of its own would).
fn starts_a_process() {
    if parent_is_a_fork_server() {
        return;
    }
    let mut p = Process::new(noop, ()).start_method(StartMethod::Forkserver);
    match p.start() {
        Ok(()) => {
            PRELOAD_START.store(1, Ordering::Relaxed);
            let _ = p.join();
        }
        Err(_) => PRELOAD_START.store(2, Ordering::Relaxed),
    }
}

fn report_preload_start(conn: Connection) {
    conn.send(&PRELOAD_START.load(Ordering::Relaxed)).unwrap();
}

fn preload_starts_a_process() {
    set_forkserver_preload(&[starts_a_process]).unwrap();
    let (here, there) = pipe(false).unwrap();
    let mut p = Process::new(report_preload_start, there).start_method(StartMethod::Forkserver);
    p.start().unwrap();
    let seen: u8 = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    println!("preload start: {seen}");
}

/// A preload function that starts a process under forkserver must not get
/// one: the fork server would start a fork server of its own, which runs
/// the same preloads, which start another, without end (a chain of
/// processes that ends only when the system refuses to fork). Its start is
/// refused with an error instead, and the server serves.
#[test]
fn a_preload_cannot_start_a_fork_server_of_its_own() {
    let _g = guard();
    let out = run("preload_starts_a_process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("preload start: 2"),
        "the preload's start was not refused:\n{stdout}"
    );
}
