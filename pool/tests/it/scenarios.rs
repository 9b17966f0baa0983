//! Behaviours that need a fresh process (signals, the logger): each runs in a
//! re-run of this binary, and the test checks what it printed.

use std::process::Output;

use mp_logging::Level;
use mp_pool::Error;
use mp_proc::StartMethod;
use mp_testkit::{exists, guard, records, scenario as run, scenario_output};

use crate::tasks::{gated, square};

/// Not a test of its own: the body of the scenarios, selected by env var.
#[test]
fn scenario() {
    let Some((what, method)) = mp_testkit::requested_scenario() else {
        return;
    };
    match what.as_str() {
        "sigint" => sigint(method),
        "logging" => logging(method),
        "idle_sigint" => idle_sigint(method),
        "replace" => {
            mp_logging::log_to_stderr(Some(Level::Debug));
            crate::replace::goes_on(method)
        }
        "threads_stay_on" => crate::replace::threads_stay_on(),
        other => panic!("unknown scenario {other}"),
    }
}

mp_testkit::for_each_method!(
    ctrl_c_interrupts_a_blocked_map_and_ends_the_workers,
    ctrl_c_while_no_call_waits_ends_the_program_as_by_default,
    the_pool_logs_its_lifecycle_as_cpython,
);

/// Whether this process has a handler for SIGINT (`SigCgt` in /proc).
fn sigint_caught() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (libc::SIGINT - 1)) != 0
}

/// A terminal's Ctrl-C: SIGINT to the whole process group, while `map`
/// waits on two workers stuck in tasks.
fn sigint(method: StartMethod) {
    // A group of our own, as a shell gives a job.
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0)).unwrap();
    let (pool, gate) = crate::gated(method, 2);
    let started = gate.started.clone();
    let ctrl_c = std::thread::spawn(move || {
        let workers = [started.get().unwrap(), started.get().unwrap()];
        // The main thread's call is waiting once its handler is in place.
        while !sigint_caught() {
            std::thread::yield_now();
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(0),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        workers
    });
    let r = pool.map_chunked(gated, 0..10, 1);
    let workers = ctrl_c.join().unwrap();
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    // The workers are gone by the time the call returns.
    for w in workers {
        assert!(!exists(w), "worker {w} outlived the interrupted call");
    }
    assert!(!sigint_caught(), "the default action is back");
    assert!(matches!(pool.apply(square, 2), Err(Error::NotRunning)));
    println!("interrupted; workers {} {}", workers[0], workers[1]);
}

fn ctrl_c_interrupts_a_blocked_map_and_ends_the_workers(method: StartMethod) {
    let _g = guard();
    let out: Output = run(&format!("sigint:{method}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("interrupted; workers ").map(|(_, w)| w))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    for w in line.split(' ') {
        assert!(!exists(w.parse().unwrap()), "worker {w} is an orphan");
    }
    // No storm of messages: the workers print nothing.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "", "stderr: {stderr}");
}

/// Ctrl-C after a call (which installed the handler), while none waits.
fn idle_sigint(method: StartMethod) {
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0)).unwrap();
    let pool = crate::pool(method);
    let pids = pool.map_chunked(crate::tasks::pid, 0..50, 1).unwrap();
    let mut pids: Vec<u32> = pids.into_iter().collect();
    pids.sort_unstable();
    pids.dedup();
    assert!(sigint_caught(), "a call installed the handler");
    println!("workers {pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(0),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    // The signal may be handled on another thread: the program ends while
    // this one waits here (a bounded wait, reached in full only on failure).
    let deadline = mp_proc::plumbing::deadline_after(std::time::Duration::from_secs(10))
        .expect("a near deadline");
    while std::time::Instant::now() < deadline {
        std::thread::park_timeout(deadline - std::time::Instant::now());
    }
    println!("survived SIGINT");
}

fn ctrl_c_while_no_call_waits_ends_the_program_as_by_default(method: StartMethod) {
    use std::os::unix::process::ExitStatusExt;
    let _g = guard();
    let out = scenario_output(&format!("idle_sigint:{method}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{stdout}");
    assert!(!stdout.contains("survived"), "{stdout}");
    // Its workers see their parent's end and exit (they are reparented, so
    // their end can only be watched for).
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("workers [").map(|(_, w)| w))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    let deadline = mp_proc::plumbing::deadline_after(std::time::Duration::from_secs(10))
        .expect("a near deadline");
    for w in line.trim_end_matches(']').split(", ") {
        let w: u32 = w.parse().unwrap();
        while exists(w) {
            assert!(
                std::time::Instant::now() < deadline,
                "worker {w} is an orphan"
            );
            std::thread::yield_now();
        }
    }
}

fn logging(method: StartMethod) {
    mp_logging::log_to_stderr(Some(Level::Debug));
    let pool = crate::builder(method, 1)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    assert_eq!(pool.map_chunked(square, 0..3, 1).unwrap(), [0, 1, 4]);
    pool.close();
    pool.join().unwrap();
}

fn the_pool_logs_its_lifecycle_as_cpython(method: StartMethod) {
    let _g = guard();
    let out = run(&format!("logging:{method}"));
    let got = records(&out);
    let worker = match method {
        StartMethod::Fork => "ForkPoolWorker",
        StartMethod::Spawn => "SpawnPoolWorker",
        StartMethod::Forkserver => "ForkServerPoolWorker",
    };
    let has = |line: &str| got.iter().any(|l| l == line);
    for line in [
        "[DEBUG/MainProcess] added worker".to_owned(),
        format!("[INFO/{worker}-1] child process calling self.run()"),
        format!("[DEBUG/{worker}-1] worker exiting after 2 tasks"),
        format!("[INFO/{worker}-1] process exiting with exitcode 0"),
        format!("[DEBUG/{worker}-2] worker got sentinel -- exiting"),
        format!("[DEBUG/{worker}-2] worker exiting after 1 tasks"),
        "[DEBUG/MainProcess] closing pool".to_owned(),
        "[DEBUG/MainProcess] joining pool".to_owned(),
        "[DEBUG/MainProcess] worker handler exiting".to_owned(),
    ] {
        assert!(has(&line), "no {line:?} in {got:#?}");
    }
    assert_eq!(
        got.iter().filter(|l| l.ends_with("] added worker")).count(),
        2
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("[DEBUG/MainProcess] cleaning up worker ")),
        "{got:#?}"
    );
}
