//! Callbacks of a process pool's calls run on its scheduler thread without
//! the pool's lock: one may call the pool (CPython's result handler runs
//! them without the pool's lock too), whether the call's handle is kept or
//! was dropped while it ran, and the captured state of one that never runs
//! (its call failed) is dropped there too.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use mp_pool::AsyncResult;
use mp_proc::StartMethod;
use mp_testkit::guard;

use crate::tasks::{gated, square};

mp_testkit::for_each_method!(
    an_on_success_callback_may_call_the_pool,
    a_forgotten_calls_callback_may_call_the_pool,
);

/// A deadline only so that a deadlock fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(60);

fn fails(_: u64) -> u64 {
    panic!("the call fails")
}

fn an_on_success_callback_may_call_the_pool(method: StartMethod) {
    let _g = guard();
    let pool = Arc::new(crate::pool(method));
    let (tx, rx) = mpsc::channel::<AsyncResult<u64>>();
    let p = pool.clone();
    let r = pool
        .apply_async(square, 3)
        .on_success(move |v| tx.send(p.apply_async(square, v)).unwrap());
    assert_eq!(r.get().unwrap(), 9);
    let inner = rx.recv_timeout(DEADLINE).expect("the callback ran");
    assert_eq!(inner.get().unwrap(), 81);
}

/// Struct whose `Drop` submits to the pool and sends the handle.
struct Submits(Arc<mp_pool::Pool>, mpsc::Sender<AsyncResult<u64>>);

impl Drop for Submits {
    fn drop(&mut self) {
        let _ = self.1.send(self.0.apply_async(square, 5));
    }
}

fn a_forgotten_calls_callback_may_call_the_pool(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    let pool = Arc::new(pool);
    let (tx, rx) = mpsc::channel::<AsyncResult<u64>>();
    let (p, t) = (pool.clone(), tx.clone());
    let r = pool
        .apply_async(gated, 4)
        .on_success(move |v| t.send(p.apply_async(square, v)).unwrap());
    gate.started.get_timeout(DEADLINE).unwrap();
    drop(r);
    gate.go.set();
    let inner = rx.recv_timeout(DEADLINE).expect("the callback ran");
    assert_eq!(inner.get().unwrap(), 16);
    // A callback that never runs (the call failed): its state is dropped.
    let state = Submits(pool.clone(), tx);
    let r = pool.apply_async(fails, 0).on_success(move |_| drop(state));
    drop(r);
    let inner = rx.recv_timeout(DEADLINE).expect("the state was dropped");
    assert_eq!(inner.get().unwrap(), 25);
}
