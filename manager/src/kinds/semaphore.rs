//! A shared `Semaphore` and `BoundedSemaphore`: their requests, their
//! proxies and their server side (one kind of object).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::plumbing::local::{self, Refused};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Failure, Reply, Request, Wait};
use crate::proxy::{Reference, count, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, fail};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Acquire(Wait),
    Release,
    Value,
}

/// A `threading.Semaphore` in the manager.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let s = m.semaphore(1)?;
/// assert!(s.try_acquire()?);
/// assert!(!s.try_acquire()?);
/// s.release()?;
/// assert_eq!(s.value()?, 1);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct SemaphoreProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(SemaphoreProxy);

impl SemaphoreProxy {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Semaphore(self.inner.id, op))
    }

    fn acquire_wait(&self, wait: Wait) -> Result<bool> {
        flag(self.op(Op::Acquire(wait))?)
    }

    /// `acquire()`: waits until the value is positive and decrements
    /// it. A process that dies in the wait takes nothing.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_wait(None).map(|_| ())
    }

    /// `acquire(blocking=False)`.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_wait(Some(Duration::ZERO))
    }

    /// `acquire(timeout=...)`: false if it was not acquired in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_wait(Some(timeout))
    }

    /// `release()`: increments the value.
    pub fn release(&self) -> Result<()> {
        ok(self.op(Op::Release)?)
    }

    /// The current value (`get_value()`).
    pub fn value(&self) -> Result<usize> {
        count(self.op(Op::Value)?)
    }
}

/// A `threading.BoundedSemaphore` in the manager: a [`SemaphoreProxy`]
/// whose releasing above the initial value is
/// [`Error::TooManyReleases`](crate::Error::TooManyReleases).
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let s = m.bounded_semaphore(1)?;
/// assert!(s.release().is_err());
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct BoundedSemaphoreProxy {
    inner: SemaphoreProxy,
    _t: PhantomData<()>,
}

proxy_handle!(BoundedSemaphoreProxy);

impl Deref for BoundedSemaphoreProxy {
    type Target = SemaphoreProxy;

    fn deref(&self) -> &SemaphoreProxy {
        &self.inner
    }
}

/// A semaphore in the server: mp-proc's in-process semaphore.
pub(crate) struct Semaphore(local::Semaphore);

impl Semaphore {
    pub(crate) fn new(value: u64, bounded: bool) -> Semaphore {
        let value = usize::try_from(value).unwrap_or(usize::MAX);
        Semaphore(local::Semaphore::new(value, bounded))
    }
}

impl Object for Semaphore {}

impl Handler<Op> for Semaphore {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let s = &self.0;
        match op {
            Op::Acquire(wait) => match call.waiting(wait, |w| s.acquire(w)) {
                Ok(()) => {
                    // A unit taken for a client that never hears of it
                    // goes back.
                    let this = self.clone();
                    call.on_lost(move |_| this.0.give_back());
                    Reply::Bool(true)
                }
                Err(_) => Reply::Bool(false),
            },
            Op::Release => match s.release() {
                Ok(()) => Reply::Ok,
                Err(Refused::TooManyReleases { bound }) => {
                    fail(Failure::TooManyReleases(bound as u64))
                }
                Err(r) => fail(Failure::Remote(format!("semaphore: {r}"))),
            },
            Op::Value => Reply::Count(s.value() as u64),
        }
    }
}
