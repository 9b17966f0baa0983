//! CPython's `TestPoolNotLeakOnFailure.test_release_unused_processes`: a
//! pool whose workers fail to start partway must not leak the workers that
//! did start, and its constructor fails. CPython patches `Process.start`;
//! here the failure is real: the descriptors run out
//! (`RLIMIT_NOFILE`), in a fresh run of this binary, at every point of a
//! worker's start in turn (each descriptor budget fails somewhere else).
//!
//! The workers' context is mp-proc's, wrapped to record the pid of each
//! worker that started, so that the test can check that every one of them
//! ended and was reaped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_pool::Pool;
use mp_proc::{
    Context, Payload, Process, ProcessContext, ProcessLike, Result, StartMethod, Workers,
};
use mp_testkit::{descriptor_limits, limit_descriptors};
use mp_testkit::{guard, open_fds, processes};

/// The env var that makes a re-run of this binary run [`starts_until_it_fails`]
/// with the start method it names.
const RUN: &str = "MP_TEST_POOL_START_FAILURE";

mp_testkit::for_each_method!(a_pool_whose_workers_cannot_all_start_leaks_none);

/// The pids of the workers that started.
type Started = Arc<Mutex<Vec<u32>>>;

/// mp-proc's processes of one start method, each recorded once started.
#[derive(Clone)]
struct Recording {
    inner: ProcessContext,
    started: Started,
}

struct RecordedProcess {
    inner: Process,
    started: Started,
}

impl ProcessLike for RecordedProcess {
    fn start(&mut self) -> Result<()> {
        self.inner.start()?;
        if let Some(pid) = self.inner.pid() {
            self.started.lock().unwrap().push(pid);
        }
        Ok(())
    }
    fn join_within(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        ProcessLike::join_within(&mut self.inner, timeout)
    }
    fn get_name(&self) -> &str {
        ProcessLike::get_name(&self.inner)
    }
    fn set_name(&mut self, name: String) {
        ProcessLike::set_name(&mut self.inner, name)
    }
    fn set_daemon(&mut self, daemon: bool) {
        ProcessLike::set_daemon(&mut self.inner, daemon)
    }
    fn exitcode(&self) -> Option<i32> {
        ProcessLike::exitcode(&self.inner)
    }
    fn pid(&self) -> Option<u32> {
        ProcessLike::pid(&self.inner)
    }
    fn terminate(&self) -> Result<()> {
        ProcessLike::terminate(&self.inner)
    }
    fn interrupt(&self) -> Result<()> {
        ProcessLike::interrupt(&self.inner)
    }
    fn kill(&self) -> Result<()> {
        ProcessLike::kill(&self.inner)
    }
    fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        ProcessLike::sentinel(&self.inner)
    }
}

impl Context for Recording {
    type Process = RecordedProcess;
    primitives_of!(inner);

    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> RecordedProcess {
        RecordedProcess {
            inner: self.inner.process(target, args),
            started: self.started.clone(),
        }
    }
    fn workers(&self) -> Workers {
        self.inner.workers()
    }
}

fn square(x: u32) -> u32 {
    x * x
}

/// Waits until process `pid` is gone, neither running nor a zombie; the
/// deadline only turns a leak into a failure instead of a hang (a worker
/// of the fork server is reaped by the server).
fn gone(pid: u32) -> bool {
    if !mp_testkit::wait_until(Duration::from_secs(30), || {
        !processes().iter().any(|&(p, _, _)| p == pid)
    }) {
        return false;
    }
    true
}

/// This process's descendants (the fork server's children too), live or
/// zombies.
fn descendants() -> Vec<u32> {
    let mut found = mp_testkit::descendants(std::process::id());
    found.sort();
    found
}

/// Whether this process's descendants come back to `before` (a half-started
/// child, which no `start` returned, ends too); the deadline only turns a
/// leak into a failure instead of a hang.
fn back_to(before: &[u32]) -> bool {
    if !mp_testkit::wait_until(Duration::from_secs(30), || descendants() == before) {
        return false;
    }
    true
}

/// The pool's workers to start: more than the descriptors allow.
const WORKERS: usize = 16;

/// In the re-run: with ever more descriptors free, builds a pool of
/// [`WORKERS`] until one starts. Each build that fails must be an error of
/// descriptors, and leave no worker, no zombie and no descriptor behind.
/// Prints how many builds failed after some workers had started.
fn starts_until_it_fails(method: StartMethod) {
    // The process-wide helpers (a fork server, the tracker) first.
    let warm = Pool::builder()
        .processes(2)
        .context(mp_proc::get_context(method))
        .build()
        .unwrap();
    assert_eq!(warm.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    warm.close();
    warm.join().unwrap();
    drop(warm);
    let before = open_fds();
    let helpers = descendants();
    let full = descriptor_limits().0;
    let mut partway = 0;
    for free in 0..(WORKERS as u64 * 8) {
        let started = Started::default();
        let ctx = Recording {
            inner: mp_proc::get_context(method),
            started: started.clone(),
        };
        // /proc/self/fd's own descriptor counts while it is read: none then.
        limit_descriptors(before.len() as u64 + 3 + free);
        let built = Pool::builder().processes(WORKERS).context(ctx).build();
        limit_descriptors(full);
        let started = std::mem::take(&mut *started.lock().unwrap());
        match built {
            Ok(pool) => {
                assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
                pool.terminate();
                pool.join().unwrap();
                drop(pool);
                for pid in started {
                    assert!(gone(pid), "worker {pid} left after terminate");
                }
                println!("failed partway: {partway}");
                return;
            }
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains("Too many open files"),
                    "with {free} descriptors free: {message}"
                );
                if !started.is_empty() {
                    partway += 1;
                }
                for &pid in &started {
                    assert!(gone(pid), "worker {pid} of a failed pool left: {message}");
                }
                assert_eq!(mp_testkit::zombies(), [] as [u32; 0], "{message}");
                assert!(
                    back_to(&helpers),
                    "processes left: {:?} (before: {helpers:?}): {message}",
                    descendants()
                );
                assert_eq!(open_fds(), before, "descriptors leaked: {message}");
            }
        }
    }
    panic!("no pool started with {} descriptors free", WORKERS * 8);
}

/// Not a test of its own: the re-run, with [`RUN`] set.
#[test]
fn starts_until_it_fails_in_a_fresh_process() {
    let Ok(method) = std::env::var(RUN) else {
        return;
    };
    starts_until_it_fails(method.parse().expect("a start method"));
}

/// CPython: `TestPoolNotLeakOnFailure.test_release_unused_processes`. The
/// constructor fails with the cause (no descriptors left) after some
/// workers started, and they are all ended and reaped, their descriptors
/// closed.
fn a_pool_whose_workers_cannot_all_start_leaks_none(method: StartMethod) {
    let _g = guard();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "start_failure::starts_until_it_fails_in_a_fresh_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RUN, method.name())
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let partway: u32 = stdout
        .lines()
        .find_map(|l| l.split_once("failed partway: ").map(|(_, n)| n))
        .unwrap_or_else(|| panic!("no result: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!(partway > 0, "no build failed after a worker started");
}
