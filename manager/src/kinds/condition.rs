//! A shared `Condition` (its lock an `RLock`): its requests, its proxy and
//! its server side.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::plumbing::local::{self, Refused};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::kinds::lock::{AcquirerProxy, Lock, ProxyGuard};
use crate::link::thread_id;
use crate::protocol::{Failure, Reply, Request, Thread, Wait};
use crate::proxy::{Handle, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, fail, wrong_kind};

/// A `Condition`'s own operations, for the calling thread (its lock takes
/// a lock's requests).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Wait(Wait),
    Notify(u64),
    NotifyAll,
}

/// A `threading.Condition` in the manager, with an `RLock`; the methods of
/// `mp_proc::Condition`, and its lock's ([`AcquirerProxy`]'s).
///
/// ```
/// use std::time::Duration;
/// let m = mp_manager::SyncManager::start()?;
/// let c = m.condition()?;
/// let held = c.acquire()?;
/// c.notify_all()?;
/// let (held, notified) = c.wait_timeout(held, Duration::from_millis(1))?;
/// assert!(!notified);
/// drop(held);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct ConditionProxy {
    inner: AcquirerProxy,
    _t: PhantomData<()>,
}

proxy_handle!(ConditionProxy);

impl Deref for ConditionProxy {
    type Target = AcquirerProxy;

    fn deref(&self) -> &AcquirerProxy {
        &self.inner
    }
}

impl ConditionProxy {
    fn op(&self, op: Op) -> Result<Reply> {
        let r = self.inner.reference();
        r.call(&Request::Condition(r.id, thread_id(), op))
    }

    /// `wait()`: releases the lock, waits for a notification, and takes
    /// the lock again.
    pub fn wait<'a>(&self, guard: ProxyGuard<'a>) -> Result<ProxyGuard<'a>> {
        Ok(self.wait_until(guard, None)?.0)
    }

    /// `wait(timeout)`: the flag is false when the time ran out.
    pub fn wait_timeout<'a>(
        &self,
        guard: ProxyGuard<'a>,
        timeout: Duration,
    ) -> Result<(ProxyGuard<'a>, bool)> {
        self.wait_until(guard, Some(timeout))
    }

    fn wait_until<'a>(&self, guard: ProxyGuard<'a>, wait: Wait) -> Result<(ProxyGuard<'a>, bool)> {
        let notified = flag(self.op(Op::Wait(wait))?)?;
        Ok((guard, notified))
    }

    /// `wait_for(predicate, timeout)`: waits until `predicate()` is true
    /// (checked with the lock held), for at most `timeout` (`None`:
    /// forever); returns its last value.
    pub fn wait_for<'a>(
        &self,
        guard: ProxyGuard<'a>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(ProxyGuard<'a>, bool)> {
        mp_proc::plumbing::wait_for_with(guard, predicate, timeout, |g, until| {
            let left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            self.wait_until(g, left)
        })
    }

    /// `notify(n)`: wakes up to `n` waiters (the lock must be held).
    pub fn notify(&self, n: usize) -> Result<()> {
        ok(self.op(Op::Notify(n as u64))?)
    }

    /// `notify_all()`.
    pub fn notify_all(&self) -> Result<()> {
        ok(self.op(Op::NotifyAll)?)
    }
}

impl crate::SyncManager {
    /// A new shared `Condition` over `lock`, a [`LockProxy`](crate::LockProxy)
    /// or an [`RLockProxy`](crate::RLockProxy) of this manager (Python's
    /// `Manager().Condition(lock)`): the two share the lock, so two
    /// conditions over one lock can be used with it held once.
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = mp_manager::SyncManager::start()?;
    /// let lock = m.lock()?;
    /// let (a, b) = (m.condition_over(&lock)?, m.condition_over(&lock)?);
    /// let held = lock.acquire()?;
    /// a.notify_all()?; // the lock held is each condition's
    /// let (held, notified) = b.wait_timeout(held, Duration::from_millis(1))?;
    /// assert!(!notified);
    /// drop(held);
    /// assert!(!lock.locked()?);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn condition_over(&self, lock: &AcquirerProxy) -> Result<ConditionProxy> {
        let r = lock.reference();
        if r.link.address != *self.address() {
            return Err(crate::Error::Invalid {
                what: "Condition",
                reason: format!(
                    "its lock is served at {}, not by this manager ({})",
                    r.link.address,
                    self.address()
                ),
            });
        }
        let kind = crate::protocol::Kind::ConditionOver(r.id);
        Ok(crate::Proxy::from_reference(self.create(kind)?))
    }
}

/// A condition in the server: an `RLock` with mp-proc's in-process
/// condition over it.
pub(crate) fn new() -> Lock {
    let lock = Arc::new(local::Lock::new(true));
    Lock {
        condition: Some(local::Condition::new(lock.clone())),
        lock,
    }
}

/// A condition over an existing lock of the server (a `Lock` or an
/// `RLock`, not another condition's): the two share it, so holding the
/// lock through either proxy is holding the condition's lock.
pub(crate) fn over(object: Arc<dyn Object>) -> std::result::Result<Arc<dyn Object>, String> {
    let object: Arc<dyn std::any::Any + Send + Sync> = object;
    match object.downcast::<Lock>() {
        Ok(l) if l.condition.is_none() => Ok(Arc::new(Lock {
            condition: Some(local::Condition::new(l.lock.clone())),
            lock: l.lock.clone(),
        })),
        _ => Err("a Condition's lock must be a Lock or an RLock of the same manager".into()),
    }
}

impl Handler<(Thread, Op)> for Lock {
    fn serve(self: Arc<Self>, (thread, op): (Thread, Op), call: &mut Call<'_>) -> Reply {
        let who = call.owner(thread);
        let Some(c) = &self.condition else {
            return wrong_kind();
        };
        let n = match op {
            // Releases the lock, waits for a notification (or the
            // timeout), and takes the lock again at its depth.
            Op::Wait(wait) => {
                return match call.waiting(wait, |w| c.wait(who, w)) {
                    Ok(notified) => {
                        // A reply lost: the lock is released, and a
                        // notification the client never heard of goes to
                        // the next waiter.
                        let this = self.clone();
                        call.on_lost(move |_| {
                            let _ = this.lock.release_all(who);
                            if let (true, Some(c)) = (notified, &this.condition) {
                                c.notify(1);
                            }
                        });
                        Reply::Bool(notified)
                    }
                    Err(Refused::NotHeld) => fail(Failure::NotHeld("Condition".into())),
                    // The client hung up: it holds nothing.
                    Err(_) => Reply::Bool(false),
                };
            }
            Op::Notify(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Op::NotifyAll => usize::MAX,
        };
        if !self.lock.is_held_by(who) {
            return fail(Failure::NotHeld("Condition".into()));
        }
        c.notify(n);
        Reply::Ok
    }
}
