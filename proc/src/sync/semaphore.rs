//! `Semaphore`, `BoundedSemaphore` and `Event`: futex words in shared memory.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::shared::Shared;
use crate::error::{Error, Result};
use crate::spin::{deadline_after, spin_until};
use crate::sys::atomics::AtomicU32;
use crate::sys::sync::{announce, anyone_waiting, futex_wait, futex_wake, word};

const VALUE: usize = 0;
const BOUND: usize = 4;
const WAITERS: usize = 8;
const NO_BOUND: u32 = u32::MAX;

/// The counter shared by `Semaphore` and `BoundedSemaphore`.
#[derive(Clone)]
struct Counter {
    shared: Shared,
}

impl Counter {
    fn new(value: usize, bound: Option<usize>) -> Result<Counter> {
        let too_big = |v: usize| v >= NO_BOUND as usize;
        if too_big(value) {
            return Err(Error::Invalid {
                what: "Semaphore",
                reason: format!("the initial value must be below {NO_BOUND}"),
            });
        }
        let shared = Shared::new(64)?;
        word(&shared.0, VALUE).store(value as u32, Ordering::Release);
        word(&shared.0, BOUND).store(bound.map_or(NO_BOUND, |b| b as u32), Ordering::Release);
        Ok(Counter { shared })
    }

    fn value(&self) -> &AtomicU32 {
        word(&self.shared.0, VALUE)
    }

    fn waiters(&self) -> &AtomicU32 {
        word(&self.shared.0, WAITERS)
    }

    fn try_take(&self) -> bool {
        let v = self.value();
        let mut cur = v.load(Ordering::Acquire);
        while cur > 0 {
            match v.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// Takes one unit, waiting until `deadline` (`None`: forever).
    fn take(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.try_take() {
                return true;
            }
            if spin_until(|| self.value().load(Ordering::Acquire) > 0, deadline) && self.try_take()
            {
                return true;
            }
            announce(self.waiters());
            let in_time = futex_wait(self.value(), 0, deadline);
            self.waiters().fetch_sub(1, Ordering::AcqRel);
            if !in_time {
                return self.try_take();
            }
        }
    }

    fn give(&self) -> Result<()> {
        let bound = word(&self.shared.0, BOUND).load(Ordering::Acquire);
        let v = self.value();
        let mut cur = v.load(Ordering::Acquire);
        loop {
            if bound != NO_BOUND && cur >= bound {
                return Err(Error::TooManyReleases {
                    bound: bound as usize,
                });
            }
            if cur == NO_BOUND - 1 {
                return Err(Error::Overflow {
                    what: "Semaphore",
                    reason: "the value would exceed the maximum".into(),
                });
            }
            match v.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if anyone_waiting(self.waiters()) {
            futex_wake(v, 1);
        }
        Ok(())
    }
}

macro_rules! semaphore {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $ty {
            counter: Counter,
        }

        impl $ty {
            /// Waits for a unit and takes it.
            pub fn acquire(&self) -> Result<()> {
                self.counter.take(None);
                Ok(())
            }

            /// Takes a unit if one is free (Python's `acquire(block=False)`).
            pub fn try_acquire(&self) -> Result<bool> {
                Ok(self.counter.try_take())
            }

            /// Waits at most `timeout` for a unit; `false` if none came.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                Ok(self.counter.take(deadline_after(timeout)))
            }

            /// Gives a unit back, waking one waiter.
            pub fn release(&self) -> Result<()> {
                self.counter.give()
            }

            /// The number of free units now (Python's `get_value()`).
            pub fn value(&self) -> usize {
                self.counter.value().load(Ordering::Acquire) as usize
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct($what).field("value", &self.value()).finish()
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.counter.shared.serialize($what, 0, s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok($ty { counter: Counter { shared: Shared::deserialize($what, 0, d)? } })
            }
        }
    };
}

semaphore!(
    /// A counter of free units shared by processes, Python's
    /// `multiprocessing.Semaphore`. Any process may release; releasing past
    /// the initial value is allowed.
    ///
    /// ```
    /// let sem = mp_proc::Semaphore::new(2)?;
    /// sem.acquire()?;
    /// assert!(sem.try_acquire()?);
    /// assert!(!sem.try_acquire()?);
    /// sem.release()?;
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    Semaphore,
    "Semaphore"
);

semaphore!(
    /// A [`Semaphore`] that may not be released past its initial value,
    /// Python's `multiprocessing.BoundedSemaphore`: that release is
    /// [`Error::TooManyReleases`](crate::Error::TooManyReleases).
    ///
    /// ```
    /// let sem = mp_proc::BoundedSemaphore::new(1)?;
    /// assert!(matches!(sem.release(), Err(mp_proc::Error::TooManyReleases { bound: 1 })));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    BoundedSemaphore,
    "BoundedSemaphore"
);

impl Semaphore {
    /// A semaphore with `value` free units.
    pub fn new(value: usize) -> Result<Semaphore> {
        Ok(Semaphore {
            counter: Counter::new(value, None)?,
        })
    }
}

impl BoundedSemaphore {
    /// A semaphore with `value` free units, which is also its bound.
    pub fn new(value: usize) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore {
            counter: Counter::new(value, Some(value))?,
        })
    }
}

const FLAG: usize = 0;
const EVENT_WAITERS: usize = 4;

/// A flag that processes wait on, Python's `multiprocessing.Event`.
///
/// ```
/// use std::time::Duration;
/// let event = mp_proc::Event::new()?;
/// assert!(!event.wait(Some(Duration::ZERO))?);
/// event.set();
/// assert!(event.is_set());
/// assert!(event.wait(None)?);
/// event.clear();
/// assert!(!event.is_set());
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    shared: Shared,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            shared: Shared::new(64)?,
        })
    }

    fn flag(&self) -> &AtomicU32 {
        word(&self.shared.0, FLAG)
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.flag().store(1, Ordering::Release);
        if anyone_waiting(word(&self.shared.0, EVENT_WAITERS)) {
            futex_wake(self.flag(), i32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag().store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) == 1
    }

    /// Waits until the flag is set or `timeout` passes (`None`: forever);
    /// returns whether it is set.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(deadline_after);
        let forever = timeout.is_none() || deadline.is_none();
        let waiters = word(&self.shared.0, EVENT_WAITERS);
        loop {
            if spin_until(|| self.is_set(), if forever { None } else { deadline }) {
                return Ok(true);
            }
            announce(waiters);
            let in_time = futex_wait(self.flag(), 0, if forever { None } else { deadline });
            waiters.fetch_sub(1, Ordering::AcqRel);
            if !in_time {
                return Ok(self.is_set());
            }
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shared.serialize("Event", 0, s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Event {
            shared: Shared::deserialize("Event", 0, d)?,
        })
    }
}
