//! A resource tracker that dies (SIGKILL) is replaced at the next use, as
//! CPython's is; the new one gets every name its program still has
//! registered, so a crash after the restart still cleans blocks made before
//! it. Each process has its own tracker: a child's registrations do not go
//! through its parent's, dead or alive.

use std::time::{Duration, Instant};

use mp_proc::{Connection, Process, SharedMemory, StartMethod, pipe};
use nix::sys::signal::Signal;

use mp_testkit::guard;

use crate::cpython_port_tracker::{tracker_pid, tracker_serves};

mp_testkit::for_each_method!(
    a_block_made_before_the_tracker_died_is_unlinked_after_a_crash,
    a_child_tracks_its_blocks_while_its_parents_tracker_is_dead,
);

/// Only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// SIGKILLs this process's tracker and waits until it is a zombie (all
/// its descriptors closed: a dying process loses its memory, and so its
/// command line, before its descriptors), which it stays until this process
/// notices and reaps it. Returns its pid.
fn kill_my_tracker() -> u32 {
    let pid = tracker_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let start = Instant::now();
    while !mp_testkit::processes().contains(&(pid, std::process::id(), 'Z')) {
        assert!(
            start.elapsed() < HANG_GUARD,
            "SIGKILL did not end the tracker"
        );
        std::thread::yield_now();
    }
    pid
}

/// Waits (bounded only against a hang) until the tracker has unlinked `name`.
fn wait_until_unlinked(name: &str) {
    let path = format!("/dev/shm/{name}");
    let start = Instant::now();
    while std::path::Path::new(&path).exists() {
        assert!(start.elapsed() < HANG_GUARD, "{path} was never unlinked");
        std::thread::yield_now();
    }
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

/// CPython: `TestResourceTracker.test_resource_tracker_sigkill`
/// (`should_die=True`): the tracker dies, and the next use starts another,
/// which serves. (CPython also warns "resource_tracker: process died";
/// mp's tracker prints nothing, see the README.) The guard checks that the
/// dead tracker was reaped and its pipe closed.
#[test]
fn test_resource_tracker_sigkill() {
    let _g = guard();
    let pid = kill_my_tracker();
    tracker_serves();
    let new = tracker_pid();
    assert_ne!(new, pid, "a new tracker");
    // And the new one serves again (it is not replaced at every use).
    tracker_serves();
    assert_eq!(tracker_pid(), new, "the same new tracker");
}

/// In a child: makes a block, kills its own tracker, makes another (which
/// starts a new tracker), reports both names and the two trackers, then
/// waits to be SIGKILLed.
fn crash_after_restart(report: Connection) {
    let first = SharedMemory::create(None, 64).unwrap();
    let old = kill_my_tracker();
    let second = SharedMemory::create(None, 64).unwrap();
    let new = tracker_pid();
    report
        .send(&(first.name().to_owned(), second.name().to_owned(), old, new))
        .unwrap();
    let _ = report.recv_bytes(); // until the parent kills us
    unreachable!("killed while waiting");
}

/// Better than CPython, whose new tracker knows only what is registered
/// after it starts: the block made before the tracker was killed is
/// unlinked too once its creator is SIGKILLed.
fn a_block_made_before_the_tracker_died_is_unlinked_after_a_crash(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(crash_after_restart, there).start_method(method);
    p.start().unwrap();
    let (first, second, old, new): (String, String, u32, u32) = here
        .recv()
        .expect("the child made a block after its tracker died");
    assert_ne!(old, new, "a new tracker");
    assert!(exists(&first) && exists(&second));
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGKILL);
    wait_until_unlinked(&second);
    wait_until_unlinked(&first);
}

/// In a child started while its parent's tracker lives: once told that the
/// parent's tracker is dead, makes and unlinks a block, and makes one it
/// leaves to its own tracker; reports that name.
fn use_blocks(report: Connection) {
    report.recv_bytes().unwrap();
    let block = SharedMemory::create(None, 64).unwrap();
    block.write_at(0, b"mine").unwrap();
    block.unlink().unwrap();
    let left = SharedMemory::create(None, 64).unwrap();
    report.send(&left.name().to_owned()).unwrap();
}

/// The parent's tracker is killed while a child runs: the child's
/// registrations go to its own tracker, which cleans what the child left;
/// the parent's next use starts a new one.
fn a_child_tracks_its_blocks_while_its_parents_tracker_is_dead(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(use_blocks, there).start_method(method);
    p.start().unwrap();
    let old = kill_my_tracker();
    here.send_bytes(b"go").unwrap();
    let left: String = here.recv().expect("the child's blocks were tracked");
    assert_eq!(p.join().unwrap(), 0);
    wait_until_unlinked(&left);
    tracker_serves();
    assert_ne!(tracker_pid(), old, "a new tracker");
}
