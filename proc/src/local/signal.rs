//! [`Condition`] (over a [`Lock`]) and [`Event`]: waits for a signal.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use super::{Ended, Lock, Refused, Wait, wait_on};
use crate::mutex::lock;

struct Tickets {
    /// Waiters not yet notified, oldest first.
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
    next: u64,
}

/// A condition variable over a [`Lock`] (`threading.Condition`); notified
/// waiters wake in the order they began to wait.
///
/// ```
/// use std::sync::Arc;
/// use mp_proc::plumbing::local::{Condition, Lock, Wait};
///
/// let c = Condition::new(Arc::new(Lock::new(true)));
/// c.lock().acquire(7u8, &Wait::forever())?;
/// assert_eq!(c.wait(7, &Wait::now()), Ok(false)); // not notified, lock held again
/// assert!(c.lock().is_held_by(7));
/// # Ok::<(), mp_proc::plumbing::local::Refused>(())
/// ```
pub struct Condition<O> {
    lock: Arc<Lock<O>>,
    tickets: Mutex<Tickets>,
    changed: Condvar,
}

impl<O: Copy + Eq> Condition<O> {
    /// A condition over `lock` (which others may share).
    pub fn new(lock: Arc<Lock<O>>) -> Condition<O> {
        Condition {
            lock,
            tickets: Mutex::new(Tickets {
                waiting: VecDeque::new(),
                notified: HashSet::new(),
                next: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Its lock.
    pub fn lock(&self) -> &Arc<Lock<O>> {
        &self.lock
    }

    /// Releases the lock `who` holds (every level), waits for a
    /// notification as `wait` allows, and takes the lock again at the same
    /// depth: whether it was notified (false: the deadline passed).
    /// [`Refused::NotHeld`] if `who` does not hold the lock;
    /// [`Refused::Cancelled`] if cancelled, and then `who` does not hold
    /// the lock any more (and a notification it took goes to the next
    /// waiter).
    pub fn wait(&self, who: O, wait: &Wait<'_>) -> Result<bool, Refused> {
        // Registered before the lock is released: no notification is lost.
        let mut t = lock(&self.tickets);
        let ticket = t.next;
        t.next = t.next.wrapping_add(1);
        t.waiting.push_back(ticket);
        let depth = match self.lock.release_all(who) {
            Ok(depth) => depth,
            Err(e) => {
                t.waiting.retain(|x| *x != ticket);
                return Err(e);
            }
        };
        let (mut t, r) = wait_on(&self.changed, t, wait, |t| {
            t.notified.remove(&ticket).then_some(())
        });
        if r.is_err() {
            t.waiting.retain(|x| *x != ticket);
        }
        drop(t);
        if r == Err(Ended::Cancelled) {
            return Err(Refused::Cancelled);
        }
        // The lock again, however long that takes (as CPython's wait).
        let notified = r.is_ok();
        if let Err(e) = self.lock.reacquire(who, depth, &wait.with_deadline(None)) {
            // Cancelled: a notification this waiter took goes to the next.
            if notified {
                self.notify(1);
            }
            return Err(e);
        }
        Ok(notified)
    }

    /// Wakes up to `n` waiters (the oldest).
    pub fn notify(&self, n: usize) {
        let mut t = lock(&self.tickets);
        for _ in 0..n {
            match t.waiting.pop_front() {
                Some(ticket) => {
                    t.notified.insert(ticket);
                }
                None => break,
            }
        }
        drop(t);
        self.changed.notify_all();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(usize::MAX);
    }

    /// How many wait for a notification.
    pub fn n_waiting(&self) -> usize {
        lock(&self.tickets).waiting.len()
    }

    /// Makes every waiter (for a notification or for the lock) run its
    /// cancel check now.
    pub fn wake(&self) {
        drop(lock(&self.tickets));
        self.changed.notify_all();
        self.lock.wake();
    }
}

/// A flag threads wait for (`threading.Event`).
///
/// ```
/// use mp_proc::plumbing::local::{Event, Refused, Wait};
///
/// let e = Event::new();
/// assert_eq!(e.wait(&Wait::now()), Err(Refused::Timeout));
/// e.set();
/// assert!(e.is_set());
/// # Ok::<(), Refused>(())
/// ```
pub struct Event {
    flag: Mutex<bool>,
    changed: Condvar,
}

impl Default for Event {
    fn default() -> Event {
        Event::new()
    }
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event {
            flag: Mutex::new(false),
            changed: Condvar::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *lock(&self.flag) = true;
        self.changed.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        *lock(&self.flag) = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *lock(&self.flag)
    }

    /// Waits until the flag is set.
    pub fn wait(&self, wait: &Wait<'_>) -> Result<(), Refused> {
        let (_f, r) = wait_on(&self.changed, lock(&self.flag), wait, |f| f.then_some(()));
        r.map_err(|e| e.or(Refused::Timeout))
    }

    /// Makes every waiter run its cancel check now.
    pub fn wake(&self) {
        drop(lock(&self.flag));
        self.changed.notify_all();
    }
}

impl<O: Copy + Eq + std::fmt::Debug> std::fmt::Debug for Condition<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("n_waiting", &self.n_waiting())
            .finish()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
