//! CPython's tests whose port FAILS: each is a bug of mp. This file is not
//! in `main.rs` (out of the build) until the bug is fixed; then add
//! `mod cpython_port_bugs;` there and move the test to its topic's file.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use mp_testkit::guard;

use crate::cpython_port_tracker::{tracker_pid, tracker_serves, trackers_of};

/// Only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// CPython: `TestResourceTracker.test_resource_tracker_sigkill`
/// (`should_die=True`): the tracker dies, and the next use starts another,
/// which serves. (CPython also warns "resource_tracker: process died";
/// mp's tracker prints nothing, see the README.)
/// Bug: the dead tracker is never replaced; every later `SharedMemory::create`
/// fails with `Os { op: "write to the resource tracker", source: BrokenPipe }`.
#[test]
fn test_resource_tracker_sigkill() {
    let _g = guard();
    let pid = tracker_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let start = Instant::now();
    while trackers_of(std::process::id()).contains(&pid) {
        assert!(
            start.elapsed() < HANG_GUARD,
            "SIGKILL did not end the tracker"
        );
        std::thread::yield_now();
    }
    tracker_serves();
    let new = tracker_pid();
    assert_ne!(new, pid, "a new tracker");
}
