//! Concurrent `join`s of one thread pool: every one waits until the worker
//! threads are gone, as CPython's do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, mpsc};

use mp_dummy::ThreadPool;
use mp_testkit::guard;

/// Joiners at once on a closed pool whose only worker is held by the test.
const JOINERS: usize = 4;

#[test]
fn concurrent_joins_all_wait_for_the_workers() {
    let _g = guard();
    let pool = ThreadPool::new(Some(1)).unwrap();
    let (started, on_start) = mpsc::channel();
    let go = mp_dummy::Event::new().unwrap();
    let g = go.clone();
    let r = pool.apply_async(
        move |x: u32| {
            started.send(()).unwrap();
            g.wait(None).unwrap();
            x
        },
        7,
    );
    on_start.recv().unwrap();
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
        go.set();
        joiners.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(
        seen,
        vec![true; JOINERS],
        "a join returned while the worker ran"
    );
    assert_eq!(r.get().unwrap(), 7);
}
