//! `Lock` and `RLock`: process-shared, robust mutexes.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::shared::{RawLock, Shared};
use crate::error::Result;
use crate::spin::deadline_after;

/// A lock shared by processes, Python's `multiprocessing.Lock`.
///
/// [`acquire`](Lock::acquire) returns a guard that releases the lock when
/// dropped. Clones share the lock, and a clone in a child's `args` is the same
/// lock in the child, under every start method.
///
/// Beyond CPython: when a process dies holding the lock, the next
/// [`acquire`](Lock::acquire) returns [`Error::OwnerDied`](crate::Error::OwnerDied)
/// (and the lock is free again) instead of waiting forever; acquiring it
/// twice in one thread is [`Error::WouldDeadlock`](crate::Error::WouldDeadlock);
/// releasing it without holding it is [`Error::NotHeld`](crate::Error::NotHeld).
///
/// ```
/// use mp_proc::{Lock, Process};
///
/// fn worker(lock: Lock) {
///     let _held = lock.acquire().unwrap();
///     // ... only one process at a time here ...
/// }
///
/// let lock = Lock::new()?;
/// let mut p = Process::new(worker, lock.clone());
/// p.start()?;
/// {
///     let _held = lock.acquire()?;
/// }
/// assert_eq!(p.join()?, 0);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    raw: RawLock,
}

/// A lock that the thread holding it may acquire again, Python's
/// `multiprocessing.RLock`. Each [`acquire`](RLock::acquire) returns a guard;
/// the lock is free once every guard is dropped.
///
/// ```
/// let lock = mp_proc::RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?; // the same thread: fine
/// drop(inner);
/// drop(outer);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    raw: RawLock,
}

/// Holds a [`Lock`] or [`RLock`] until dropped. Not `Send`: a lock is released
/// by the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    raw: &'a RawLock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.raw.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.raw.what)
            .finish()
    }
}

impl<'a> LockGuard<'a> {
    pub(crate) fn raw(&self) -> &'a RawLock {
        self.raw
    }
}

macro_rules! lock_methods {
    ($ty:ident, $what:literal, $recursive:literal) => {
        impl $ty {
            /// A new, unlocked lock.
            pub fn new() -> Result<$ty> {
                let shared = Shared::new(crate::sys::sync::OBJECT)?;
                Ok($ty {
                    raw: RawLock::init(shared, 0, $recursive, $what)?,
                })
            }

            /// Waits for the lock and takes it.
            pub fn acquire(&self) -> Result<LockGuard<'_>> {
                self.raw.lock(None)?;
                Ok(self.guard())
            }

            /// Takes the lock if it is free (Python's `acquire(block=False)`):
            /// `None` if it is held, by this thread too (a call that does not
            /// wait cannot deadlock).
            pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
                match self.raw.try_lock() {
                    Ok(taken) => Ok(taken.then(|| self.guard())),
                    Err(crate::Error::WouldDeadlock) => Ok(None),
                    Err(e) => Err(e),
                }
            }

            /// Waits at most `timeout` for the lock; `None` if it stayed taken.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
                let taken = self.raw.lock(deadline_after(timeout))?;
                Ok(taken.then(|| self.guard()))
            }

            /// Releases the lock held by this thread, whose guard was
            /// forgotten (Python's `release()`). Not holding it is
            /// [`Error::NotHeld`](crate::Error::NotHeld).
            pub fn release(&self) -> Result<()> {
                self.raw.unlock()
            }

            fn guard(&self) -> LockGuard<'_> {
                LockGuard {
                    raw: &self.raw,
                    _not_send: PhantomData,
                }
            }

            /// Whether some thread, in any process, holds the lock now
            /// (Python 3.14's `locked()`); for an `RLock`, this thread
            /// too. A snapshot: another process may take or release it
            /// right after. It does not take the lock, so the death of a
            /// holder is still reported by the next
            /// [`acquire`](Self::acquire).
            ///
            /// ```
            #[doc = concat!("let lock = mp_proc::", $what, "::new()?;")]
            /// assert!(!lock.locked());
            /// let held = lock.acquire()?;
            /// assert!(lock.locked());
            /// drop(held);
            /// assert!(!lock.locked());
            /// # Ok::<(), mp_proc::Error>(())
            /// ```
            pub fn locked(&self) -> bool {
                crate::sys::sync::mutex_held(&self.raw.shared.0, self.raw.offset)
            }

            #[allow(dead_code)]
            pub(crate) fn raw(&self) -> &RawLock {
                &self.raw
            }

            /// The lock at `offset` of `shared`, initialized already.
            pub(crate) fn from_region(shared: Shared, offset: usize) -> $ty {
                $ty {
                    raw: RawLock {
                        shared,
                        offset,
                        what: $what,
                    },
                }
            }
        }

        /// The same lock: clones, or handles of it that travelled.
        impl PartialEq for $ty {
            fn eq(&self, other: &$ty) -> bool {
                self.raw.offset == other.raw.offset
                    && self.raw.shared.same_memory(&other.raw.shared)
            }
        }

        impl Eq for $ty {}

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct($what).finish_non_exhaustive()
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.raw.shared.serialize($what, 0, s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let shared = Shared::deserialize($what, 0, d)?;
                Ok($ty {
                    raw: RawLock {
                        shared,
                        offset: 0,
                        what: $what,
                    },
                })
            }
        }
    };
}

lock_methods!(Lock, "Lock", false);
lock_methods!(RLock, "RLock", true);

/// A [`Lock`] or an [`RLock`]: the lock of a [`Value`](crate::Value) or an
/// [`Array`](crate::Array), which CPython's `lock=` argument takes and
/// `get_lock()` returns. Its methods are those of both.
///
/// ```
/// use mp_proc::{AnyLock, Lock, Value};
///
/// let lock = Lock::new()?;
/// let v = Value::with_lock(5i32, lock.clone())?;
/// assert_eq!(v.get_lock()?, AnyLock::Lock(lock));
/// let held = v.get_lock()?.try_acquire()?.is_some();
/// assert!(held);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Waits for the lock and takes it ([`Lock::acquire`]).
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        either!(self, l => l.acquire())
    }

    /// Takes the lock if it is free ([`Lock::try_acquire`]).
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        either!(self, l => l.try_acquire())
    }

    /// Waits at most `timeout` for the lock ([`Lock::acquire_timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
        either!(self, l => l.acquire_timeout(timeout))
    }

    /// Releases the lock held by this thread ([`Lock::release`]).
    pub fn release(&self) -> Result<()> {
        either!(self, l => l.release())
    }

    /// Whether some thread holds it now ([`Lock::locked`]).
    pub fn locked(&self) -> bool {
        either!(self, l => l.locked())
    }

    /// Whether it is an [`RLock`].
    pub fn is_reentrant(&self) -> bool {
        matches!(self, AnyLock::RLock(_))
    }

    pub(crate) fn raw(&self) -> &RawLock {
        either!(self, l => &l.raw)
    }
}
