//! Issue 17, found in review: ending workers from outside
//! (`terminate_workers`, `kill_workers`) together with task timeouts, for a
//! task that does not end on `SIGTERM` (it handles or ignores it, as a C
//! library cleaning up may; here, its process is stopped). Each limit here is what is tested; the long
//! waits are deadlines that turn a hang into a failure.

use std::time::Duration;

use mp_pool::{Error, Pool};
use mp_proc::StartMethod;
use mp_testkit::{exists, guard, zombies};

use crate::tasks::square;

mp_testkit::for_each_method!(
    a_task_that_survives_terminate_workers_still_times_out,
    kill_workers_after_terminate_workers_kills_a_survivor,
);

/// How long a test waits for what must happen (a bug shows as a failure).
const DEADLINE: Duration = Duration::from_secs(20);

/// Says it started (its worker's pid), then stops its process (`SIGSTOP`):
/// a stopped process does not end on `SIGTERM` (which waits, pending, for a
/// `SIGCONT`), as a task that handles or ignores `SIGTERM` does not;
/// `SIGKILL` ends it.
fn deaf_to_sigterm_then_hang(started: mp_proc::Queue<u32>) -> u64 {
    started.put(std::process::id()).unwrap();
    loop {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}

/// Starts `deaf_to_sigterm_then_hang` and waits until its process is
/// stopped (a `SIGTERM` before that would end it).
fn start_deaf(pool: &Pool) -> mp_pool::AsyncResult<u64> {
    let started = mp_proc::Queue::new().unwrap();
    let r = pool.apply_async(deaf_to_sigterm_then_hang, started.clone());
    let pid = started.get().unwrap();
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    };
    assert!(
        mp_testkit::wait_until(DEADLINE, stopped),
        "worker {pid} stopped"
    );
    r
}

fn a_task_that_survives_terminate_workers_still_times_out(method: StartMethod) {
    let _g = guard();
    let limit = Duration::from_millis(500);
    let pool = crate::builder(method, 1)
        .task_timeout(limit)
        .build()
        .unwrap();
    let r = start_deaf(&pool);
    pool.terminate_workers();
    // The worker lives on in its call: the task timeout still ends it.
    match r.get_timeout(DEADLINE) {
        Err(Error::TaskTimeout { item: 0, pid, .. }) => assert!(!exists(pid)),
        other => panic!("expected TaskTimeout, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert_eq!(pool.processes(), 1);
    pool.close();
    pool.join().unwrap();
    assert!(zombies().is_empty());
}

/// CPython's escalation: `terminate_workers()`, then `kill_workers()` for
/// the workers that did not end. However quickly the second follows the
/// first (before or after the pool has acted on it), the worker is killed.
fn kill_workers_after_terminate_workers_kills_a_survivor(method: StartMethod) {
    let _g = guard();
    let pool: Pool = crate::builder(method, 1).build().unwrap();
    let r = start_deaf(&pool);
    pool.terminate_workers();
    pool.kill_workers();
    match r.get_timeout(DEADLINE) {
        Err(Error::WorkerDied { exitcode, pid, .. }) => {
            assert_eq!(exitcode, -libc::SIGKILL);
            assert!(!exists(pid));
        }
        other => panic!("expected WorkerDied by SIGKILL, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    pool.close();
    pool.join().unwrap();
    assert!(zombies().is_empty());
}
