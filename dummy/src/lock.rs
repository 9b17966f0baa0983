//! `Lock`, `RLock` and `Condition` on threads: mp-proc's in-process
//! primitives (`mp_proc::plumbing::local`), owned by the calling thread.

use std::marker::PhantomData;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use mp_proc::plumbing::local::{self, Wait};
use mp_proc::{Error, Result};

use crate::registry::handle;
use crate::sync::taken;

/// The owner of a lock taken here: the calling thread.
pub(crate) fn me() -> ThreadId {
    std::thread::current().id()
}

/// Holds a [`Lock`] or an [`RLock`] (one level) until dropped, as Python's
/// `with lock:`.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a local::Lock<ThreadId>,
    /// Released by the thread that holds it.
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    fn new(lock: &'a local::Lock<ThreadId>) -> LockGuard<'a> {
        LockGuard {
            lock,
            _not_send: PhantomData,
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release(me());
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// Takes `lock` for this thread as `wait` allows: `None` if it timed out.
fn take<'a>(
    lock: &'a local::Lock<ThreadId>,
    wait: &Wait<'_>,
    what: &'static str,
) -> Result<Option<LockGuard<'a>>> {
    Ok(taken(lock.acquire(me(), wait), what)?.then(|| LockGuard::new(lock)))
}

macro_rules! lock_type {
    ($name:ident, $reentrant:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name {
            inner: Arc<local::Lock<ThreadId>>,
        }

        handle!($name);

        impl $name {
            /// A new lock, not held.
            pub fn new() -> Result<$name> {
                Ok($name {
                    inner: Arc::new(local::Lock::new($reentrant)),
                })
            }

            /// Waits for the lock; it is released when the guard is dropped.
            pub fn acquire(&self) -> Result<LockGuard<'_>> {
                // A wait without a deadline does not time out.
                take(&self.inner, &Wait::forever(), stringify!($name))?.ok_or(Error::Timeout)
            }

            /// Takes the lock if it is free now (`None` if another thread,
            /// or, for a `Lock`, this one, holds it: Python's
            /// `acquire(False)`).
            pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
                take(&self.inner, &Wait::now(), stringify!($name))
            }

            /// Waits at most `timeout`; `None` if the lock did not come free.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
                take(&self.inner, &Wait::timeout(timeout), stringify!($name))
            }

            /// Whether some thread holds the lock now (Python 3.14's
            /// `locked()`); for an `RLock`, this thread too.
            ///
            /// ```
            #[doc = concat!("let lock = mp_dummy::", stringify!($name), "::new()?;")]
            /// let held = lock.acquire()?;
            /// assert!(lock.locked());
            /// drop(held);
            /// assert!(!lock.locked());
            /// # Ok::<(), mp_proc::Error>(())
            /// ```
            pub fn locked(&self) -> bool {
                self.inner.is_locked()
            }

            /// Releases one level held by this thread (for a guard given up
            /// with `std::mem::forget`); [`Error::NotHeld`] otherwise.
            pub fn release(&self) -> Result<()> {
                self.inner
                    .release(me())
                    .map_err(|e| e.into_error(stringify!($name)))
            }
        }
    };
}

/// The same lock: clones, or handles of it.
macro_rules! lock_eq {
    ($name:ident) => {
        impl PartialEq for $name {
            fn eq(&self, other: &$name) -> bool {
                Arc::ptr_eq(&self.inner, &other.inner)
            }
        }

        impl Eq for $name {}
    };
}

lock_eq!(Lock);
lock_eq!(RLock);

lock_type!(
    Lock,
    false,
    "A lock for threads (`threading.Lock`, with mp-proc's rules: only its holder releases it, and taking it twice from one thread is `Error::WouldDeadlock`, not a hang).\n\n```\nlet lock = mp_dummy::Lock::new()?;\nlet held = lock.acquire()?;\nassert!(lock.acquire().is_err()); // would deadlock\nassert!(lock.try_acquire()?.is_none()); // as Python's acquire(False)\ndrop(held);\n# Ok::<(), mp_proc::Error>(())\n```"
);
lock_type!(
    RLock,
    true,
    "A re-entrant lock for threads (`threading.RLock`).\n\n```\nlet lock = mp_dummy::RLock::new()?;\nlet a = lock.acquire()?;\nlet b = lock.acquire()?;\ndrop((b, a));\n# Ok::<(), mp_proc::Error>(())\n```"
);

/// A [`Lock`] or an [`RLock`]: the lock of a [`Value`](crate::Value) or an
/// [`Array`](crate::Array), as mp-proc's `AnyLock`.
///
/// ```
/// use mp_dummy::{AnyLock, Lock, Value};
///
/// let lock = Lock::new()?;
/// let v = Value::with_lock(5i32, lock.clone())?;
/// assert_eq!(v.get_lock()?, AnyLock::Lock(lock));
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AnyLock {
    /// A [`Lock`].
    Lock(Lock),
    /// An [`RLock`].
    RLock(RLock),
}

impl From<Lock> for AnyLock {
    fn from(l: Lock) -> AnyLock {
        AnyLock::Lock(l)
    }
}

impl From<RLock> for AnyLock {
    fn from(l: RLock) -> AnyLock {
        AnyLock::RLock(l)
    }
}

macro_rules! either {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            AnyLock::Lock($l) => $e,
            AnyLock::RLock($l) => $e,
        }
    };
}

impl AnyLock {
    /// Waits for the lock and takes it.
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        either!(self, l => l.acquire())
    }

    /// Takes the lock if it is free now.
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        either!(self, l => l.try_acquire())
    }

    /// Waits at most `timeout` for the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
        either!(self, l => l.acquire_timeout(timeout))
    }

    /// Releases one level held by this thread.
    pub fn release(&self) -> Result<()> {
        either!(self, l => l.release())
    }

    /// Whether some thread holds it now.
    pub fn locked(&self) -> bool {
        either!(self, l => l.locked())
    }

    /// Whether it is an [`RLock`].
    pub fn is_reentrant(&self) -> bool {
        matches!(self, AnyLock::RLock(_))
    }
}

pub(crate) struct ConditionInner {
    lock: Lock,
    cond: local::Condition<ThreadId>,
}

/// A condition variable for threads over a [`Lock`] (`threading.Condition`).
///
/// ```
/// use std::time::Duration;
/// let c = mp_dummy::Condition::new(None)?;
/// let g = c.acquire()?;
/// let (g, notified) = c.wait_timeout(g, Duration::from_millis(1))?;
/// assert!(!notified);
/// drop(g);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Condition {
    inner: Arc<ConditionInner>,
}

handle!(Condition);

impl Condition {
    /// A condition over `lock`, or over a new lock.
    pub fn new(lock: Option<Lock>) -> Result<Condition> {
        let lock = match lock {
            Some(l) => l,
            None => Lock::new()?,
        };
        let cond = local::Condition::new(lock.inner.clone());
        Ok(Condition {
            inner: Arc::new(ConditionInner { lock, cond }),
        })
    }

    /// Its lock.
    pub fn lock(&self) -> &Lock {
        &self.inner.lock
    }

    /// Takes its lock.
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.inner.lock.acquire()
    }

    /// Releases the lock, waits for a notification, and takes the lock again.
    pub fn wait<'a>(&self, guard: LockGuard<'a>) -> Result<LockGuard<'a>> {
        Ok(self.wait_until(guard, None)?.0)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; false if it ran out.
    pub fn wait_timeout<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> Result<(LockGuard<'a>, bool)> {
        self.wait_until(guard, mp_proc::plumbing::deadline_after(timeout))
    }

    fn wait_until<'a>(
        &self,
        guard: LockGuard<'a>,
        until: Option<Instant>,
    ) -> Result<(LockGuard<'a>, bool)> {
        if !std::ptr::eq(guard.lock, &*self.inner.lock.inner) {
            return Err(Error::Invalid {
                what: "Condition",
                reason: "the guard is of another lock than the condition's".into(),
            });
        }
        // On success the lock is this thread's again, at its depth: the
        // same guard stands for it.
        let notified = self
            .inner
            .cond
            .wait(me(), &Wait::until(until))
            .map_err(|e| e.into_error("Condition"))?;
        Ok((guard, notified))
    }

    /// Waits until `predicate()` holds (checked with the lock held), for at
    /// most `timeout` (`None`: forever); returns its last value.
    pub fn wait_for<'a>(
        &self,
        guard: LockGuard<'a>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(LockGuard<'a>, bool)> {
        mp_proc::plumbing::wait_for_with(guard, predicate, timeout, |g, until| {
            self.wait_until(g, until)
        })
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.inner.cond.notify(n);
        Ok(())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.inner.cond.notify_all();
        Ok(())
    }
}
