//! Values of a `ThreadPool`'s calls (results, inputs, a callback's captured
//! state) whose `Drop` uses the pool, or panics, where the pool drops them
//! itself: a forgotten call finished by a worker, a dropped `imap`. They are
//! dropped after the pool's lock is let go (they were dropped under it: a
//! `Drop` that calls the pool deadlocked), and a panicking one ends only
//! that drop.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use mp_dummy::ThreadPool;
use mp_pool::AsyncResult;
use mp_testkit::guard;

/// Runs its closure when dropped.
struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl OnDrop {
    fn new(f: impl FnOnce() + Send + 'static) -> OnDrop {
        OnDrop(Some(Box::new(f)))
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

type Sent = AsyncResult<Vec<u32>>;

/// A value whose `Drop` calls `map_async` on `pool` (which takes the pool's
/// lock) and sends its handle. (Not a blocking `map`: on a pool's only
/// worker thread, with another thread helping with its calls, it would wait
/// for a worker that is itself.)
fn uses_pool(pool: &Arc<ThreadPool>, tx: &Sender<Sent>) -> OnDrop {
    let (pool, tx) = (pool.clone(), tx.clone());
    OnDrop::new(move || {
        let _ = tx.send(pool.map_async(|x: u32| x * 2, 0..3));
    })
}

/// A value whose `Drop` panics.
fn panics_on_drop() -> OnDrop {
    OnDrop::new(|| panic!("a Drop that panics"))
}

/// The result of the next `map_async` a dropped value made; a deadline
/// only so that a deadlock fails the test instead of hanging it.
fn next_map(rx: &Receiver<Sent>) -> Vec<u32> {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("a value's Drop deadlocked on the pool")
        .get()
        .expect("its map succeeds")
}

/// The pool still runs calls on its workers (a wait does not run tasks on
/// the waiting thread, as `get` does).
fn workers_still_run(pool: &ThreadPool) {
    let r = pool.apply_async(|x: u32| x + 1, 41);
    assert!(r.wait(Some(Duration::from_secs(60))), "a worker runs it");
    assert_eq!(r.get().unwrap(), 42);
}

/// (a) `apply_async` forgotten while it runs: the worker that finishes it
/// drops its result, whose `Drop` submits a map to the same pool.
#[test]
fn a_forgotten_calls_result_is_dropped_by_its_worker_outside_the_pools_lock() {
    let _g = guard();
    let pool = Arc::new(ThreadPool::new(Some(2)).unwrap());
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new(Barrier::new(2));
    let (g, p) = (gate.clone(), pool.clone());
    let r = pool.apply_async(
        move |()| {
            g.wait();
            uses_pool(&p, &tx)
        },
        (),
    );
    drop(r);
    gate.wait(); // the task finishes after its handle is gone
    assert_eq!(next_map(&rx), [0, 2, 4]);
    workers_still_run(&pool);
}

/// (b) A dropped `imap`: its outcome not read yet and its input not handed
/// out yet are dropped by the drop, the outcome of its running task by the
/// worker that finishes it; each one's `Drop` submits a map to the same
/// pool.
#[test]
fn a_dropped_imaps_values_are_dropped_outside_the_pools_lock() {
    let _g = guard();
    let pool = Arc::new(ThreadPool::new(Some(1)).unwrap());
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new(Barrier::new(2));
    let (g, p, t) = (gate.clone(), pool.clone(), tx.clone());
    let inputs = vec![(0, None), (1, None), (2, Some(uses_pool(&pool, &tx)))];
    let imap = pool.imap(
        move |(i, input): (u32, Option<OnDrop>)| {
            drop(input);
            if i == 1 {
                g.wait(); // item 0's outcome is in
                g.wait(); // the imap is being dropped
            }
            uses_pool(&p, &t)
        },
        inputs,
    );
    gate.wait();
    // Dropped on another thread: its values' maps wait for the worker,
    // which waits for this thread.
    let dropper = std::thread::spawn(move || drop(imap));
    gate.wait();
    for _ in 0..3 {
        assert_eq!(next_map(&rx), [0, 2, 4]);
    }
    dropper.join().unwrap();
    workers_still_run(&pool);
}

/// (c) `on_success` callbacks that call the pool, one of a call whose
/// handle is kept, one of a call forgotten while it runs; and the captured
/// state of a callback that never runs (its call failed), whose `Drop`
/// submits a map to the pool.
#[test]
fn callbacks_and_their_captured_state_may_call_the_pool() {
    let _g = guard();
    let pool = Arc::new(ThreadPool::new(Some(2)).unwrap());
    let (tx, rx) = mpsc::channel();
    let (p, t) = (pool.clone(), tx.clone());
    let r = pool
        .apply_async(|x: u32| x + 1, 1)
        .on_success(move |v| t.send(p.map_async(move |x: u32| x + v, 0..3)).unwrap());
    assert_eq!(next_map(&rx), [2, 3, 4]);
    assert!(r.wait(None));

    let gate = Arc::new(Barrier::new(2));
    let (g, p, t) = (gate.clone(), pool.clone(), tx.clone());
    let r = pool
        .apply_async(
            move |x: u32| {
                g.wait();
                x
            },
            3,
        )
        .on_success(move |v| t.send(p.map_async(move |x: u32| x * v, 0..3)).unwrap());
    drop(r);
    gate.wait();
    assert_eq!(next_map(&rx), [0, 3, 6]);

    let state = uses_pool(&pool, &tx);
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let r = pool
        .apply_async(
            move |()| {
                g.wait();
                panic!("the call fails")
            },
            (),
        )
        .on_success(move |()| drop(state));
    drop(r);
    gate.wait();
    assert_eq!(next_map(&rx), [0, 2, 4]);
    workers_still_run(&pool);
}

/// (d) A panicking `Drop` of a forgotten call's result (dropped by its
/// worker) or of a dropped `imap`'s values ends only that drop: the drop of
/// the `imap` returns, and the pool's one worker goes on.
#[test]
fn a_panicking_drop_of_a_calls_values_leaves_the_pool_usable() {
    let _g = guard();
    let pool = ThreadPool::new(Some(1)).unwrap();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let r = pool.apply_async(
        move |()| {
            g.wait();
            panics_on_drop()
        },
        (),
    );
    drop(r);
    gate.wait();
    workers_still_run(&pool);

    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let inputs = vec![(0, None), (1, None), (2, Some(panics_on_drop()))];
    let imap = pool.imap(
        move |(i, input): (u32, Option<OnDrop>)| {
            std::mem::forget(input);
            if i == 1 {
                g.wait(); // item 0's outcome is in
                g.wait(); // the imap is dropped
            }
            panics_on_drop()
        },
        inputs,
    );
    gate.wait();
    drop(imap);
    gate.wait();
    workers_still_run(&pool);
    assert_eq!(pool.map(|x: u32| x + 1, 0..3).unwrap(), [1, 2, 3]);
}

/// A `terminate` drops the queued tasks, with their inputs, after the
/// pool's lock is let go: an input whose `Drop` calls the (terminated)
/// pool gets its error instead of deadlocking the terminating thread.
#[test]
fn the_inputs_a_terminate_drops_are_dropped_outside_the_pools_lock() {
    let _g = guard();
    let pool = Arc::new(ThreadPool::new(Some(1)).unwrap());
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let busy = pool.apply_async(
        move |()| {
            g.wait();
            g.wait();
        },
        (),
    );
    gate.wait(); // the one worker is busy: what follows stays queued
    let queued = pool.map_async(drop, [uses_pool(&pool, &tx), uses_pool(&pool, &tx)]);
    let p = pool.clone();
    let terminator = std::thread::spawn(move || p.terminate());
    let got: Vec<_> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(60)))
        .collect();
    if got.iter().any(Result::is_err) {
        // The terminating thread holds the pool's lock for good: the
        // handles' drops would wait for it.
        std::mem::forget((busy, queued, pool));
        panic!("a queued input's Drop deadlocked on the pool");
    }
    for got in got.into_iter().flatten() {
        let got = got.get();
        assert!(matches!(got, Err(mp_pool::Error::NotRunning)), "{got:?}");
    }
    gate.wait();
    terminator.join().unwrap();
    assert!(matches!(queued.get(), Err(mp_pool::Error::Terminated)));
    drop(busy);
    pool.join().unwrap();
}
