//! CPython's queue tests (`_TestQueue`, Lib/test/_test_multiprocessing.py
//! of 3.11), ported with the same inputs and assertions, generic over
//! [`Context`]: `queue.Full`/`queue.Empty`/`ValueError('is closed')` are
//! `Err(Full)`/`Err(Empty)`/`Err(Closed)`. CPython's timing checks are kept
//! as lower bounds only (a timed-out call waited at least its timeout); an
//! upper bound would be a timing threshold.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mp_proc::{Context, Error, EventLike, ProcessLike, QueueLike};

/// CPython's `TIMEOUT1`, `TIMEOUT2`, `TIMEOUT3` (all 0.1 s on Linux).
pub(crate) const TIMEOUT: Duration = Duration::from_millis(100);

/// Runs `f`, and gives its result with the time it took.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

/// `f` gave up with `Err(Full)` (or `Err(Empty)`), after at least `at_least`.
fn refused<T: std::fmt::Debug>(
    f: impl FnOnce() -> Result<T, Error>,
    want: fn(&Error) -> bool,
    at_least: Duration,
) {
    let (r, took) = timed(f);
    match r {
        Err(e) if want(&e) => {}
        other => panic!("expected the queue to refuse, got {other:?}"),
    }
    assert!(
        took >= at_least,
        "gave up after {took:?}, before {at_least:?}"
    );
}

fn full(e: &Error) -> bool {
    matches!(e, Error::Full)
}

fn empty(e: &Error) -> bool {
    matches!(e, Error::Empty)
}

fn take_six<C: Context>(
    (queue, child_can_start, parent_can_continue): (C::Queue<u32>, C::Event, C::Event),
) {
    child_can_start.wait(None).unwrap();
    for _ in 0..6 {
        queue.get().unwrap();
    }
    parent_can_continue.set().unwrap();
}

/// CPython: `_TestQueue.test_put`.
pub fn test_queue_put<C: Context>(ctx: &C) {
    const MAXSIZE: usize = 6;
    let queue = ctx.queue_with_maxsize::<u32>(MAXSIZE).unwrap();
    let (child_can_start, parent_can_continue) = (ctx.event().unwrap(), ctx.event().unwrap());
    let mut proc = ctx.process(
        take_six::<C>,
        (
            queue.clone(),
            child_can_start.clone(),
            parent_can_continue.clone(),
        ),
    );
    proc.set_daemon(true);
    proc.start().unwrap();

    assert!(queue.empty().unwrap());
    assert!(!queue.full().unwrap());

    queue.put(1).unwrap(); // put(1)
    queue.put(2).unwrap(); // put(2, True)
    queue.put_within(3, None).unwrap(); // put(3, True, None)
    queue.try_put(4).unwrap(); // put(4, False)
    queue.try_put(5).unwrap(); // put(5, False, None)
    queue.try_put(6).unwrap(); // put_nowait(6)

    assert!(!queue.empty().unwrap());
    assert!(queue.full().unwrap());

    refused(|| queue.try_put(7), full, Duration::ZERO); // put(7, False)
    refused(|| queue.try_put(7), full, Duration::ZERO); // put(7, False, None)
    refused(|| queue.try_put(7), full, Duration::ZERO); // put_nowait(7)
    refused(|| queue.put_timeout(7, TIMEOUT), full, TIMEOUT); // put(7, True, TIMEOUT1)
    refused(|| queue.try_put(7), full, Duration::ZERO); // put(7, False, TIMEOUT2)
    refused(|| queue.put_timeout(7, TIMEOUT), full, TIMEOUT); // put(7, True, timeout=TIMEOUT3)

    child_can_start.set().unwrap();
    parent_can_continue.wait(None).unwrap();

    assert!(queue.empty().unwrap());
    assert!(!queue.full().unwrap());
    assert_eq!(proc.join().unwrap(), 0);
}

fn put_four<C: Context>(
    (queue, child_can_start, parent_can_continue): (C::Queue<u32>, C::Event, C::Event),
) {
    child_can_start.wait(None).unwrap();
    for i in 2..=5 {
        queue.put(i).unwrap();
    }
    parent_can_continue.set().unwrap();
}

/// CPython: `_TestQueue.test_get`.
pub fn test_queue_get<C: Context>(ctx: &C) {
    let queue = ctx.queue::<u32>().unwrap();
    let (child_can_start, parent_can_continue) = (ctx.event().unwrap(), ctx.event().unwrap());
    let mut proc = ctx.process(
        put_four::<C>,
        (
            queue.clone(),
            child_can_start.clone(),
            parent_can_continue.clone(),
        ),
    );
    proc.set_daemon(true);
    proc.start().unwrap();

    assert!(queue.empty().unwrap());

    child_can_start.set().unwrap();
    parent_can_continue.wait(None).unwrap();

    assert!(!queue.empty().unwrap());
    assert_eq!(queue.get_within(None).unwrap(), 2); // get(True, None)
    assert_eq!(queue.get().unwrap(), 3); // get(True)
    assert_eq!(queue.get_timeout(Duration::from_secs(1)).unwrap(), 4); // get(timeout=1)
    assert_eq!(queue.try_get().unwrap(), 5); // get_nowait()

    assert!(queue.empty().unwrap());

    refused(|| queue.try_get(), empty, Duration::ZERO); // get(False)
    refused(|| queue.try_get(), empty, Duration::ZERO); // get(False, None)
    refused(|| queue.try_get(), empty, Duration::ZERO); // get_nowait()
    refused(|| queue.get_timeout(TIMEOUT), empty, TIMEOUT); // get(True, TIMEOUT1)
    refused(|| queue.try_get(), empty, Duration::ZERO); // get(False, TIMEOUT2)
    refused(|| queue.get_timeout(TIMEOUT), empty, TIMEOUT); // get(timeout=TIMEOUT3)

    assert_eq!(proc.join().unwrap(), 0);
}

/// CPython: `_TestQueue.test_qsize`.
pub fn test_queue_qsize<C: Context>(ctx: &C) {
    let q = ctx.queue::<u32>().unwrap();
    assert_eq!(q.qsize().unwrap(), 0);
    q.put(1).unwrap();
    assert_eq!(q.qsize().unwrap(), 1);
    q.put(5).unwrap();
    assert_eq!(q.qsize().unwrap(), 2);
    q.get().unwrap();
    assert_eq!(q.qsize().unwrap(), 1);
    q.get().unwrap();
    assert_eq!(q.qsize().unwrap(), 0);
}

/// CPython: `_TestQueue.test_timeout`.
pub fn test_queue_timeout<C: Context>(ctx: &C) {
    let q = ctx.queue::<u32>().unwrap();
    let (r, delta) = timed(|| q.get_timeout(Duration::from_millis(200)));
    assert!(matches!(r, Err(Error::Empty)), "{r:?}");
    assert!(delta >= Duration::from_millis(100), "{delta:?}");
}

/// CPython: `_TestQueue.test_closed_queue_put_get_exceptions`, for a
/// `Queue` and a `JoinableQueue`.
pub fn test_queue_closed_queue_put_get_exceptions<C: Context>(ctx: &C) {
    fn check<Q: QueueLike<String>>(q: Q) {
        q.close().unwrap();
        let put = q.put("foo".to_string());
        assert!(matches!(put, Err(Error::Closed)), "{put:?}");
        let get = q.get();
        assert!(matches!(get, Err(Error::Closed)), "{get:?}");
    }
    check(ctx.queue::<String>().unwrap());
    check(ctx.joinable_queue::<String>().unwrap());
}
