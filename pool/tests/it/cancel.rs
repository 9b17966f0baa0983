//! `AsyncResult::cancel`: a call none of whose tasks has started is
//! dropped from the queue and fails with `Error::Cancelled` (Python's
//! `CancelledError`); a started or finished one is left alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_pool::Error;
use mp_proc::StartMethod;
use mp_testkit::guard;

use crate::tasks::{gated, square};

/// A deadline only so that a bug shows as a failure instead of a hang.
const LONG: Duration = Duration::from_secs(120);

mp_testkit::for_each_method!(
    a_queued_call_is_cancelled_and_never_runs,
    a_started_or_finished_call_is_not_cancelled,
);

fn a_queued_call_is_cancelled_and_never_runs(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 1);
    let blocker = pool.apply_async(gated, 1);
    gate.started.get_timeout(LONG).unwrap();
    // Queued behind the blocked task on the only worker. Had they run,
    // each would have reported its start on `gate.started`.
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let queued = pool
        .apply_async(gated, 7)
        .on_error(move |e| seen.lock().unwrap().push(e.to_string()));
    let mapped = pool.map_async_chunked(gated, 0..5, 2);
    assert!(queued.cancel());
    assert!(mapped.cancel());
    // Settled at once, failed, and only once.
    assert!(queued.ready());
    assert!(matches!(queued.successful(), Ok(false)));
    assert!(!queued.cancel());
    assert_eq!(
        *errors.lock().unwrap(),
        ["the call was cancelled before it started"]
    );
    assert!(matches!(queued.get(), Err(Error::Cancelled)));
    assert!(matches!(mapped.get(), Err(Error::Cancelled)));
    // The running call goes on; the pool too.
    gate.go.set();
    assert_eq!(blocker.get().unwrap(), 1);
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
    pool.close();
    pool.join().unwrap();
    // The cancelled functions never ran: no start was reported.
    assert!(gate.started.get_timeout(Duration::ZERO).is_err());
}

fn a_started_or_finished_call_is_not_cancelled(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 1);
    let running = pool.apply_async(gated, 1);
    gate.started.get_timeout(LONG).unwrap();
    assert!(!running.cancel());
    assert!(!running.ready());
    gate.go.set();
    assert_eq!(running.get().unwrap(), 1);
    // Finished: nothing to cancel, the value stays.
    let done = pool.apply_async(square, 3);
    assert!(done.wait(Some(LONG)));
    assert!(!done.cancel());
    assert_eq!(done.get().unwrap(), 9);
    // A map whose first chunk started is not cancelled: its rest runs too.
    gate.go.clear();
    let partly = pool.map_async_chunked(gated, [10, 11, 12], 1);
    gate.started.get_timeout(LONG).unwrap();
    assert!(!partly.cancel());
    gate.go.set();
    assert_eq!(partly.get().unwrap(), [10, 11, 12]);
    // A call that failed before it ran is not cancelled either.
    pool.close();
    let refused = pool.apply_async(square, 2);
    assert!(!refused.cancel());
    assert!(matches!(refused.get(), Err(Error::NotRunning)));
    pool.join().unwrap();
}
