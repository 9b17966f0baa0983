//! Issue 17: `idle_timeout` stops workers that hold no task; calls start
//! them again.

use std::time::Duration;

use mp_pool::Error;
use mp_proc::StartMethod;
use mp_testkit::{exists, guard, wait_until, zombies};

use crate::tasks::{pid, square};

mp_testkit::for_each_method!(
    idle_workers_stop_and_calls_start_them_again,
    close_and_join_with_no_workers,
    terminate_with_no_workers,
    a_zero_idle_timeout_is_refused,
);

const IDLE: Duration = Duration::from_millis(100);

/// Whether the processes `pids` have all ended (the workers of a
/// forkserver pool are the server's children, not ours: their pids tell).
fn gone(pids: &[u32]) -> bool {
    wait_until(Duration::from_secs(60), || pids.iter().all(|&p| !exists(p)))
}

fn idle_workers_stop_and_calls_start_them_again(method: StartMethod) {
    let _g = guard();
    let pool = crate::builder(method, 2)
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    let first = pool.map_chunked(pid, 0..20, 1).unwrap();
    assert!(gone(&first), "the idle workers were stopped");
    assert_eq!(pool.processes(), 2);
    // A later call starts workers again.
    let squares: Vec<u64> = (0..50).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..50).unwrap(), squares);
    let again = pool.apply(pid, 0).unwrap();
    assert!(!first.contains(&again), "a fresh worker");
    assert!(gone(&[again]));
    // Reaped too (a stopped worker is buried when its end is seen).
    assert!(wait_until(Duration::from_secs(60), || zombies().is_empty()));
    pool.close();
    pool.join().unwrap();
}

/// A pool of two workers that have gone idle and stopped.
fn stopped(method: StartMethod) -> mp_pool::Pool {
    let pool = crate::builder(method, 2)
        .idle_timeout(IDLE)
        .build()
        .unwrap();
    let pids = pool.map_chunked(pid, 0..4, 1).unwrap();
    assert!(gone(&pids));
    pool
}

fn close_and_join_with_no_workers(method: StartMethod) {
    let _g = guard();
    let pool = stopped(method);
    pool.close();
    pool.join().unwrap();
    assert!(matches!(pool.apply(square, 1), Err(Error::NotRunning)));
}

fn terminate_with_no_workers(method: StartMethod) {
    let _g = guard();
    let pool = stopped(method);
    pool.terminate();
    pool.join().unwrap();
}

fn a_zero_idle_timeout_is_refused(method: StartMethod) {
    let _g = guard();
    match crate::builder(method, 1)
        .idle_timeout(Duration::ZERO)
        .build()
    {
        Err(Error::InvalidArgument { what }) => assert!(what.contains("idle_timeout"), "{what}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}
