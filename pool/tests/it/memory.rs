//! Issue 17: `max_memory_per_child` replaces a worker whose resident memory
//! is over the limit after a task; the task succeeds and nothing fails.

use std::time::Duration;

use mp_pool::{Error, Pool};
use mp_proc::StartMethod;
use mp_testkit::{exists, guard, zombies};

use crate::tasks::square;

mp_testkit::for_each_method!(
    a_task_that_leaks_past_the_limit_succeeds_and_its_worker_is_replaced,
    a_timeout_while_the_worker_is_replaced_for_memory,
    a_zero_limit_is_refused,
);

const MIB: u64 = 1 << 20;

/// This worker's resident memory, in bytes.
fn resident(_: ()) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Leaks `mib` MiB, touched (resident), then returns its pid.
fn leak(mib: u64) -> u32 {
    let v = vec![1u8; usize::try_from(mib * MIB).unwrap()];
    Box::leak(v.into_boxed_slice());
    std::process::id()
}

/// The resident memory of a fresh worker of `method`, plus `room`.
fn limit(method: StartMethod, room: u64) -> u64 {
    let probe = crate::builder(method, 1).build().unwrap();
    let base = probe.apply(resident, ()).unwrap();
    base + room
}

/// A pool of `n` workers whose limit is 32 MiB above a fresh worker's memory.
fn capped(method: StartMethod, n: usize) -> Pool {
    crate::builder(method, n)
        .max_memory_per_child(limit(method, 32 * MIB))
        .build()
        .unwrap()
}

fn a_task_that_leaks_past_the_limit_succeeds_and_its_worker_is_replaced(method: StartMethod) {
    let _g = guard();
    let pool = capped(method, 1);
    // Under the limit: the same worker, task after task.
    let first = pool.apply(leak, 1).unwrap();
    assert_eq!(pool.apply(leak, 1).unwrap(), first);
    // Over it: the task succeeds; the next runs in a fresh worker.
    assert_eq!(pool.apply(leak, 64).unwrap(), first);
    let next = pool.apply(leak, 0).unwrap();
    assert_ne!(next, first, "the worker that leaked was replaced");
    assert!(mp_testkit::wait_until(Duration::from_secs(60), || !exists(
        first
    )));
    // Many tasks, some leaking, in chunks: all succeed.
    let outcomes: Vec<_> = pool
        .imap_chunked(leak, (0..12).map(|i| if i % 4 == 1 { 48 } else { 0 }), 2)
        .collect();
    assert!(outcomes.iter().all(|r| r.is_ok()), "{outcomes:?}");
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert!(zombies().is_empty());
}

/// Leaks 64 MiB on 1; hangs on 1000; else squares.
fn leak_or_hang(x: u64) -> u64 {
    match x {
        1 => u64::from(leak(64)),
        1000.. => loop {
            std::thread::park();
        },
        x => x * x,
    }
}

fn a_timeout_while_the_worker_is_replaced_for_memory(method: StartMethod) {
    let _g = guard();
    let pool = crate::builder(method, 2)
        .max_memory_per_child(limit(method, 32 * MIB))
        .task_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let outcomes: Vec<_> = pool
        .imap_chunked(leak_or_hang, [0, 1, 1000, 3, 1, 5, 1001, 7], 1)
        .collect();
    for (i, r) in outcomes.iter().enumerate() {
        match i {
            2 | 6 => assert!(
                matches!(r, Err(Error::TaskTimeout { item, .. }) if *item == i),
                "item {i}: {r:?}"
            ),
            _ => assert!(r.is_ok(), "item {i}: {r:?}"),
        }
    }
    // One chunk that leaks, then hangs: the leak is never measured (the
    // chunk never ends), the hang times out, and the chunk's other items
    // run again on a fresh worker.
    let outcomes: Vec<_> = pool.imap_chunked(leak_or_hang, [1, 1000, 3], 3).collect();
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(matches!(
        outcomes[1],
        Err(Error::TaskTimeout { item: 1, .. })
    ));
    assert_eq!(outcomes[2].as_ref().ok(), Some(&9));
    assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
}

fn a_zero_limit_is_refused(method: StartMethod) {
    let _g = guard();
    match crate::builder(method, 1).max_memory_per_child(0).build() {
        Err(Error::InvalidArgument { what }) => {
            assert!(what.contains("max_memory_per_child"), "{what}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}
