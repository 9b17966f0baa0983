//! The results of a `ThreadPool`'s calls, written in place by several
//! threads: each value made is dropped exactly once (never twice, never
//! leaked) whatever becomes of its call while workers still write it (its
//! handle dropped, the pool terminated, a task that panics), and a callback
//! does not take the value `get` returns.

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use mp_dummy::ThreadPool;
use mp_pool::plumbing;
use mp_testkit::guard;

/// A value that counts how many of its kind are alive.
struct Token(Arc<AtomicIsize>);

impl Token {
    fn new(live: &Arc<AtomicIsize>) -> Token {
        live.fetch_add(1, Ordering::SeqCst);
        Token(live.clone())
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds the tasks that reach it until it opens; tells how many did.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut st = self.state.lock().unwrap();
        st.1 += 1;
        self.changed.notify_all();
        while !st.0 {
            st = self.changed.wait(st).unwrap();
        }
    }

    fn wait_for(&self, n: usize) {
        let mut st = self.state.lock().unwrap();
        while st.1 < n {
            st = self.changed.wait(st).unwrap();
        }
    }

    fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }
}

/// What a call is left to when its workers are still writing its results.
#[derive(Clone, Copy, Debug)]
enum Fate {
    HandleDropped,
    Terminated,
    TimedOut,
}

#[test]
fn results_written_while_their_call_is_dropped_or_terminated_are_dropped_once() {
    let _g = guard();
    for fate in [Fate::HandleDropped, Fate::Terminated, Fate::TimedOut] {
        let live = Arc::new(AtomicIsize::new(0));
        let gate = Arc::new(Gate::default());
        let pool = ThreadPool::new(Some(2)).unwrap();
        let items: Vec<Token> = (0..40).map(|_| Token::new(&live)).collect();
        let (l, g) = (live.clone(), gate.clone());
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        // Two items per task: each worker writes one value, then waits at
        // the gate in the middle of its task.
        let r = plumbing::map_async(
            pool.pool(),
            move |t: Token| {
                drop(t);
                if m.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                    g.pass();
                }
                Token::new(&l)
            },
            items,
            Some(2),
        );
        gate.wait_for(2);
        match fate {
            Fate::HandleDropped => drop(r),
            Fate::Terminated => {
                pool.terminate();
                assert!(r.get().is_err(), "{fate:?}");
            }
            Fate::TimedOut => {
                let timeout = std::time::Duration::from_millis(1);
                assert!(matches!(
                    r.get_timeout(timeout),
                    Err(mp_pool::Error::Timeout)
                ));
                drop(r);
            }
        }
        gate.open();
        pool.close();
        pool.join().unwrap();
        drop(pool);
        assert_eq!(live.load(Ordering::SeqCst), 0, "{fate:?}: values alive");
    }
}

#[test]
fn a_task_that_panics_midway_drops_what_it_wrote_and_its_items_once() {
    let _g = guard();
    let live = Arc::new(AtomicIsize::new(0));
    let pool = ThreadPool::new(Some(2)).unwrap();
    for round in 0..20u32 {
        let items: Vec<(u32, Token)> = (0..200).map(|i| (i, Token::new(&live))).collect();
        let l = live.clone();
        let r = plumbing::map_async(
            pool.pool(),
            move |(i, t): (u32, Token)| {
                drop(t);
                assert!(i != 7 * round + 3, "item {i}");
                Token::new(&l)
            },
            items,
            Some(7),
        )
        .get();
        assert!(matches!(r, Err(mp_pool::Error::Panicked { .. })));
    }
    drop(pool);
    assert_eq!(live.load(Ordering::SeqCst), 0, "values alive");
}

/// CPython calls `error_callback` only on failure, and `get()` returns the
/// value whatever callbacks there are: a callback that is not called must
/// not take it.
#[test]
fn an_error_callback_leaves_a_successful_value_to_get() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let r = pool.map_async(|x: u32| x + 1, 0..100).on_error(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(r.get().unwrap(), (1..101).collect::<Vec<u32>>());
    let c = called.clone();
    let r = pool.apply_async(|x: u32| x * 2, 21).on_error(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(r.get().unwrap(), 42);
    assert_eq!(called.load(Ordering::SeqCst), 0);
    // On failure it is called, and `get` gives the same error.
    let c = called.clone();
    let r = pool
        .map_async(|x: u32| assert!(x != 50), 0..100)
        .on_error(move |e| {
            assert!(matches!(e, mp_pool::Error::Panicked { .. }), "{e:?}");
            c.fetch_add(1, Ordering::SeqCst);
        });
    assert!(matches!(r.get(), Err(mp_pool::Error::Panicked { .. })));
    let c = called.clone();
    let r = pool
        .apply_async(|x: u32| assert!(x != 1), 1)
        .on_error(move |e| {
            assert!(matches!(e, mp_pool::Error::Panicked { .. }), "{e:?}");
            c.fetch_add(1, Ordering::SeqCst);
        });
    assert!(matches!(r.get(), Err(mp_pool::Error::Panicked { .. })));
    assert_eq!(called.load(Ordering::SeqCst), 2);
}

/// A result whose `Drop` panics, after noting the thread it was dropped on.
struct Bomb(Arc<Mutex<Vec<std::thread::ThreadId>>>);

impl Drop for Bomb {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(std::thread::current().id());
        if !std::thread::panicking() {
            panic!("a result's drop panics");
        }
    }
}

fn init(_: ()) {}

/// A call whose handle is gone is forgotten, with its values, on the worker
/// that completes it: a value whose `Drop` panics must not end that worker
/// (a pool with an initializer, where callers do not help, then hung). The
/// one worker is held at a gate until every handle is gone, so that the
/// calls complete after (a call complete before its handle is dropped has
/// its values dropped with the handle, on the thread that drops it: the test
/// once raced on that).
#[test]
fn a_panicking_drop_of_a_forgotten_result_leaves_the_workers_running() {
    let _g = guard();
    let pool =
        ThreadPool::from_builder(mp_pool::Pool::builder().processes(1).initializer(init, ()))
            .unwrap();
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let held = pool.apply_async(move |()| g.pass(), ());
    gate.wait_for(1);
    let dropped_on = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let d = dropped_on.clone();
        drop(pool.map_async(move |_: u32| Bomb(d.clone()), 0..4));
    }
    gate.open();
    held.get().unwrap();
    let pool = Arc::new(pool);
    let (tx, rx) = std::sync::mpsc::channel();
    let p = pool.clone();
    let caller = std::thread::spawn(move || tx.send(p.map(|x: u32| x + 1, 0..4)));
    // A deadline only so that a hang fails the test.
    let got = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert_eq!(got.expect("the pool hung").unwrap(), [1, 2, 3, 4]);
    caller.join().unwrap().unwrap();
    // The worker ran the calls in order: the forgotten ones completed, and
    // their values were dropped, before the last map's.
    let dropped_on = dropped_on.lock().unwrap();
    assert_eq!(dropped_on.len(), 12, "every value dropped once");
    let me = std::thread::current().id();
    assert!(dropped_on.iter().all(|t| *t != me), "dropped on the worker");
}

/// A value whose `Drop` uses the pool it came from.
struct UsesPool(Arc<ThreadPool>);

impl Drop for UsesPool {
    fn drop(&mut self) {
        assert_eq!(self.0.map(|x: u32| x * 2, 0..3).unwrap(), [0, 2, 4]);
    }
}

/// A call complete before its handle is dropped has its values dropped by
/// that drop, on the dropping thread, without the pool's lock held: a value
/// whose `Drop` uses the pool does not deadlock (it did: the values were
/// dropped under the lock), and the pool goes on.
#[test]
fn the_values_of_a_complete_call_are_dropped_with_its_handle_outside_the_pools_lock() {
    let _g = guard();
    let pool = Arc::new(ThreadPool::new(Some(2)).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let p = pool.clone();
    let dropper = std::thread::spawn(move || {
        let q = p.clone();
        let r = p.apply_async(move |()| UsesPool(q), ());
        assert!(r.wait(None), "the call completes");
        drop(r);
        tx.send(p.map(|x: u32| x + 1, 0..2)).unwrap();
    });
    // A deadline only so that a hang fails the test.
    let got = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert_eq!(got.expect("the pool deadlocked").unwrap(), [1, 2]);
    dropper.join().unwrap();
}
