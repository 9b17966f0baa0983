//! [`Lock`] (plain or re-entrant, owned by an `O`) and [`Semaphore`].

use std::sync::{Condvar, Mutex};

use super::{Refused, Wait, wait_on};
use crate::plumbing::lock;

struct Held<O> {
    owner: Option<O>,
    /// Levels held by `owner` (1 for a plain lock).
    depth: usize,
}

/// A lock owned by an `O` (a thread id, a client session and its thread),
/// plain (`threading.Lock`) or re-entrant (`threading.RLock`).
///
/// ```
/// use mp_proc::plumbing::local::{Lock, Refused, Wait};
///
/// let r = Lock::new(true);
/// r.acquire('a', &Wait::forever())?;
/// r.acquire('a', &Wait::forever())?;
/// assert_eq!(r.acquire('b', &Wait::now()), Err(Refused::Timeout));
/// assert_eq!(r.release_all('a'), Ok(2));
/// assert_eq!(r.release('a'), Err(Refused::NotHeld));
/// # Ok::<(), Refused>(())
/// ```
pub struct Lock<O> {
    held: Mutex<Held<O>>,
    free: Condvar,
    reentrant: bool,
}

impl<O: Copy + Eq> Lock<O> {
    /// A free lock; `reentrant`: its owner may take it again.
    pub fn new(reentrant: bool) -> Lock<O> {
        Lock {
            held: Mutex::new(Held {
                owner: None,
                depth: 0,
            }),
            free: Condvar::new(),
            reentrant,
        }
    }

    /// Whether its owner may take it again.
    pub fn is_reentrant(&self) -> bool {
        self.reentrant
    }

    /// Takes the lock (one more level for its re-entrant owner). A plain
    /// lock `who` holds, asked for without a deadline, is
    /// [`Refused::WouldDeadlock`]; with one, `who` waits for another
    /// owner's [`release_any`](Self::release_any) or times out.
    pub fn acquire(&self, who: O, wait: &Wait<'_>) -> Result<(), Refused> {
        self.acquire_levels(who, 1, wait)
    }

    /// Takes the free lock for `who` at `depth` levels (what
    /// [`release_all`](Self::release_all) gave back, after a condition's
    /// wait). `depth` 0 is 1.
    pub fn reacquire(&self, who: O, depth: usize, wait: &Wait<'_>) -> Result<(), Refused> {
        self.acquire_levels(who, depth.max(1), wait)
    }

    fn acquire_levels(&self, who: O, depth: usize, wait: &Wait<'_>) -> Result<(), Refused> {
        let mut held = lock(&self.held);
        if held.owner == Some(who) {
            if self.reentrant {
                held.depth = held.depth.checked_add(depth).ok_or(Refused::Overflow)?;
                return Ok(());
            }
            if wait.deadline().is_none() {
                return Err(Refused::WouldDeadlock);
            }
        }
        let (_held, r) = wait_on(&self.free, held, wait, |h| {
            h.owner.is_none().then(|| {
                h.owner = Some(who);
                h.depth = depth;
            })
        });
        r.map_err(|e| e.or(Refused::Timeout))
    }

    /// Releases one level `who` holds.
    pub fn release(&self, who: O) -> Result<(), Refused> {
        let mut held = lock(&self.held);
        if held.owner != Some(who) {
            return Err(Refused::NotHeld);
        }
        held.depth -= 1;
        if held.depth == 0 {
            held.owner = None;
            drop(held);
            self.free.notify_one();
        }
        Ok(())
    }

    /// Releases one level whoever holds it (`threading.Lock.release`,
    /// which any thread may call); [`Refused::NotHeld`] if it is free.
    pub fn release_any(&self) -> Result<(), Refused> {
        let owner = lock(&self.held).owner.ok_or(Refused::NotHeld)?;
        self.release(owner)
    }

    /// Releases every level `who` holds; returns how many.
    pub fn release_all(&self, who: O) -> Result<usize, Refused> {
        self.release_if(|o| *o == who).ok_or(Refused::NotHeld)
    }

    /// Releases every level if its owner passes `dead` (e.g. a session that
    /// ended); the levels released, `None` if it was free or kept.
    pub fn release_if(&self, dead: impl FnOnce(&O) -> bool) -> Option<usize> {
        let mut held = lock(&self.held);
        if !held.owner.as_ref().is_some_and(dead) {
            return None;
        }
        held.owner = None;
        let depth = std::mem::take(&mut held.depth);
        drop(held);
        self.free.notify_one();
        Some(depth)
    }

    /// Its owner, if it is held.
    pub fn owner(&self) -> Option<O> {
        lock(&self.held).owner
    }

    /// Whether `who` holds it.
    pub fn is_held_by(&self, who: O) -> bool {
        self.owner() == Some(who)
    }

    /// Whether anyone holds it.
    pub fn is_locked(&self) -> bool {
        self.owner().is_some()
    }

    /// Makes every waiter run its cancel check now.
    pub fn wake(&self) {
        let _held = lock(&self.held);
        self.free.notify_all();
    }
}

/// A counting semaphore (`threading.Semaphore`), optionally bounded by its
/// initial value (`threading.BoundedSemaphore`).
///
/// ```
/// use mp_proc::plumbing::local::{Refused, Semaphore, Wait};
///
/// let s = Semaphore::new(1, true);
/// s.acquire(&Wait::now())?;
/// assert_eq!(s.acquire(&Wait::now()), Err(Refused::Timeout));
/// s.release()?;
/// assert_eq!(s.release(), Err(Refused::TooManyReleases { bound: 1 }));
/// # Ok::<(), Refused>(())
/// ```
pub struct Semaphore {
    value: Mutex<usize>,
    changed: Condvar,
    bound: Option<usize>,
}

impl Semaphore {
    /// A semaphore of `value` units; `bounded`: never released above it.
    pub fn new(value: usize, bounded: bool) -> Semaphore {
        Semaphore {
            value: Mutex::new(value),
            changed: Condvar::new(),
            bound: bounded.then_some(value),
        }
    }

    /// Takes a unit, waiting for one.
    pub fn acquire(&self, wait: &Wait<'_>) -> Result<(), Refused> {
        let (_v, r) = wait_on(&self.changed, lock(&self.value), wait, |v| {
            v.checked_sub(1).map(|left| *v = left)
        });
        r.map_err(|e| e.or(Refused::Timeout))
    }

    /// Gives a unit back: [`Refused::TooManyReleases`] past the bound.
    pub fn release(&self) -> Result<(), Refused> {
        let mut v = lock(&self.value);
        if let Some(bound) = self.bound
            && *v >= bound
        {
            return Err(Refused::TooManyReleases { bound });
        }
        *v = v.checked_add(1).ok_or(Refused::Overflow)?;
        drop(v);
        self.changed.notify_one();
        Ok(())
    }

    /// Gives back a unit an `acquire` took for a caller that never got it
    /// (its client hung up): never refused.
    pub fn give_back(&self) {
        let mut v = lock(&self.value);
        *v = v.saturating_add(1);
        drop(v);
        self.changed.notify_one();
    }

    /// The units free now.
    pub fn value(&self) -> usize {
        *lock(&self.value)
    }

    /// Its bound, if it is bounded.
    pub fn bound(&self) -> Option<usize> {
        self.bound
    }

    /// Makes every waiter run its cancel check now.
    pub fn wake(&self) {
        let _v = lock(&self.value);
        self.changed.notify_all();
    }
}

impl<O: Copy + Eq + std::fmt::Debug> std::fmt::Debug for Lock<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = lock(&self.held);
        f.debug_struct(if self.reentrant { "RLock" } else { "Lock" })
            .field("owner", &held.owner)
            .field("depth", &held.depth)
            .finish()
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("bound", &self.bound)
            .finish()
    }
}
