//! Results awaited without a runtime: `AsyncResult` is a future, `IMap` a
//! stream (feature `async`). Polled by a hand-written executor (std only):
//! a pending poll leaves the waker in the pool, and the pool wakes it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mp_pool::Error;
use mp_proc::{Queue, StartMethod};
use mp_testkit::guard;

use crate::tasks::{gated, square};

/// A deadline only so that a bug shows as a failure instead of a hang.
const LONG: Duration = Duration::from_secs(120);

mp_testkit::for_each_method!(
    awaiting_apply_async_and_map_async_gives_their_values,
    a_pending_future_is_woken_by_its_result,
    a_dropped_future_does_not_cancel_its_task,
    a_pending_future_wakes_with_terminated_when_the_pool_ends,
);

/// Unparks the thread that polls.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Counts its wakes.
#[derive(Default)]
pub(crate) struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    pub(crate) fn woken(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Polls `f` on this thread until it is ready, parking between polls: only
/// the pool's wake-up makes progress (the deadline is a guard against a
/// lost wake, which shows as `Err`).
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output, &'static str> {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = mp_proc::plumbing::deadline_after(LONG).expect("a near deadline");
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Ok(v);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("never woken");
        }
        std::thread::park_timeout(left);
    }
}

fn awaiting_apply_async_and_map_async_gives_their_values(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    assert_eq!(
        block_on(pool.apply_async(square, 7).into_future())
            .unwrap()
            .unwrap(),
        49
    );
    let squares: Vec<u64> = (0..100).map(|x| x * x).collect();
    let map = pool.map_async(square, 0..100).into_future();
    assert_eq!(block_on(map).unwrap().unwrap(), squares);
    // A failure is the future's output, as `get`'s.
    let failing = pool.apply_async(boom, 0).into_future();
    assert!(
        matches!(block_on(failing).unwrap(), Err(Error::Panicked { message }) if message == "boom")
    );
    pool.close();
    let refused = pool.apply_async(square, 1).into_future();
    assert!(matches!(block_on(refused).unwrap(), Err(Error::NotRunning)));
    pool.join().unwrap();
}

fn a_pending_future_is_woken_by_its_result(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 1);
    let mut fut = pool.apply_async(gated, 5).into_future();
    gate.started.get_timeout(LONG).unwrap();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    assert_eq!(count.woken(), 0);
    gate.go.set();
    assert!(
        mp_testkit::wait_until(LONG, || count.woken() > 0),
        "never woken"
    );
    assert!(matches!(
        Pin::new(&mut fut).poll(&mut cx),
        Poll::Ready(Ok(5))
    ));
    // Polled again, it has nothing more (the value was taken).
    assert!(matches!(
        Pin::new(&mut fut).poll(&mut cx),
        Poll::Ready(Err(Error::Terminated))
    ));
    pool.close();
    pool.join().unwrap();
}

fn boom(_: u64) -> u64 {
    panic!("boom")
}

/// Waits for the gate, then puts `x` on the caller's queue.
fn put_after_gate((q, x): (Queue<u64>, u64)) {
    q.put(gated(x)).unwrap();
}

fn a_dropped_future_does_not_cancel_its_task(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 1);
    let q = Queue::new().unwrap();
    let mut fut = pool
        .apply_async(put_after_gate, (q.clone(), 21))
        .into_future();
    gate.started.get_timeout(LONG).unwrap();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    assert!(
        Pin::new(&mut fut)
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    drop(fut);
    // The dropped future's waker was let go at once.
    drop(waker);
    assert_eq!(Arc::strong_count(&count), 1);
    gate.go.set();
    // The task ran to its end: its side effect is there.
    assert_eq!(q.get_timeout(LONG).unwrap(), 21);
    // It was not woken when the task ended.
    assert_eq!(count.woken(), 0);
    // A future dropped before its first poll does not cancel either.
    drop(
        pool.apply_async(put_after_gate, (q.clone(), 22))
            .into_future(),
    );
    assert_eq!(q.get_timeout(LONG).unwrap(), 22);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    pool.close();
    pool.join().unwrap();
}

fn a_pending_future_wakes_with_terminated_when_the_pool_ends(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 1);
    let mut fut = pool.apply_async(gated, 1).into_future();
    let mut queued = pool.map_async(square, 0..3).into_future();
    gate.started.get_timeout(LONG).unwrap();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    assert!(Pin::new(&mut queued).poll(&mut cx).is_pending());
    pool.terminate();
    assert!(
        mp_testkit::wait_until(LONG, || count.woken() >= 2),
        "never woken"
    );
    assert!(matches!(
        Pin::new(&mut fut).poll(&mut cx),
        Poll::Ready(Err(Error::Terminated))
    ));
    assert!(matches!(
        Pin::new(&mut queued).poll(&mut cx),
        Poll::Ready(Err(Error::Terminated))
    ));
    pool.join().unwrap();
}

/// `IMap` as a `futures_core::Stream`.
#[cfg(feature = "async")]
mod stream {
    use futures_core::Stream;

    use super::*;

    mp_testkit::for_each_method!(
        an_imap_is_a_stream_of_its_results,
        a_pending_stream_is_woken_by_each_result,
        a_pending_stream_dropped_early_lets_its_waker_go,
    );

    /// The stream's next item (`poll_next` through a future).
    pub(crate) async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
        std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
    }

    fn an_imap_is_a_stream_of_its_results(method: StartMethod) {
        let _g = guard();
        let pool = crate::pool(method);
        let squares: Vec<u64> = (0..200).map(|x| x * x).collect();
        let mut it = pool.imap_chunked(square, 0..200, 7);
        let got = block_on(async {
            let mut got = Vec::new();
            while let Some(r) = next(&mut it).await {
                got.push(r.unwrap());
            }
            got
        })
        .unwrap();
        assert_eq!(got, squares);
        let mut it = pool.imap_unordered_buffered(square, 0..200, 3, 2);
        let mut got = block_on(async {
            let mut got = Vec::new();
            while let Some(r) = next(&mut it).await {
                got.push(r.unwrap());
            }
            got
        })
        .unwrap();
        got.sort_unstable();
        assert_eq!(got, squares);
        pool.close();
        pool.join().unwrap();
    }

    fn a_pending_stream_is_woken_by_each_result(method: StartMethod) {
        let _g = guard();
        let (pool, gate) = crate::gated(method, 1);
        let mut it = pool.imap(gated, 0..3);
        gate.started.get_timeout(LONG).unwrap();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut it).poll_next(&mut cx).is_pending());
        gate.go.set();
        assert!(
            mp_testkit::wait_until(LONG, || count.woken() > 0),
            "never woken"
        );
        let mut got = Vec::new();
        while got.len() < 3 {
            let woken = count.woken();
            match Pin::new(&mut it).poll_next(&mut cx) {
                Poll::Ready(Some(r)) => got.push(r.unwrap()),
                Poll::Ready(None) => panic!("ended early at {got:?}"),
                Poll::Pending => {
                    assert!(
                        mp_testkit::wait_until(LONG, || count.woken() > woken),
                        "never woken"
                    );
                }
            }
        }
        assert_eq!(got, [0, 1, 2]);
        assert!(matches!(
            Pin::new(&mut it).poll_next(&mut cx),
            Poll::Ready(None)
        ));
        // After the pool's end, a pending stream wakes with the pool's error.
        gate.go.clear();
        let mut it = pool.imap(gated, 0..3);
        gate.started.get_timeout(LONG).unwrap();
        assert!(Pin::new(&mut it).poll_next(&mut cx).is_pending());
        let woken = count.woken();
        pool.terminate();
        assert!(
            mp_testkit::wait_until(LONG, || count.woken() > woken),
            "never woken"
        );
        assert!(matches!(
            Pin::new(&mut it).poll_next(&mut cx),
            Poll::Ready(Some(Err(Error::Terminated)))
        ));
        assert!(matches!(
            Pin::new(&mut it).poll_next(&mut cx),
            Poll::Ready(None)
        ));
        pool.join().unwrap();
    }

    fn a_pending_stream_dropped_early_lets_its_waker_go(method: StartMethod) {
        let _g = guard();
        let (pool, gate) = crate::gated(method, 1);
        let mut it = pool.imap(gated, 0u64..);
        gate.started.get_timeout(LONG).unwrap();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        assert!(
            Pin::new(&mut it)
                .poll_next(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // The consumer stops: its queued tasks go, its waker is let go.
        drop(it);
        drop(waker);
        assert_eq!(Arc::strong_count(&count), 1);
        gate.go.set();
        assert_eq!(pool.apply(square, 5).unwrap(), 25);
        assert_eq!(count.woken(), 0);
        pool.close();
        pool.join().unwrap();
    }
}
