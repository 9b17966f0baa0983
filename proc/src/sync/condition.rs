//! `Condition` and `Barrier`: process-shared condition variables.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{Lock, LockGuard};
use super::shared::{RawLock, Shared};
use crate::error::{Error, OsContext, Result};
use crate::function::FnPointer;
use crate::spin::deadline_after;
use crate::sys::sync::{self, OBJECT, Taken, word};

/// A condition variable shared by processes, Python's `multiprocessing.Condition`.
///
/// Waiting takes the guard of the condition's [`Lock`] and gives it back,
/// as `std::sync::Condvar` does.
///
/// ```
/// use mp_proc::{Condition, Process, Value};
///
/// fn producer((cond, ready): (Condition, Value<bool>)) {
///     let _held = cond.acquire().unwrap();
///     ready.set(true);
///     cond.notify_all().unwrap();
/// }
///
/// let cond = Condition::new(None)?;
/// let ready = Value::new(false)?;
/// let mut p = Process::new(producer, (cond.clone(), ready.clone()));
/// let guard = cond.acquire()?;
/// p.start()?;
/// let (guard, ok) = cond.wait_for(guard, || ready.get(), None)?;
/// assert!(ok);
/// drop(guard);
/// assert_eq!(p.join()?, 0);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: Lock,
    cond: Shared,
}

impl Condition {
    /// A condition over `lock`, or over a new [`Lock`].
    pub fn new(lock: Option<Lock>) -> Result<Condition> {
        let lock = match lock {
            Some(l) => l,
            None => Lock::new()?,
        };
        let cond = Shared::new(OBJECT)?;
        sync::cond_init(&cond.0, 0).os("pthread_cond_init")?;
        Ok(Condition { lock, cond })
    }

    /// The condition's lock.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Takes the condition's lock (Python's `with cond:`).
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.lock.acquire()
    }

    fn check<'a>(&self, guard: &LockGuard<'a>) -> Result<&'a RawLock> {
        let raw = guard.raw();
        if raw.shared.same(&self.lock.raw().shared) {
            Ok(raw)
        } else {
            Err(Error::NotHeld {
                what: "Condition's lock",
            })
        }
    }

    fn wait_until<'a>(
        &self,
        guard: LockGuard<'a>,
        deadline: Option<Instant>,
    ) -> Result<(LockGuard<'a>, bool)> {
        let raw = self.check(&guard)?;
        match sync::cond_wait(&self.cond.0, 0, &raw.shared.0, raw.offset, deadline).os("wait")? {
            Taken::Yes => Ok((guard, true)),
            Taken::No => Ok((guard, false)),
            // The guard's drop releases the lock again.
            Taken::OwnerDied => Err(Error::OwnerDied {
                what: "Condition's lock",
            }),
        }
    }

    /// Releases the lock, waits for a notification, and takes the lock again.
    pub fn wait<'a>(&self, guard: LockGuard<'a>) -> Result<LockGuard<'a>> {
        Ok(self.wait_until(guard, None)?.0)
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; the flag is false
    /// when the time ran out.
    pub fn wait_timeout<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> Result<(LockGuard<'a>, bool)> {
        self.wait_until(guard, deadline_after(timeout))
    }

    /// Waits until `predicate()` is true (checked with the lock held), for at
    /// most `timeout` (`None`: forever); returns the predicate's last value.
    pub fn wait_for<'a>(
        &self,
        guard: LockGuard<'a>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(LockGuard<'a>, bool)> {
        wait_for_with(guard, predicate, timeout, |g, until| {
            self.wait_until(g, until)
        })
    }

    /// Wakes up to `n` waiters. An `n` over 1024 wakes every
    /// waiter, as [`notify_all`](Self::notify_all) (a condition allows a
    /// waiter to wake without a notification, and one signal per unit of a
    /// huge `n` would take forever).
    pub fn notify(&self, n: usize) -> Result<()> {
        if n > NOTIFY_EACH {
            return self.notify_all();
        }
        for _ in 0..n {
            sync::cond_notify(&self.cond.0, 0, false).os("notify")?;
        }
        Ok(())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        sync::cond_notify(&self.cond.0, 0, true).os("notify_all")
    }
}

/// `Condition.wait_for` over any condition's `wait`: waits until
/// `predicate()` is true (checked with the lock held), for at most `timeout`
/// (`None`: forever), with `wait(guard, until)` releasing the lock, waiting
/// for a notification until `until` (`None`: forever) and taking the lock
/// again; returns the predicate's last value. mp-dummy's and mp-manager's
/// conditions share it.
#[doc(hidden)]
pub fn wait_for_with<G>(
    mut guard: G,
    mut predicate: impl FnMut() -> bool,
    timeout: Option<Duration>,
    mut wait: impl FnMut(G, Option<Instant>) -> Result<(G, bool)>,
) -> Result<(G, bool)> {
    let until = timeout.and_then(deadline_after);
    let bounded = timeout.is_some() && until.is_some();
    loop {
        if predicate() {
            return Ok((guard, true));
        }
        let (g, in_time) = wait(guard, if bounded { until } else { None })?;
        guard = g;
        if !in_time {
            let last = predicate();
            return Ok((guard, last));
        }
    }
}

/// The most waiters [`Condition::notify`] wakes one by one.
const NOTIFY_EACH: usize = 1024;

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").finish_non_exhaustive()
    }
}

/// The region of a condition variable, as a handle.
struct CondWire<'a>(&'a Shared);

impl Serialize for CondWire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize("Condition", 0, s)
    }
}

struct CondOwned(Shared);

impl<'de> Deserialize<'de> for CondOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(CondOwned(Shared::deserialize("Condition", 0, d)?))
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.lock, CondWire(&self.cond)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (lock, CondOwned(cond)) = <(Lock, CondOwned)>::deserialize(d)?;
        Ok(Condition { lock, cond })
    }
}

// Barrier layout: mutex, condition, then the state words.
const B_COND: usize = OBJECT;
const B_COUNT: usize = 2 * OBJECT;
const B_STATE: usize = 2 * OBJECT + 4;
const B_PARTIES: usize = 2 * OBJECT + 8;
const B_TIMEOUT_MS: usize = 2 * OBJECT + 12;
const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;
const NO_TIMEOUT: u32 = u32::MAX;
/// The longest a party waits on the barrier's condition before it takes the
/// lock again, to learn whether the lock's owner died (see `Barrier::cond_wait`).
const SLICE: Duration = Duration::from_millis(100);

/// A barrier for a fixed number of parties, Python's `multiprocessing.Barrier`
/// (`threading.Barrier` semantics): [`wait`](Barrier::wait) returns when all
/// parties are waiting, with an index in `0..parties` unique to each waiter.
/// [`abort`](Barrier::abort), a [`reset`](Barrier::reset) while parties wait,
/// or a waiter's timeout break it: waits then fail with
/// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier).
///
/// ```
/// use mp_proc::{Barrier, Process};
///
/// fn party(barrier: Barrier) {
///     barrier.wait().unwrap();
/// }
///
/// let barrier = Barrier::new(2, None)?;
/// let mut p = Process::new(party, barrier.clone());
/// p.start()?;
/// let index = barrier.wait()?;
/// assert!(index < 2);
/// assert_eq!(p.join()?, 0);
/// # Ok::<(), mp_proc::Error>(())
/// ```
///
/// A barrier made [`with_action`](Barrier::with_action) runs a function
/// when it trips, in the last party to arrive, before any party goes on.
#[derive(Clone)]
pub struct Barrier {
    raw: RawLock,
    /// Run by the party that trips the barrier (`threading.Barrier`'s
    /// `action`): a signed function reference, which the barrier's
    /// descriptor tag binds to this barrier.
    action: Option<FnPointer<fn()>>,
}

impl Barrier {
    /// A barrier for `parties` (at least 1) with a default `timeout` for
    /// [`wait`](Barrier::wait).
    pub fn new(parties: usize, timeout: Option<Duration>) -> Result<Barrier> {
        Barrier::make(parties, None, timeout)
    }

    /// A barrier for `parties` whose `action` runs once each time the
    /// barrier trips (CPython's `Barrier(parties, action, timeout)`): in the
    /// last party to arrive, with the barrier's lock held, before any party
    /// goes through. The action travels with every clone of the barrier, in
    /// any process of this program, as a signed reference to the function (a
    /// process of another program cannot call it: its party gets
    /// [`Error::TargetNotInImage`] and the barrier breaks).
    ///
    /// If the action panics, the barrier breaks: the party that ran it gets
    /// [`Error::ActionPanicked`] with the panic's message, the others
    /// [`Error::BrokenBarrier`] (`threading.Barrier` raises the action's
    /// exception in its party and breaks the barrier).
    ///
    /// ```
    /// use mp_proc::{Barrier, Process};
    ///
    /// fn announce() {
    ///     println!("every party arrived");
    /// }
    /// fn party(barrier: Barrier) {
    ///     barrier.wait().unwrap();
    /// }
    ///
    /// let barrier = Barrier::with_action(2, announce, None)?;
    /// let mut p = Process::new(party, barrier.clone());
    /// p.start()?;
    /// barrier.wait()?; // one of the two parties printed the line first
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn with_action(parties: usize, action: fn(), timeout: Option<Duration>) -> Result<Barrier> {
        Barrier::make(parties, Some(FnPointer::new(action)), timeout)
    }

    fn make(
        parties: usize,
        action: Option<FnPointer<fn()>>,
        timeout: Option<Duration>,
    ) -> Result<Barrier> {
        if parties == 0 || parties >= u32::MAX as usize {
            return Err(Error::Invalid {
                what: "Barrier",
                reason: format!("parties must be between 1 and {}", u32::MAX - 1),
            });
        }
        let shared = Shared::new(3 * OBJECT)?;
        let raw = RawLock::init(shared, 0, false, "Barrier")?;
        sync::cond_init(&raw.shared.0, B_COND).os("pthread_cond_init")?;
        word(&raw.shared.0, B_PARTIES).store(parties as u32, Ordering::Release);
        let ms = timeout.map_or(NO_TIMEOUT, |t| {
            t.as_millis().min(NO_TIMEOUT as u128 - 1) as u32
        });
        word(&raw.shared.0, B_TIMEOUT_MS).store(ms, Ordering::Release);
        Ok(Barrier { raw, action })
    }

    /// Runs the action, if any: a panic is [`Error::ActionPanicked`].
    fn run_action(&self) -> Result<()> {
        let Some(action) = self.action else {
            return Ok(());
        };
        let f = action.get()?;
        std::panic::catch_unwind(f).map_err(|p| Error::ActionPanicked {
            what: "Barrier",
            message: crate::rt::child::panic_message(&*p),
        })
    }

    fn w(&self, offset: usize) -> &crate::sys::atomics::AtomicU32 {
        word(&self.raw.shared.0, offset)
    }

    fn state(&self) -> u32 {
        self.w(B_STATE).load(Ordering::Acquire)
    }

    fn set_state(&self, s: u32) {
        self.w(B_STATE).store(s, Ordering::Release);
    }

    fn notify_all(&self) {
        let _ = sync::cond_notify(&self.raw.shared.0, B_COND, true);
    }

    /// Waits on the barrier's condition (the lock held); false on timeout.
    ///
    /// The wait lasts at most [`SLICE`] before it takes the lock again: a
    /// party whose process dies while it holds the lock (in the action)
    /// wakes nobody, and a waiter blocked on the condition alone would never
    /// learn of it; taking the robust lock again reports the dead owner. A
    /// slice that ends before `deadline` counts as a wake-up (a timed-out
    /// wait may have consumed a notification, so it is not simply waited
    /// again): every caller re-checks the barrier's state and waits again
    /// with its own, unchanged deadline.
    fn cond_wait(&self, deadline: Option<Instant>) -> Result<bool> {
        let slice_end = Instant::now().checked_add(SLICE);
        let (until, sliced) = match (deadline, slice_end) {
            (Some(d), Some(s)) if s < d => (Some(s), true),
            (Some(d), _) => (Some(d), false),
            (None, s) => (s, s.is_some()),
        };
        match sync::cond_wait(&self.raw.shared.0, B_COND, &self.raw.shared.0, 0, until)
            .os("wait")?
        {
            Taken::Yes => Ok(true),
            Taken::No => Ok(sliced),
            Taken::OwnerDied => {
                // A party died inside the barrier: it can never be whole again.
                self.set_state(BROKEN);
                self.notify_all();
                Ok(true)
            }
        }
    }

    /// Waits for the other parties, with the barrier's default timeout.
    pub fn wait(&self) -> Result<usize> {
        let ms = self.w(B_TIMEOUT_MS).load(Ordering::Acquire);
        self.wait_inner((ms != NO_TIMEOUT).then(|| Duration::from_millis(ms as u64)))
    }

    /// Waits for the other parties for at most `timeout`. Running out of time
    /// breaks the barrier for everyone ([`Error::BrokenBarrier`](crate::Error::BrokenBarrier)).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<usize> {
        let deadline = timeout.and_then(deadline_after);
        let bounded = timeout.is_some() && deadline.is_some();
        if !self.raw.lock(None)? {
            return Err(Error::BrokenBarrier);
        }
        let result = self.wait_locked(if bounded { deadline } else { None });
        let _ = self.raw.unlock();
        result
    }

    /// `threading.Barrier.wait`, with the lock held.
    fn wait_locked(&self, deadline: Option<Instant>) -> Result<usize> {
        // Block while a previous round drains or resets.
        while matches!(self.state(), DRAINING | RESETTING) {
            self.cond_wait(None)?;
        }
        if self.state() == BROKEN {
            return Err(Error::BrokenBarrier);
        }
        let parties = self.w(B_PARTIES).load(Ordering::Acquire);
        let index = self.w(B_COUNT).fetch_add(1, Ordering::AcqRel);
        let outcome = if index + 1 == parties {
            // The action first: the others go through only if it returns.
            let acted = self.run_action();
            self.set_state(if acted.is_ok() { DRAINING } else { BROKEN });
            self.notify_all();
            acted.map(|()| index as usize)
        } else {
            self.wait_released(deadline).map(|()| index as usize)
        };
        // The last one out opens the next round.
        if self.w(B_COUNT).fetch_sub(1, Ordering::AcqRel) == 1
            && matches!(self.state(), DRAINING | RESETTING)
        {
            self.set_state(FILLING);
            self.notify_all();
        }
        outcome
    }

    /// Waits for the round to be released; a timeout breaks the barrier.
    fn wait_released(&self, deadline: Option<Instant>) -> Result<()> {
        while self.state() == FILLING {
            if !self.cond_wait(deadline)? && self.state() == FILLING {
                self.set_state(BROKEN);
                self.notify_all();
                return Err(Error::BrokenBarrier);
            }
        }
        match self.state() {
            RESETTING | BROKEN => Err(Error::BrokenBarrier),
            _ => Ok(()),
        }
    }

    /// Breaks the barrier: every current and future [`wait`](Barrier::wait)
    /// fails until [`reset`](Barrier::reset).
    pub fn abort(&self) -> Result<()> {
        self.raw.lock(None)?;
        self.set_state(BROKEN);
        self.notify_all();
        self.raw.unlock()
    }

    /// Returns the barrier to its empty state; parties waiting now get
    /// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier), and the barrier
    /// is usable again once they have left.
    pub fn reset(&self) -> Result<()> {
        self.raw.lock(None)?;
        if self.w(B_COUNT).load(Ordering::Acquire) > 0 {
            if matches!(self.state(), FILLING | BROKEN) {
                self.set_state(RESETTING);
            }
        } else {
            self.set_state(FILLING);
        }
        self.notify_all();
        self.raw.unlock()
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state() == BROKEN
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> usize {
        if self.state() == FILLING {
            self.w(B_COUNT).load(Ordering::Acquire) as usize
        } else {
            0
        }
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.w(B_PARTIES).load(Ordering::Acquire) as usize
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.raw
            .shared
            .serialize_with("Barrier", 0, &self.action, s)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (shared, action) = Shared::deserialize_with("Barrier", 0, d)?;
        Ok(Barrier {
            raw: RawLock {
                shared,
                offset: 0,
                what: "Barrier",
            },
            action,
        })
    }
}
