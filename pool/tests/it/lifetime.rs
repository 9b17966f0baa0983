//! Workers' lives: the initializer, `maxtasksperchild`, `close` and `join`,
//! and the pool's end, which leaves no process behind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use mp_proc::{StartMethod, Value};
use mp_testkit::{exists, guard};

use crate::tasks::{gated, pid, square};

mp_testkit::for_each_method!(
    the_initializer_runs_once_per_worker_with_shared_handles,
    maxtasksperchild_replaces_workers,
    close_lets_submitted_work_finish,
    a_dropped_pool_leaves_no_process,
);

static INITIALIZED: AtomicBool = AtomicBool::new(false);

fn init(counter: Value<u32>) {
    *counter.lock().unwrap() += 1;
    INITIALIZED.store(true, Ordering::SeqCst);
}

fn initialized(_: u64) -> (bool, u32) {
    (INITIALIZED.load(Ordering::SeqCst), std::process::id())
}

fn the_initializer_runs_once_per_worker_with_shared_handles(method: StartMethod) {
    let _g = guard();
    let counter = Value::new(0u32).unwrap();
    let pool = crate::builder(method, 2)
        .initializer(init, counter.clone())
        .build()
        .unwrap();
    let seen = pool.map_chunked(initialized, 0..100, 1).unwrap();
    assert!(seen.iter().all(|(init, _)| *init));
    pool.close();
    pool.join().unwrap();
    assert_eq!(counter.get(), 2);
}

fn maxtasksperchild_replaces_workers(method: StartMethod) {
    let _g = guard();
    let counter = Value::new(0u32).unwrap();
    let pool = crate::builder(method, 2)
        .maxtasksperchild(5)
        .initializer(init, counter.clone())
        .build()
        .unwrap();
    let seen = pool.map_chunked(initialized, 0..100, 1).unwrap();
    assert!(seen.iter().all(|(init, _)| *init));
    let pids: HashSet<u32> = seen.iter().map(|(_, pid)| *pid).collect();
    // Each worker ran at most 5 tasks: at least 20 of them.
    assert!(pids.len() >= 20, "only {} workers", pids.len());
    pool.close();
    pool.join().unwrap();
    assert!(counter.get() as usize >= pids.len());

    // One task per worker, closed with tasks outstanding: all still run.
    let pool = crate::builder(method, 2)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let r = pool.map_async_chunked(square, 0..20, 1);
    pool.close();
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), (0..20).map(|x| x * x).collect::<Vec<_>>());
}

fn close_lets_submitted_work_finish(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let a = pool.map_async_chunked(square, 0..500, 3);
    let b = pool.apply_async(square, 11);
    pool.close();
    pool.join().unwrap();
    assert_eq!(a.get().unwrap().len(), 500);
    assert_eq!(b.get().unwrap(), 121);
}

fn a_dropped_pool_leaves_no_process(method: StartMethod) {
    let _g = guard();
    // Busy workers, stuck in tasks that would wait forever.
    let (pool, gate) = crate::gated(method, 2);
    let _r = pool.map_async_chunked(gated, 0..4, 1);
    let pids = [gate.started.get().unwrap(), gate.started.get().unwrap()];
    drop(pool);
    for p in pids {
        assert!(!exists(p), "worker {p} outlived its pool");
    }
    // Idle workers.
    let pool = crate::pool(method);
    let pids: HashSet<u32> = pool
        .map_chunked(pid, 0..20, 1)
        .unwrap()
        .into_iter()
        .collect();
    drop(pool);
    for p in pids {
        assert!(!exists(p), "worker {p} outlived its pool");
    }
}
