//! Issue 17: `task_timeout` kills a worker whose call hangs and fails only
//! that item; `terminate_workers` / `kill_workers` end the workers and the
//! pool goes on. Every limit here is what is tested, never a wait for
//! something to happen: a hanging task never returns.

use std::time::Duration;

use mp_pool::{Error, Pool};
use mp_proc::StartMethod;
use mp_testkit::{exists, guard, open_fds, zombies};

use crate::tasks::{Gate, square};

mp_testkit::for_each_method!(
    a_hanging_item_times_out_and_the_others_succeed,
    the_item_that_times_out_in_a_chunk_fails_alone,
    a_map_fails_as_soon_as_an_item_times_out,
    every_worker_timing_out_at_once,
    a_zero_timeout_is_refused_and_a_huge_one_is_none,
    a_timeout_while_the_pool_closes,
    terminate_during_a_hanging_task,
    kill_workers_ends_a_hanging_task_and_the_pool_goes_on,
    kill_workers_in_a_chunk_fails_only_the_running_item,
    terminate_workers_requeues_what_had_not_started,
    an_imap_dropped_while_its_item_hangs,
);

const LIMIT: Duration = Duration::from_millis(500);

/// Never returns.
fn hang_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Hangs on 1000 and above, else squares.
fn square_or_hang(x: u64) -> u64 {
    if x >= 1000 {
        hang_forever();
    }
    x * x
}

/// Sets `started`, then hangs.
fn signal_then_hang(started: mp_proc::Event) -> u64 {
    started.set();
    hang_forever();
}

/// A pool of `n` workers with the test's task timeout.
fn timed(method: StartMethod, n: usize) -> Pool {
    crate::builder(method, n)
        .task_timeout(LIMIT)
        .build()
        .unwrap()
}

fn assert_timed_out(r: &Result<u64, Error>, index: usize) -> u32 {
    match r {
        Err(Error::TaskTimeout {
            item,
            limit,
            pid,
            worker,
        }) => {
            assert_eq!(*item, index);
            assert_eq!(*limit, LIMIT);
            assert!(worker.contains("PoolWorker-"), "{worker}");
            *pid
        }
        other => panic!("item {index}: expected TaskTimeout, got {other:?}"),
    }
}

fn a_hanging_item_times_out_and_the_others_succeed(method: StartMethod) {
    let _g = guard();
    let fds = open_fds().len();
    let pool = timed(method, 2);
    let input = (0..10u64).map(|i| if i == 3 { 1000 } else { i });
    let outcomes: Vec<_> = pool.imap(square_or_hang, input).collect();
    assert_eq!(outcomes.len(), 10);
    for (i, r) in outcomes.iter().enumerate() {
        if i == 3 {
            let pid = assert_timed_out(r, 3);
            assert!(!exists(pid), "the killed worker {pid} was reaped");
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u64 * i as u64)), "item {i}");
        }
    }
    // Message and replacement: the pool still runs everything.
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
    assert_eq!(pool.processes(), 2);
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert!(zombies().is_empty());
    assert_eq!(open_fds().len(), fds, "no descriptor left behind");
}

fn the_item_that_times_out_in_a_chunk_fails_alone(method: StartMethod) {
    let _g = guard();
    let pool = timed(method, 2);
    let input = (0..12u64).map(|i| if i == 2 { 1000 } else { i });
    let outcomes: Vec<_> = pool.imap_chunked(square_or_hang, input, 4).collect();
    assert_eq!(outcomes.len(), 12);
    for (i, r) in outcomes.iter().enumerate() {
        if i == 2 {
            assert_timed_out(r, 2);
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u64 * i as u64)), "item {i}");
        }
    }
    // Unordered too: every item once, one of them the timeout.
    let input = (0..12u64).map(|i| if i == 6 { 1000 } else { i });
    let outcomes: Vec<_> = pool
        .imap_unordered_chunked(square_or_hang, input, 4)
        .collect();
    assert_eq!(outcomes.len(), 12);
    assert_eq!(outcomes.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

/// Hangs on 1000; otherwise waits for the gate (see `tasks::gated`).
fn hang_or_wait(x: u64) -> u64 {
    if x >= 1000 {
        hang_forever();
    }
    crate::tasks::gated(x)
}

fn a_map_fails_as_soon_as_an_item_times_out(method: StartMethod) {
    let _g = guard();
    let gate = Gate {
        started: mp_proc::Queue::new().unwrap(),
        go: mp_proc::Event::new().unwrap(),
    };
    let pool = crate::builder(method, 1)
        .initializer(crate::tasks::install, gate.clone())
        .task_timeout(LIMIT)
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Item 0 hangs; item 1 runs after it, on the worker that replaces the
    // killed one, and waits for the gate, which opens only after the map
    // has failed: it failed without waiting for item 1.
    let r = pool
        .map_async_chunked(hang_or_wait, [1000, 7], 1)
        .on_error(move |e| tx.send(e).unwrap());
    let killed = match r.get() {
        Err(Error::TaskTimeout { item: 0, pid, .. }) => pid,
        other => panic!("expected TaskTimeout of item 0, got {other:?}"),
    };
    gate.go.set();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(60)),
        Ok(Error::TaskTimeout { item: 0, .. })
    ));
    assert_ne!(
        gate.started.get().unwrap(),
        killed,
        "item 1 ran on a fresh worker"
    );
    assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
}

fn every_worker_timing_out_at_once(method: StartMethod) {
    let _g = guard();
    let pool = timed(method, 2);
    let outcomes: Vec<_> = pool
        .imap(square_or_hang, [1000, 1001, 5, 1002, 6])
        .collect();
    for (i, r) in outcomes.iter().enumerate() {
        match i {
            2 => assert_eq!(r.as_ref().ok(), Some(&25)),
            4 => assert_eq!(r.as_ref().ok(), Some(&36)),
            _ => {
                assert_timed_out(r, i);
            }
        }
    }
    assert_eq!(pool.map(square, 0..100).unwrap()[10], 100);
}

fn a_zero_timeout_is_refused_and_a_huge_one_is_none(method: StartMethod) {
    let _g = guard();
    match crate::builder(method, 1)
        .task_timeout(Duration::ZERO)
        .build()
    {
        Err(Error::InvalidArgument { what }) => assert!(what.contains("task_timeout"), "{what}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    for huge in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 1_000_000_000 + 1),
    ] {
        let pool = crate::builder(method, 2)
            .task_timeout(huge)
            .build()
            .unwrap();
        let squares: Vec<u64> = (0..200).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..200).unwrap(), squares);
        assert_eq!(pool.map_chunked(square, 0..200, 7).unwrap(), squares);
    }
}

fn a_timeout_while_the_pool_closes(method: StartMethod) {
    let _g = guard();
    let pool = timed(method, 2);
    let r = pool.map_async_chunked(square_or_hang, [1, 1000, 3, 4], 1);
    pool.close();
    pool.join().unwrap();
    assert!(matches!(r.get(), Err(Error::TaskTimeout { item: 1, .. })));
    assert!(zombies().is_empty());
}

fn terminate_during_a_hanging_task(method: StartMethod) {
    let _g = guard();
    // A long limit: terminate comes first.
    let pool = crate::builder(method, 2)
        .task_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let started = mp_proc::Event::new().unwrap();
    let r = pool.apply_async(signal_then_hang, started.clone());
    started.wait(None).unwrap();
    pool.terminate();
    pool.join().unwrap();
    assert!(matches!(r.get(), Err(Error::Terminated)));
    assert!(zombies().is_empty());
}

fn kill_workers_ends_a_hanging_task_and_the_pool_goes_on(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let started = mp_proc::Event::new().unwrap();
    let r = pool.apply_async(signal_then_hang, started.clone());
    started.wait(None).unwrap();
    pool.kill_workers();
    match r.get() {
        Err(Error::WorkerDied { pid, exitcode, .. }) => {
            assert_eq!(exitcode, -libc::SIGKILL);
            assert!(!exists(pid));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
    assert_eq!(pool.processes(), 2);
}

fn terminate_workers_requeues_what_had_not_started(method: StartMethod) {
    let _g = guard();
    let pool = crate::builder(method, 1).build().unwrap();
    // Quick tasks before: the worker is then given tasks ahead, which it
    // holds unstarted behind the hanging one.
    assert_eq!(pool.map_chunked(square, 0..100, 1).unwrap()[3], 9);
    let started = mp_proc::Event::new().unwrap();
    let hung = pool.apply_async(signal_then_hang, started.clone());
    // Queued behind the hanging task on the only worker.
    let later = pool.map_async_chunked(square, 0..20, 1);
    started.wait(None).unwrap();
    pool.terminate_workers();
    assert!(matches!(
        hung.get(),
        Err(Error::WorkerDied { exitcode: -15, .. })
    ));
    let squares: Vec<u64> = (0..20).map(|x| x * x).collect();
    assert_eq!(later.get().unwrap(), squares);
    pool.close();
    pool.join().unwrap();
}

/// Item 1000 waits for the gate (which stays closed); others square.
fn square_or_wait(x: u64) -> u64 {
    if x >= 1000 {
        return crate::tasks::gated(x);
    }
    x * x
}

/// A worker ended in the middle of a chunk fails only the item it was
/// running: the chunk's items before and after it run again and succeed.
/// (Not with handles in the items: a handle's ticket is redeemed once, so
/// an item that runs again cannot redeem it.)
fn kill_workers_in_a_chunk_fails_only_the_running_item(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 1);
    let mut it = pool.imap_chunked(square_or_wait, [0, 1, 1000, 3, 4], 5);
    gate.started.get().unwrap();
    pool.kill_workers();
    let outcomes: Vec<_> = it.by_ref().collect();
    assert_eq!(outcomes.len(), 5);
    for (i, r) in outcomes.iter().enumerate() {
        match i {
            2 => assert!(
                matches!(r, Err(Error::WorkerDied { exitcode: -9, .. })),
                "{r:?}"
            ),
            _ => assert_eq!(
                r.as_ref().ok(),
                Some(&(i as u64 * i as u64)),
                "item {i}: {r:?}"
            ),
        }
    }
}

/// The consumer of an imap stops early (drops it) while one of its items
/// hangs: the item is still killed at its limit (nobody reads its
/// outcome), the pool goes on, and its close and join end with nothing
/// left behind.
fn an_imap_dropped_while_its_item_hangs(method: StartMethod) {
    let _g = guard();
    let fds = open_fds().len();
    let pool = timed(method, 2);
    let mut it = pool.imap(square_or_hang, [2, 1000, 3, 4, 5]);
    assert_eq!(it.next().unwrap().unwrap(), 4);
    drop(it);
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
    // Join returns only once the hanging worker was killed at its limit.
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert!(zombies().is_empty());
    assert_eq!(open_fds().len(), fds, "no descriptor left behind");
}
