//! CPython's `TestResourceTracker` tests (Lib/test/_test_multiprocessing.py
//! of 3.11) that had no port: the tracker survives SIGINT and SIGTERM.
//! (`test_resource_tracker_sigkill` is in `tracker_restart.rs`.)

use mp_proc::SharedMemory;
use nix::sys::signal::Signal;

use mp_testkit::guard;

/// The resource trackers whose parent is `parent`.
pub(crate) fn trackers_of(parent: u32) -> Vec<u32> {
    mp_testkit::processes()
        .into_iter()
        .filter(|&(pid, ppid, state)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == parent
                && state != 'Z'
                && String::from_utf8_lossy(&cmdline).contains("--multiprocessing-resource-tracker")
        })
        .map(|(pid, ..)| pid)
        .collect()
}

/// This process's tracker (the guard has started it). A tracker just
/// started may show no command line for a moment (posix_spawn returns once
/// the exec has replaced the memory, before the new arguments are set up), so
/// none found is asked again, bounded only against a hang.
pub(crate) fn tracker_pid() -> u32 {
    let start = std::time::Instant::now();
    loop {
        match trackers_of(std::process::id())[..] {
            [pid] => return pid,
            [] if start.elapsed() < std::time::Duration::from_secs(120) => std::thread::yield_now(),
            ref other => panic!("expected one resource tracker, found {other:?}"),
        }
    }
}

/// Whether `pid` ignores `sig` (its `SigIgn` mask in /proc).
fn ignores(pid: u32, sig: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (sig as u32 - 1)) != 0
}

/// A block made and unlinked here goes through the tracker (register,
/// unregister) without an error.
pub(crate) fn tracker_serves() {
    let block = SharedMemory::create(None, 64).unwrap();
    block.write_at(0, b"still tracked").unwrap();
    block.unlink().unwrap();
}

/// CPython's `check_resource_tracker_death(signum, should_die=False)`: the
/// signal does not end the tracker (CPython sleeps a second to let it die;
/// here an ignored signal is dropped when it is sent, so the tracker's
/// `SigIgn` is checked first), which still serves.
fn survives(sig: Signal) {
    let _g = guard();
    let pid = tracker_pid();
    // A tracker just started ignores the signal a moment later (it does so
    // first thing in its loop): bounded only against a hang.
    let start = std::time::Instant::now();
    while !ignores(pid, sig) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the tracker does not ignore {sig}"
        );
        std::thread::yield_now();
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    tracker_serves();
    assert_eq!(tracker_pid(), pid, "the same tracker");
}

/// CPython: `TestResourceTracker.test_resource_tracker_sigint`.
#[test]
fn test_resource_tracker_sigint() {
    survives(Signal::SIGINT);
}

/// CPython: `TestResourceTracker.test_resource_tracker_sigterm`.
#[test]
fn test_resource_tracker_sigterm() {
    survives(Signal::SIGTERM);
}
