//! A shared `Lock` and `RLock`: their requests, their proxies (with the
//! guard every lock proxy returns, and the acquire methods written once
//! for them and the `Condition`) and their server side.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::link::thread_id;
use crate::protocol::{Failure, Reply, Request, SessionId, Thread, Wait};
use crate::proxy::{Handle, Reference, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, Owner, Waitable, Waited, fail};

/// A `Lock`'s or an `RLock`'s operations, for the calling thread.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Acquire(Wait),
    Release,
    Locked,
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

/// A lock proxy (`Lock`, `RLock`, `Condition`): how its acquire and
/// release travel.
pub(crate) trait Acquirer: Handle {
    fn acquire_request(id: u64, thread: Thread, wait: Wait) -> Request;
    fn release_request(id: u64, thread: Thread) -> Request;
}

/// `acquire` for at most `wait`: the guard, or `None` if the lock was not
/// free in time.
pub(crate) fn acquire_wait<A: Acquirer>(a: &A, wait: Wait) -> Result<Option<ProxyGuard<'_>>> {
    let r = a.reference();
    let thread = thread_id();
    let got = flag(r.call(&A::acquire_request(r.id, thread, wait))?)?;
    Ok(got.then(|| ProxyGuard {
        r,
        release: A::release_request(r.id, thread),
        _not_send: PhantomData,
    }))
}

/// `acquire()`, waiting as long as it takes.
pub(crate) fn acquire<A: Acquirer>(a: &A) -> Result<ProxyGuard<'_>> {
    acquire_wait(a, None)?
        .ok_or_else(|| crate::link::remote("acquire without a timeout gave up".into()))
}

/// `release()` by the calling thread.
pub(crate) fn release<A: Acquirer>(a: &A) -> Result<()> {
    let r = a.reference();
    ok(r.call(&A::release_request(r.id, thread_id()))?)
}

impl Acquirer for LockProxy {
    fn acquire_request(id: u64, thread: Thread, wait: Wait) -> Request {
        Request::Lock(id, thread, Op::Acquire(wait))
    }

    fn release_request(id: u64, thread: Thread) -> Request {
        Request::Lock(id, thread, Op::Release)
    }
}

impl Acquirer for RLockProxy {
    fn acquire_request(id: u64, thread: Thread, wait: Wait) -> Request {
        LockProxy::acquire_request(id, thread, wait)
    }

    fn release_request(id: u64, thread: Thread) -> Request {
        LockProxy::release_request(id, thread)
    }
}

/// A `threading.Lock` in the manager (Python's `Manager().Lock()`).
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
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(LockProxy);

impl LockProxy {
    /// `acquire()`: waits for the lock; it is released when the guard
    /// is dropped. If this process dies holding it, it is released. A
    /// thread that holds it already gets
    /// [`Error::WouldDeadlock`](crate::Error::WouldDeadlock).
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        acquire(self)
    }

    /// `acquire(blocking=False)`: `None` if the lock is held, also by this
    /// thread (as CPython's `acquire(False)` returns `False`).
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        acquire_wait(self, Some(Duration::ZERO))
    }

    /// `acquire(timeout=...)`: `None` if the lock was not free in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<ProxyGuard<'_>>> {
        acquire_wait(self, Some(timeout))
    }

    /// `release()`: any thread may release a `Lock` (as `threading.Lock`).
    pub fn release(&self) -> Result<()> {
        release(self)
    }

    /// `locked()`.
    pub fn locked(&self) -> Result<bool> {
        let r = &self.inner;
        flag(r.call(&Request::Lock(r.id, thread_id(), Op::Locked))?)
    }
}

/// A `threading.RLock` in the manager (Python's `Manager().RLock()`): the
/// owning thread may take it again.
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
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(RLockProxy);

impl RLockProxy {
    /// `acquire()`: waits for the lock (at once if this thread holds it:
    /// one level more); it is released when the guard is dropped. If this
    /// process dies holding it, it is released.
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        acquire(self)
    }

    /// `acquire(blocking=False)`.
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        acquire_wait(self, Some(Duration::ZERO))
    }

    /// `acquire(timeout=...)`: `None` if the lock was not free in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<ProxyGuard<'_>>> {
        acquire_wait(self, Some(timeout))
    }

    /// `release()`: one level, by the owning thread.
    pub fn release(&self) -> Result<()> {
        release(self)
    }
}

/// A lock's state in the server (a `Lock`'s, an `RLock`'s, a
/// `Condition`'s).
pub(crate) struct LockState {
    reentrant: bool,
    pub(crate) owner: Option<Owner>,
    pub(crate) depth: u64,
}

impl LockState {
    pub(crate) fn new(reentrant: bool) -> LockState {
        LockState {
            reentrant,
            owner: None,
            depth: 0,
        }
    }

    fn name(&self) -> &'static str {
        if self.reentrant { "RLock" } else { "Lock" }
    }

    /// Takes the lock for `who` if it is free (or held by `who`, reentrant).
    pub(crate) fn try_take(&mut self, who: Owner) -> bool {
        match self.owner {
            None => {
                self.owner = Some(who);
                self.depth = 1;
                true
            }
            Some(o) if o == who && self.reentrant => {
                self.depth += 1;
                true
            }
            _ => false,
        }
    }

    /// One release by `who`: a `Lock` may be released by any thread (as
    /// `threading.Lock`), an `RLock` only by its owner.
    pub(crate) fn release(&mut self, who: Owner, what: &str) -> Reply {
        match self.owner {
            Some(o) if o == who || !self.reentrant => {
                self.depth -= 1;
                if self.depth == 0 || !self.reentrant {
                    self.owner = None;
                    self.depth = 0;
                }
                Reply::Ok
            }
            _ => fail(Failure::NotHeld(what.into())),
        }
    }

    /// Releases every level `who` holds.
    pub(crate) fn release_all(&mut self, who: Owner) {
        if self.owner == Some(who) {
            self.owner = None;
            self.depth = 0;
        }
    }

    /// Releases every level held by a thread of `session`; true if it did.
    pub(crate) fn release_session(&mut self, session: SessionId) -> bool {
        match self.owner {
            Some((s, t)) if s == session => {
                self.release_all((s, t));
                true
            }
            _ => false,
        }
    }
}

/// A `Lock` or an `RLock` in the server.
pub(crate) struct Lock(Waitable<LockState>);

impl Lock {
    pub(crate) fn new(reentrant: bool) -> Lock {
        Lock(Waitable::new(LockState::new(reentrant)))
    }
}

impl Object for Lock {
    fn release_session(&self, session: SessionId) {
        if self.0.lock().release_session(session) {
            self.0.changed();
        }
    }
}

impl Handler for Lock {
    type Op = (Thread, Op);

    fn serve(self: Arc<Self>, (thread, op): (Thread, Op), call: &mut Call<'_>) -> Reply {
        let who = call.owner(thread);
        let l = &self.0;
        let mut guard = l.lock();
        let reply = match op {
            Op::Acquire(wait) => {
                // Waiting for itself, a thread would wait forever; a call
                // that does not wait is only refused (below).
                if !guard.reentrant && guard.owner == Some(who) && wait.is_none() {
                    return fail(Failure::WouldDeadlock);
                }
                let (_g, w) =
                    l.wait_until(guard, call.client, wait, |l| l.try_take(who).then_some(()));
                return match w {
                    Waited::Ready(()) => {
                        let this = self.clone();
                        call.on_lost(move |_| this.0.change(|l| l.release_all(who)));
                        Reply::Bool(true)
                    }
                    _ => Reply::Bool(false),
                };
            }
            Op::Release => {
                let name = guard.name();
                guard.release(who, name)
            }
            Op::Locked => return Reply::Bool(guard.owner.is_some()),
        };
        drop(guard);
        l.changed();
        reply
    }
}
