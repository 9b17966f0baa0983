//! Concurrent `join`s of one pool: every one waits until the workers are
//! gone, as CPython's do (a manager's pool is joined by any of its clients).

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use mp_proc::StartMethod;
use mp_testkit::guard;

use crate::tasks::gated;

mp_testkit::for_each_method!(concurrent_joins_all_wait_for_the_workers);

/// Joiners at once on a closed pool whose only worker is held by the test.
const JOINERS: usize = 4;

fn concurrent_joins_all_wait_for_the_workers(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 1);
    let r = pool.apply_async(gated, 7);
    gate.started.get().unwrap();
    pool.close();
    let released = AtomicBool::new(false);
    let ready = Barrier::new(JOINERS + 1);
    let seen: Vec<bool> = std::thread::scope(|s| {
        let joiners: Vec<_> = (0..JOINERS)
            .map(|_| {
                s.spawn(|| {
                    ready.wait();
                    pool.join().unwrap();
                    // Whether the worker was released before this join ended.
                    released.load(Ordering::SeqCst)
                })
            })
            .collect();
        ready.wait();
        // Give the joiners their turn (no timing: a joiner that has not
        // joined yet when the worker is released proves nothing, it does
        // not fail the test).
        for _ in 0..100 {
            std::thread::yield_now();
        }
        released.store(true, Ordering::SeqCst);
        gate.go.set();
        joiners.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(
        seen,
        vec![true; JOINERS],
        "a join returned while the worker ran"
    );
    assert_eq!(r.get().unwrap(), 7);
}
