//! `AsyncResult` as a future: awaitable on any executor, without a runtime
//! dependency. A pending poll leaves its waker in the job; whatever settles
//! the job (its last outcome, its callbacks' end, the pool's end, a cancel)
//! wakes it after letting go of the pool's lock.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Result;
use crate::result::AsyncResult;

/// The future of an [`AsyncResult`] (its [`IntoFuture`]): ready with what
/// [`get`](AsyncResult::get) would return.
///
/// Polling never blocks and never runs a task on the executor's thread (on
/// a pool of threads, `get` helps run the call's tasks; the future leaves
/// them to the workers). Dropping it (or never polling it) does not cancel
/// the call: its tasks run and their outcome is dropped
/// ([`AsyncResult::cancel`] cancels one that has not started).
///
/// ```
/// use std::future::IntoFuture;
/// use std::sync::Arc;
/// use std::task::{Context, Poll, Wake};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// /// Wakes the thread that polls (a one-future executor).
/// struct Unpark(std::thread::Thread);
/// impl Wake for Unpark {
///     fn wake(self: Arc<Self>) {
///         self.0.unpark();
///     }
/// }
///
/// let pool = mp_pool::Pool::new(Some(2))?;
/// let mut future = pool.apply_async(square, 7).into_future();
/// let waker = Arc::new(Unpark(std::thread::current())).into();
/// let mut cx = Context::from_waker(&waker);
/// let value = loop {
///     match std::pin::Pin::new(&mut future).poll(&mut cx) {
///         Poll::Ready(v) => break v?,
///         Poll::Pending => std::thread::park(),
///     }
/// };
/// assert_eq!(value, 49);
/// # use std::future::Future;
/// # Ok::<(), mp_pool::Error>(())
/// ```
#[must_use = "futures do nothing unless polled (the call runs anyway)"]
pub struct ResultFuture<R> {
    result: Option<AsyncResult<R>>,
}

impl<R: Send + 'static> IntoFuture for AsyncResult<R> {
    type Output = Result<R>;
    type IntoFuture = ResultFuture<R>;

    fn into_future(self) -> ResultFuture<R> {
        ResultFuture { result: Some(self) }
    }
}

impl<R: Send + 'static> Future for ResultFuture<R> {
    type Output = Result<R>;

    /// Ready once the call is settled (its callbacks have run); polled
    /// again after that, it is `Err(Terminated)` (the value was taken).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let Some(result) = &self.result else {
            return Poll::Ready(Err(crate::Error::Terminated));
        };
        if !result.poll_settled(cx.waker()) {
            return Poll::Pending;
        }
        match self.result.take() {
            Some(r) => Poll::Ready(r.take_settled()),
            None => Poll::Ready(Err(crate::Error::Terminated)),
        }
    }
}

impl<R> fmt::Debug for ResultFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultFuture")
            .field("result", &self.result)
            .finish()
    }
}
