//! The in-process synchronisation primitives, written once: [`Lock`] (and
//! re-entrant), [`Semaphore`] (optionally bounded), [`Condition`],
//! [`Event`], [`Barrier`] and [`Queue`] (with `maxsize`, `task_done` and
//! `join`). Std only: a `Mutex` and `Condvar`s per object.
//!
//! Two users share them: mp-dummy's thread primitives (the owner of a lock
//! is the calling thread) and mp-manager's server (the owner is a client
//! session and a thread in it). So:
//! - a lock is generic over who owns it (`O`: any `Copy + Eq` id);
//! - every blocking operation takes a [`Wait`]: a deadline (`None`: none)
//!   and, optionally, a cancel check that the wait polls at an interval of
//!   the caller's choosing (the server: "has this client hung up?"), and
//!   that `wake()` makes every waiter poll at once;
//! - an operation refuses with a [`Refused`] saying why (the caller maps it
//!   to its own error or reply), and gives back what it took when it is
//!   cancelled.
//!
//! The waits do not spin: a waiter sleeps on its object's `Condvar`.
//!
//! ```
//! use mp_proc::plumbing::local::{Lock, Refused, Wait};
//!
//! let lock = Lock::new(false);
//! lock.acquire(1u32, &Wait::forever())?;
//! assert_eq!(lock.acquire(1, &Wait::forever()), Err(Refused::WouldDeadlock));
//! assert_eq!(lock.acquire(2, &Wait::now()), Err(Refused::Timeout));
//! let hung_up = || true;
//! let wait = Wait::forever().or_cancel(&hung_up, std::time::Duration::from_millis(10));
//! assert_eq!(lock.acquire(2, &wait), Err(Refused::Cancelled));
//! lock.release(1)?;
//! # Ok::<(), Refused>(())
//! ```

mod barrier;
mod lock;
mod ordered;
mod queue;
mod signal;
#[cfg(test)]
mod tests;

use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

pub use barrier::Barrier;
pub use lock::{Lock, Semaphore};
pub use ordered::OrderedMap;
pub use queue::Queue;
pub use signal::{Condition, Event};

/// Why an operation on a primitive did not do what it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The wait's deadline passed first (for a lock or a semaphore: not
    /// taken; for `join`: not done).
    Timeout,
    /// The wait's cancel check said stop; nothing is held for the caller.
    Cancelled,
    /// The caller does not hold the lock.
    NotHeld,
    /// The caller holds this non-reentrant lock and asked to wait for it
    /// without a deadline: it would wait forever.
    WouldDeadlock,
    /// A bounded semaphore released past its bound.
    TooManyReleases {
        /// Its initial value.
        bound: usize,
    },
    /// A count (a re-entrant depth, a semaphore's value, items pending)
    /// would pass `usize::MAX`.
    Overflow,
    /// The barrier is broken (aborted, reset under its waiters, or a waiter
    /// timed out or was cancelled).
    BrokenBarrier,
    /// A barrier of zero parties.
    NoParties,
    /// The queue had no item before the deadline.
    Empty,
    /// The bounded queue had no room before the deadline.
    Full,
    /// The queue is closed (and, for a `get`, drained).
    Closed,
    /// `task_done` with no item pending.
    TaskDoneTooManyTimes,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Timeout => "timed out",
            Refused::Cancelled => "the wait was cancelled",
            Refused::NotHeld => "the lock is not held by the caller",
            Refused::WouldDeadlock => "the caller already holds the lock: waiting would deadlock",
            Refused::TooManyReleases { .. } => "semaphore released too many times",
            Refused::Overflow => "a count would overflow",
            Refused::BrokenBarrier => "the barrier is broken",
            Refused::NoParties => "a barrier needs at least one party",
            Refused::Empty => "the queue is empty",
            Refused::Full => "the queue is full",
            Refused::Closed => "the queue is closed",
            Refused::TaskDoneTooManyTimes => "task_done() called too many times",
        })
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The crate's error for this refusal by the object `what` (`"Lock"`,
    /// `"Semaphore"`, ...).
    pub fn into_error(self, what: &'static str) -> crate::Error {
        use crate::Error;
        match self {
            Refused::Timeout => Error::Timeout,
            Refused::NotHeld => Error::NotHeld { what },
            Refused::WouldDeadlock => Error::WouldDeadlock,
            Refused::TooManyReleases { bound } => Error::TooManyReleases { bound },
            Refused::BrokenBarrier => Error::BrokenBarrier,
            Refused::Empty => Error::Empty,
            Refused::Full => Error::Full,
            Refused::Closed => Error::Closed,
            Refused::TaskDoneTooManyTimes => Error::TaskDoneTooManyTimes,
            Refused::Overflow => Error::Overflow {
                what,
                reason: "a count would pass usize::MAX".into(),
            },
            Refused::Cancelled | Refused::NoParties => Error::Invalid {
                what,
                reason: self.to_string(),
            },
        }
    }
}

/// How long a blocking operation may wait: until a deadline (or forever),
/// and until a cancel check says stop.
///
/// The cancel check runs after each wake-up that did not make the
/// operation ready, at least every `every` (so it costs nothing to an
/// operation that does not wait), with the object's state locked: it must
/// be quick and must not touch the object.
///
/// ```
/// use std::time::Duration;
/// use mp_proc::plumbing::local::{Event, Refused, Wait};
///
/// let e = Event::new();
/// assert_eq!(e.wait(&Wait::timeout(Duration::from_millis(1))), Err(Refused::Timeout));
/// e.set();
/// assert_eq!(e.wait(&Wait::forever()), Ok(()));
/// ```
#[derive(Clone, Copy)]
pub struct Wait<'a> {
    deadline: Option<Instant>,
    cancel: Option<(&'a dyn Fn() -> bool, Duration)>,
}

impl std::fmt::Debug for Wait<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wait")
            .field("deadline", &self.deadline)
            .field("cancel_every", &self.cancel.map(|(_, every)| every))
            .finish()
    }
}

impl Wait<'static> {
    /// No deadline, no cancel check.
    pub fn forever() -> Wait<'static> {
        Wait::until(None)
    }

    /// Does not wait: the operation succeeds now or times out.
    pub fn now() -> Wait<'static> {
        Wait::until(Some(Instant::now()))
    }

    /// Until `deadline` (`None`: no deadline).
    pub fn until(deadline: Option<Instant>) -> Wait<'static> {
        Wait {
            deadline,
            cancel: None,
        }
    }

    /// For at most `timeout` (one too long to represent is none).
    pub fn timeout(timeout: Duration) -> Wait<'static> {
        Wait::until(crate::spin::deadline_after(timeout))
    }
}

impl<'a> Wait<'a> {
    /// The same wait, that also ends ([`Refused::Cancelled`]) once
    /// `cancelled()` is true, checked at least every `every`.
    pub fn or_cancel<'b>(self, cancelled: &'b dyn Fn() -> bool, every: Duration) -> Wait<'b>
    where
        'a: 'b,
    {
        Wait {
            deadline: self.deadline,
            cancel: Some((cancelled, every)),
        }
    }

    /// Its deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The same cancel check with another deadline.
    pub fn with_deadline(self, deadline: Option<Instant>) -> Wait<'a> {
        Wait { deadline, ..self }
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|(check, _)| check())
    }
}

/// The shortest interval between two cancel checks: a zero interval must
/// not make the wait a busy loop.
const MIN_CHECK: Duration = Duration::from_millis(1);

/// How a wait ended without its operation becoming ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The deadline passed.
    Timeout,
    /// The cancel check said stop.
    Cancelled,
}

impl Ended {
    /// The refusal for an ended wait, `timeout` when it timed out.
    pub fn or(self, timeout: Refused) -> Refused {
        match self {
            Ended::Timeout => timeout,
            Ended::Cancelled => Refused::Cancelled,
        }
    }
}

/// Waits on `cv` until `ready(state)` gives a value, as `wait` allows:
/// the one waiting loop of the primitives, for state of the caller's own
/// (whoever changes it notifies `cv`). `ready` runs under the lock, first
/// before any wait, then after each wake-up.
///
/// ```
/// use std::sync::{Condvar, Mutex};
/// use mp_proc::plumbing::local::{Ended, Wait, wait_on};
///
/// let (state, cv) = (Mutex::new(3u32), Condvar::new());
/// let (g, r) = wait_on(&cv, state.lock().unwrap(), &Wait::now(), |n| (*n > 2).then_some(*n));
/// assert_eq!(r, Ok(3));
/// drop(g); // the state's lock, given back
/// let (_g, r) = wait_on(&cv, state.lock().unwrap(), &Wait::now(), |n| (*n > 5).then_some(()));
/// assert_eq!(r, Err(Ended::Timeout));
/// ```
pub fn wait_on<'g, S, R>(
    cv: &Condvar,
    mut g: MutexGuard<'g, S>,
    wait: &Wait<'_>,
    mut ready: impl FnMut(&mut S) -> Option<R>,
) -> (MutexGuard<'g, S>, Result<R, Ended>) {
    let mut first = true;
    loop {
        if let Some(r) = ready(&mut g) {
            return (g, Ok(r));
        }
        // After `ready`: a caller that is gone gets nothing more.
        if !first && wait.cancelled() {
            return (g, Err(Ended::Cancelled));
        }
        first = false;
        let left = match wait.deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return (g, Err(Ended::Timeout)),
            },
        };
        let slice = match (left, wait.cancel) {
            (None, None) => None,
            (Some(left), None) => Some(left),
            (None, Some((_, every))) => Some(every.max(MIN_CHECK)),
            (Some(left), Some((_, every))) => Some(left.min(every.max(MIN_CHECK))),
        };
        g = match slice {
            None => cv.wait(g).unwrap_or_else(|p| p.into_inner()),
            Some(s) => cv.wait_timeout(g, s).unwrap_or_else(|p| p.into_inner()).0,
        };
    }
}
