//! A shared `Semaphore` and `BoundedSemaphore`: their requests, their
//! proxies and their server side (one kind of object).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Failure, Reply, Request, Wait};
use crate::proxy::{Reference, count, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, Waitable, Waited, fail};

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

struct State {
    value: u64,
    /// A bounded semaphore's initial value.
    bound: Option<u64>,
}

/// A semaphore in the server.
pub(crate) struct Semaphore(Waitable<State>);

impl Semaphore {
    pub(crate) fn new(value: u64, bounded: bool) -> Semaphore {
        Semaphore(Waitable::new(State {
            value,
            bound: bounded.then_some(value),
        }))
    }
}

impl Object for Semaphore {}

impl Handler<Op> for Semaphore {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let s = &self.0;
        let mut guard = s.lock();
        let reply = match op {
            Op::Acquire(wait) => {
                let (_g, w) = s.wait_until(guard, call.client, wait, |s| {
                    s.value = s.value.checked_sub(1)?;
                    Some(())
                });
                return match w {
                    Waited::Ready(()) => {
                        let this = self.clone();
                        call.on_lost(move |_| {
                            this.0.change(|s| s.value = s.value.saturating_add(1))
                        });
                        Reply::Bool(true)
                    }
                    _ => Reply::Bool(false),
                };
            }
            Op::Release => match guard.bound {
                Some(b) if guard.value >= b => fail(Failure::TooManyReleases(b)),
                _ => match guard.value.checked_add(1) {
                    Some(v) => {
                        guard.value = v;
                        Reply::Ok
                    }
                    None => fail(Failure::Remote("semaphore value overflow".into())),
                },
            },
            Op::Value => return Reply::Count(guard.value),
        };
        drop(guard);
        s.changed();
        reply
    }
}
