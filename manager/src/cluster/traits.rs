//! `mp_proc`'s `*Like` traits on the manager's proxies, so that code written
//! against [`mp_proc::Context`] runs on them, and the three handles a
//! [`ClusterContext`](crate::ClusterContext) adds where a proxy alone is not
//! enough: a condition that names its lock, a value with a lock, a barrier
//! that knows its parties. Each core method calls the proxy's inherent
//! method of the same wait.

use std::time::Duration;

use mp_proc::{
    BarrierLike, ConditionLike, EventLike, JoinableQueueLike, LockLike, Payload, QueueLike,
    SemaphoreLike, ValueLike,
};
use serde::{Deserialize, Serialize};

use crate::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, EventProxy, JoinableQueueProxy, LockProxy,
    ProxyGuard, QueueProxy, RLockProxy, Result, SemaphoreProxy, ValueProxy,
};

impl<T: Payload> QueueLike<T> for QueueProxy<T> {
    fn put_within(&self, item: T, timeout: Option<Duration>) -> Result<()> {
        match timeout {
            None => QueueProxy::put(self, item),
            Some(t) => QueueProxy::put_timeout(self, item, t),
        }
    }
    fn get_within(&self, timeout: Option<Duration>) -> Result<T> {
        match timeout {
            None => QueueProxy::get(self),
            Some(t) => QueueProxy::get_timeout(self, t),
        }
    }
    fn qsize(&self) -> Result<usize> {
        QueueProxy::qsize(self)
    }
    fn full(&self) -> Result<bool> {
        QueueProxy::full(self)
    }
    fn close(&self) -> Result<()> {
        QueueProxy::close(self)
    }
}

impl<T: Payload> QueueLike<T> for JoinableQueueProxy<T> {
    fn put_within(&self, item: T, timeout: Option<Duration>) -> Result<()> {
        QueueLike::put_within(&**self, item, timeout)
    }
    fn get_within(&self, timeout: Option<Duration>) -> Result<T> {
        QueueLike::get_within(&**self, timeout)
    }
    fn qsize(&self) -> Result<usize> {
        QueueProxy::qsize(self)
    }
    fn full(&self) -> Result<bool> {
        QueueProxy::full(self)
    }
    fn close(&self) -> Result<()> {
        QueueProxy::close(self)
    }
}

impl<T: Payload> JoinableQueueLike<T> for JoinableQueueProxy<T> {
    fn task_done(&self) -> Result<()> {
        JoinableQueueProxy::task_done(self)
    }
    fn join(&self) -> Result<()> {
        JoinableQueueProxy::join(self)
    }
}

/// `LockLike` for a proxy of a lock or a re-entrant lock (both acquirers).
macro_rules! lock_like {
    ($($proxy:ty),*) => {$(
        impl LockLike for $proxy {
            type Guard<'a> = ProxyGuard<'a>;
            fn acquire_within(&self, timeout: Option<Duration>) -> Result<Option<ProxyGuard<'_>>> {
                match timeout {
                    None => crate::AcquirerProxy::acquire(self).map(Some),
                    Some(t) => crate::AcquirerProxy::acquire_timeout(self, t),
                }
            }
            /// Only the thread that holds it may release it, as
            /// [`mp_proc::Lock::release`] (the inherent
            /// [`release`](crate::AcquirerProxy::release) lets any thread
            /// release a `Lock`, as `threading.Lock`).
            fn release(&self) -> Result<()> {
                self.release_own()
            }
        }
    )*};
}

lock_like!(LockProxy, RLockProxy);

impl SemaphoreLike for SemaphoreProxy {
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool> {
        match timeout {
            None => SemaphoreProxy::acquire(self).map(|()| true),
            Some(t) => SemaphoreProxy::acquire_timeout(self, t),
        }
    }
    fn release(&self) -> Result<()> {
        SemaphoreProxy::release(self)
    }
    fn value(&self) -> Result<usize> {
        SemaphoreProxy::value(self)
    }
}

impl SemaphoreLike for BoundedSemaphoreProxy {
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool> {
        SemaphoreLike::acquire_within(&**self, timeout)
    }
    fn release(&self) -> Result<()> {
        SemaphoreProxy::release(self)
    }
    fn value(&self) -> Result<usize> {
        SemaphoreProxy::value(self)
    }
}

impl EventLike for EventProxy {
    fn set(&self) -> Result<()> {
        EventProxy::set(self)
    }
    fn clear(&self) -> Result<()> {
        EventProxy::clear(self)
    }
    fn is_set(&self) -> Result<bool> {
        EventProxy::is_set(self)
    }
    fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        EventProxy::wait(self, timeout)
    }
}

/// A [`ConditionProxy`] with the [`LockProxy`] it is over (made by
/// [`SyncManager::condition_over`](crate::SyncManager::condition_over)):
/// the condition of a [`ClusterContext`](crate::ClusterContext), whose
/// [`lock`](ConditionLike::lock) is the context's lock type, as
/// [`mp_proc::Context`] wants.
///
/// ```
/// use std::time::Duration;
/// use mp_proc::{ConditionLike, Context};
///
/// let ctx = mp_manager::ClusterContext::builder().build()?;
/// let cond = ctx.condition(None)?;
/// let other = ctx.condition(Some(cond.lock().clone()))?; // one lock, two conditions
/// let held = cond.acquire()?;
/// other.notify_all()?;
/// let (held, notified) = cond.wait_timeout(held, Duration::from_millis(1))?;
/// assert!(!notified);
/// drop(held);
/// # Ok::<(), mp_manager::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterCondition {
    condition: ConditionProxy,
    lock: LockProxy,
}

impl ClusterCondition {
    pub(crate) fn new(condition: ConditionProxy, lock: LockProxy) -> ClusterCondition {
        ClusterCondition { condition, lock }
    }

    /// The condition's proxy.
    ///
    /// ```
    /// use mp_proc::Context;
    /// let ctx = mp_manager::ClusterContext::builder().build()?;
    /// let cond = ctx.condition(None)?;
    /// let held = cond.proxy().acquire()?; // the proxy's own API
    /// cond.proxy().notify_all()?;
    /// drop(held);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn proxy(&self) -> &ConditionProxy {
        &self.condition
    }
}

impl ConditionLike for ClusterCondition {
    type Lock = LockProxy;
    fn lock(&self) -> &LockProxy {
        &self.lock
    }
    fn wait_within<'a>(
        &self,
        guard: ProxyGuard<'a>,
        timeout: Option<Duration>,
    ) -> Result<(ProxyGuard<'a>, bool)>
    where
        LockProxy: 'a,
    {
        match timeout {
            None => Ok((self.condition.wait(guard)?, true)),
            Some(t) => self.condition.wait_timeout(guard, t),
        }
    }
    fn notify(&self, n: usize) -> Result<()> {
        self.condition.notify(n)
    }
    fn notify_all(&self) -> Result<()> {
        self.condition.notify_all()
    }
}

/// A [`ValueProxy`] with a [`LockProxy`] of the same manager (Python's
/// `Value` with its `get_lock()`): [`update`](ValueLike::update) and
/// [`set`](ValueLike::set) hold the lock, so an update's read-modify-write
/// is not interleaved with another's. The value of a
/// [`ClusterContext`](crate::ClusterContext).
///
/// ```
/// use mp_proc::{Context, ValueLike};
///
/// let ctx = mp_manager::ClusterContext::builder().build()?;
/// let v = ctx.value(20u32)?;
/// assert_eq!(v.update(|x| *x += 1)?, 21);
/// let held = v.get_lock().acquire()?; // as `with v.get_lock():`
/// assert_eq!(v.proxy().get()?, 21);
/// drop(held);
/// # Ok::<(), mp_manager::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ClusterValue<T> {
    value: ValueProxy<T>,
    lock: LockProxy,
}

impl<T> Clone for ClusterValue<T> {
    fn clone(&self) -> Self {
        ClusterValue {
            value: self.value.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T> ClusterValue<T> {
    pub(crate) fn new(value: ValueProxy<T>, lock: LockProxy) -> ClusterValue<T> {
        ClusterValue { value, lock }
    }

    /// The lock that [`update`](ValueLike::update) and
    /// [`set`](ValueLike::set) hold (Python's `get_lock()`).
    pub fn get_lock(&self) -> &LockProxy {
        &self.lock
    }

    /// The value's proxy (its calls do not take the lock).
    ///
    /// ```
    /// use mp_proc::{Context, ValueLike};
    /// let ctx = mp_manager::ClusterContext::builder().build()?;
    /// let v = ctx.value(1u8)?;
    /// v.proxy().set(2)?;
    /// assert_eq!(v.get()?, 2);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn proxy(&self) -> &ValueProxy<T> {
        &self.value
    }
}

/// For `T: Copy`, as a context's values are ([`mp_proc::Shareable`]).
impl<T: Payload + Copy> ValueLike<T> for ClusterValue<T> {
    fn get(&self) -> Result<T> {
        self.value.get()
    }
    fn set(&self, value: T) -> Result<()> {
        let held = crate::AcquirerProxy::acquire(&self.lock)?;
        self.value.set(value)?;
        held.release()
    }
    fn update(&self, f: impl FnOnce(&mut T)) -> Result<T> {
        let held = crate::AcquirerProxy::acquire(&self.lock)?;
        let mut v = self.value.get()?;
        f(&mut v);
        self.value.set(v)?;
        held.release()?;
        Ok(v)
    }
}

/// A [`BarrierProxy`] that knows its number of parties (fixed when it was
/// made), so [`BarrierLike::parties`] needs no round trip: the barrier of
/// a [`ClusterContext`](crate::ClusterContext).
///
/// ```
/// use mp_proc::{BarrierLike, Context};
///
/// let ctx = mp_manager::ClusterContext::builder().build()?;
/// let b = ctx.barrier(1, None)?;
/// assert_eq!(b.parties(), 1);
/// assert_eq!(b.wait()?, 0);
/// # Ok::<(), mp_manager::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterBarrier {
    barrier: BarrierProxy,
    parties: usize,
}

impl ClusterBarrier {
    pub(crate) fn new(barrier: BarrierProxy, parties: usize) -> ClusterBarrier {
        ClusterBarrier { barrier, parties }
    }

    /// The barrier's proxy.
    ///
    /// ```
    /// use mp_proc::Context;
    /// let ctx = mp_manager::ClusterContext::builder().build()?;
    /// let b = ctx.barrier(2, None)?;
    /// assert_eq!(b.proxy().n_waiting()?, 0);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn proxy(&self) -> &BarrierProxy {
        &self.barrier
    }
}

impl BarrierLike for ClusterBarrier {
    fn wait_within(&self, timeout: Option<Duration>) -> Result<usize> {
        match timeout {
            None => self.barrier.wait(),
            Some(t) => self.barrier.wait_timeout(t),
        }
    }
    fn abort(&self) -> Result<()> {
        self.barrier.abort()
    }
    fn reset(&self) -> Result<()> {
        self.barrier.reset()
    }
    fn broken(&self) -> Result<bool> {
        self.barrier.broken()
    }
    fn n_waiting(&self) -> Result<usize> {
        self.barrier.n_waiting()
    }
    fn parties(&self) -> usize {
        self.parties
    }
}
