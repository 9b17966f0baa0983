//! A shared `Lock` and `RLock`: their requests, their proxies (with the
//! acquire and release every lock proxy has, and the guard it returns)
//! and their server side, which a `Condition`'s lock is too (an `RLock`
//! with waiters, see [`condition`](super::condition)).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::plumbing::local::{self, Refused};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::link::thread_id;
use crate::protocol::{Failure, Reply, Request, SessionId, Thread, Wait};
use crate::proxy::{Reference, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, Owner, fail};

/// A `Lock`'s or an `RLock`'s operations, for the calling thread.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Acquire(Wait),
    Release,
    Locked,
    /// A release by the holder only, even of a `Lock` (`mp_proc::Lock`'s
    /// rule, for the proxies' `LockLike::release`).
    ReleaseOwn,
}

/// A lock held through a proxy: released when dropped (Python's `with lock:`).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ProxyGuard<'a> {
    r: &'a Reference,
    release: Request,
    /// Released on the thread that holds it.
    _not_send: PhantomData<*const ()>,
}

impl ProxyGuard<'_> {
    /// Releases now, reporting an error (dropping the guard ignores it).
    pub fn release(self) -> Result<()> {
        let r = self.r.call(&self.release);
        std::mem::forget(self);
        r.and_then(ok)
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = self.r.call(&self.release);
    }
}

impl std::fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyGuard({:?})", self.r)
    }
}

/// The acquire and release of the lock proxies (CPython's
/// `AcquirerProxy`): a [`LockProxy`], an [`RLockProxy`] and a
/// [`ConditionProxy`](crate::ConditionProxy) have these methods.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let lock = m.rlock()?;
/// let acquirer: &mp_manager::AcquirerProxy = &lock;
/// let held = acquirer.acquire()?;
/// assert!(acquirer.acquire_timeout(std::time::Duration::ZERO)?.is_some()); // reentrant
/// held.release()?;
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct AcquirerProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(AcquirerProxy);

impl AcquirerProxy {
    fn acquire_wait(&self, wait: Wait) -> Result<Option<ProxyGuard<'_>>> {
        let r = &self.inner;
        let thread = thread_id();
        let got = flag(r.call(&Request::Lock(r.id, thread, Op::Acquire(wait)))?)?;
        Ok(got.then(|| ProxyGuard {
            r,
            release: Request::Lock(r.id, thread, Op::Release),
            _not_send: PhantomData,
        }))
    }

    /// `acquire()`: waits for the lock; it is released when the guard is
    /// dropped. If this process dies holding it, it is released. A thread
    /// takes an `RLock` (a `Condition`) it holds again at once, one level
    /// more; a `Lock` it holds would never come free:
    /// [`Error::WouldDeadlock`](crate::Error::WouldDeadlock).
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        self.acquire_wait(None)?
            .ok_or_else(|| crate::link::remote("acquire without a timeout gave up".into()))
    }

    /// `acquire(blocking=False)`: `None` if another thread holds the lock,
    /// or this thread holds a `Lock` (as CPython's `acquire(False)` returns
    /// `False`).
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        self.acquire_wait(Some(Duration::ZERO))
    }

    /// `acquire(timeout=...)`: `None` if the lock was not free in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<ProxyGuard<'_>>> {
        self.acquire_wait(Some(timeout))
    }

    /// `release()`: one level. Any thread may release a `Lock` (as
    /// `threading.Lock`); an `RLock` or a `Condition` only its owner.
    pub fn release(&self) -> Result<()> {
        let r = &self.inner;
        ok(r.call(&Request::Lock(r.id, thread_id(), Op::Release))?)
    }

    /// As [`release`](Self::release), for the thread that holds the lock
    /// only, even a `Lock`: [`Error::NotHeld`](crate::Error::NotHeld)
    /// otherwise, as [`mp_proc::Lock::release`] (the proxies'
    /// [`LockLike::release`](mp_proc::LockLike::release)).
    pub(crate) fn release_own(&self) -> Result<()> {
        let r = &self.inner;
        ok(r.call(&Request::Lock(r.id, thread_id(), Op::ReleaseOwn))?)
    }
}

/// A `threading.Lock` in the manager (Python's `Manager().Lock()`), with
/// an [`AcquirerProxy`]'s methods.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let lock = m.lock()?;
/// {
///     let _held = lock.acquire()?;
///     assert!(lock.locked()?);
///     assert!(lock.try_acquire()?.is_none());
/// }
/// assert!(!lock.locked()?);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct LockProxy {
    inner: AcquirerProxy,
    _t: PhantomData<()>,
}

proxy_handle!(LockProxy);

impl Deref for LockProxy {
    type Target = AcquirerProxy;

    fn deref(&self) -> &AcquirerProxy {
        &self.inner
    }
}

impl LockProxy {
    /// `locked()`.
    pub fn locked(&self) -> Result<bool> {
        let r = &self.inner.inner;
        flag(r.call(&Request::Lock(r.id, thread_id(), Op::Locked))?)
    }
}

/// A `threading.RLock` in the manager (Python's `Manager().RLock()`): the
/// owning thread may take it again. An [`AcquirerProxy`]'s methods.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let lock = m.rlock()?;
/// let a = lock.acquire()?;
/// let b = lock.acquire()?; // the same thread again
/// drop(b);
/// drop(a);
/// assert!(lock.release().is_err()); // not held any more
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct RLockProxy {
    inner: AcquirerProxy,
    _t: PhantomData<()>,
}

proxy_handle!(RLockProxy);

impl Deref for RLockProxy {
    type Target = AcquirerProxy;

    fn deref(&self) -> &AcquirerProxy {
        &self.inner
    }
}

/// A lock in the server: a `Lock`, an `RLock`, or a `Condition`'s (an
/// `RLock` with a condition over it): mp-proc's in-process lock, owned by
/// a client session and a thread in it.
pub(crate) struct Lock {
    pub(crate) lock: Arc<local::Lock<Owner>>,
    /// A `Condition`'s waiters; `None` for a plain lock.
    pub(crate) condition: Option<local::Condition<Owner>>,
}

impl Lock {
    pub(crate) fn new(reentrant: bool) -> Lock {
        Lock {
            lock: Arc::new(local::Lock::new(reentrant)),
            condition: None,
        }
    }

    /// What the lock is, in errors.
    pub(crate) fn name(&self) -> &'static str {
        match (&self.condition, self.lock.is_reentrant()) {
            (Some(_), _) => "Condition",
            (None, true) => "RLock",
            (None, false) => "Lock",
        }
    }

    /// If the reply is lost, `who` releases the lock it took.
    pub(crate) fn release_if_lost(self: &Arc<Self>, who: Owner, call: &mut Call<'_>) {
        let this = self.clone();
        call.on_lost(move |_| {
            let _ = this.lock.release_all(who);
        });
    }
}

impl Object for Lock {
    /// Releases the lock if a thread of `session` holds it.
    fn release_session(&self, session: SessionId) {
        self.lock.release_if(|(s, _)| *s == session);
    }
}

impl Handler<(Thread, Op)> for Lock {
    fn serve(self: Arc<Self>, (thread, op): (Thread, Op), call: &mut Call<'_>) -> Reply {
        let who = call.owner(thread);
        let l = &self.lock;
        let done = match op {
            // Waiting for itself, a thread would wait forever: refused; a
            // call with a deadline (one that does not wait too) waits for
            // another thread's release, or times out.
            Op::Acquire(wait) => match call.waiting(wait, |w| l.acquire(who, w)) {
                Ok(()) => {
                    self.release_if_lost(who, call);
                    return Reply::Bool(true);
                }
                Err(Refused::Timeout | Refused::Cancelled) => return Reply::Bool(false),
                Err(r) => Err(r),
            },
            // Any thread may release a `Lock` (as `threading.Lock`); an
            // `RLock` only its owner.
            Op::Release if l.is_reentrant() => l.release(who),
            Op::Release => l.release_any(),
            Op::ReleaseOwn => l.release(who),
            Op::Locked => return Reply::Bool(l.is_locked()),
        };
        match done {
            Ok(()) => Reply::Ok,
            Err(Refused::NotHeld) => fail(Failure::NotHeld(self.name().into())),
            Err(Refused::WouldDeadlock) => fail(Failure::WouldDeadlock),
            Err(r) => fail(Failure::Remote(format!("{}: {r}", self.name()))),
        }
    }
}
