//! `Semaphore`, `BoundedSemaphore`, `Event` and `Barrier` on threads:
//! mp-proc's in-process primitives (`mp_proc::plumbing::local`) with the
//! names, methods and errors of mp-proc's process-shared ones.

use std::sync::{Arc, Condvar, MutexGuard};
use std::time::{Duration, Instant};

use mp_proc::Result;
use mp_proc::plumbing::local::{self, Refused, Wait};

use crate::registry::handle;

pub(crate) use mp_proc::plumbing::lock;

/// Waits on `cv` until `ready(state)` or `until` passes; returns the guard
/// and whether `ready` held (mp-proc's one waiting loop).
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    until: Option<Instant>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    let (g, r) = local::wait_on(cv, g, &Wait::until(until), |s| ready(s).then_some(()));
    (g, r.is_ok())
}

/// Whether an acquire took its unit: a timeout is `false`.
pub(crate) fn taken(r: std::result::Result<(), Refused>, what: &'static str) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(Refused::Timeout) => Ok(false),
        Err(e) => Err(e.into_error(what)),
    }
}

macro_rules! semaphore_type {
    ($name:ident, $bounded:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name {
            inner: Arc<local::Semaphore>,
        }

        handle!($name);

        impl $name {
            /// A semaphore of `value` units.
            pub fn new(value: usize) -> Result<$name> {
                Ok($name {
                    inner: Arc::new(local::Semaphore::new(value, $bounded)),
                })
            }

            /// Waits for a unit and takes it.
            pub fn acquire(&self) -> Result<()> {
                taken(self.inner.acquire(&Wait::forever()), stringify!($name)).map(drop)
            }

            /// Takes a unit if there is one now.
            pub fn try_acquire(&self) -> Result<bool> {
                taken(self.inner.acquire(&Wait::now()), stringify!($name))
            }

            /// Waits at most `timeout` for a unit.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                taken(
                    self.inner.acquire(&Wait::timeout(timeout)),
                    stringify!($name),
                )
            }

            /// Gives a unit back.
            pub fn release(&self) -> Result<()> {
                self.inner
                    .release()
                    .map_err(|e| e.into_error(stringify!($name)))
            }

            /// The units free now.
            pub fn value(&self) -> usize {
                self.inner.value()
            }
        }
    };
}

semaphore_type!(
    Semaphore,
    false,
    "A semaphore for threads (`threading.Semaphore`).\n\n```\nlet s = mp_dummy::Semaphore::new(1)?;\nassert!(s.try_acquire()?);\nassert!(!s.try_acquire()?);\ns.release()?;\n# Ok::<(), mp_proc::Error>(())\n```"
);
semaphore_type!(
    BoundedSemaphore,
    true,
    "A semaphore that may not be released above its initial value (`threading.BoundedSemaphore`).\n\n```\nlet s = mp_dummy::BoundedSemaphore::new(1)?;\nassert!(s.release().is_err());\n# Ok::<(), mp_proc::Error>(())\n```"
);

/// An event for threads (`threading.Event`).
///
/// ```
/// let e = mp_dummy::Event::new()?;
/// e.set();
/// assert!(e.wait(None)?);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Event {
    inner: Arc<local::Event>,
}

handle!(Event);

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            inner: Arc::new(local::Event::new()),
        })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.inner.set()
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.inner.clear()
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// Waits until the flag is set, for at most `timeout` (`None`: forever);
    /// returns the flag.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let wait = timeout.map_or(Wait::forever(), Wait::timeout);
        taken(self.inner.wait(&wait), "Event")
    }
}

/// What a barrier runs when it trips.
type Action = Box<dyn Fn() + Send + Sync>;

pub(crate) struct BarrierInner {
    barrier: local::Barrier,
    /// The wait of a `wait()` (`None`: forever).
    timeout: Option<Duration>,
    /// Run by the last party to arrive (`threading.Barrier`'s `action`).
    action: Option<Action>,
}

/// A barrier for threads (`threading.Barrier`).
///
/// ```
/// let b = mp_dummy::Barrier::new(1, None)?;
/// assert_eq!(b.wait()?, 0);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Barrier {
    inner: Arc<BarrierInner>,
}

handle!(Barrier);

impl Barrier {
    /// A barrier for `parties` threads, whose waits give up after `timeout`
    /// (`None`: never) unless a call says otherwise.
    pub fn new(parties: usize, timeout: Option<Duration>) -> Result<Barrier> {
        Barrier::make(parties, None, timeout)
    }

    /// A barrier for `parties` threads whose `action` runs once each time
    /// it trips, in the last thread to arrive, before any thread goes
    /// through (`threading.Barrier(parties, action, timeout)`), as
    /// mp-proc's `Barrier::with_action`; here any closure will do. If the
    /// action panics, the barrier breaks: its thread gets
    /// [`Error::ActionPanicked`](mp_proc::Error::ActionPanicked), the
    /// others `BrokenBarrier`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let trips = Arc::new(AtomicUsize::new(0));
    /// let counted = trips.clone();
    /// let b = mp_dummy::Barrier::with_action(
    ///     2,
    ///     move || {
    ///         counted.fetch_add(1, Ordering::SeqCst);
    ///     },
    ///     None,
    /// )?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| b.wait().unwrap());
    ///     b.wait().unwrap();
    /// });
    /// assert_eq!(trips.load(Ordering::SeqCst), 1);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn with_action(
        parties: usize,
        action: impl Fn() + Send + Sync + 'static,
        timeout: Option<Duration>,
    ) -> Result<Barrier> {
        Barrier::make(parties, Some(Box::new(action)), timeout)
    }

    fn make(parties: usize, action: Option<Action>, timeout: Option<Duration>) -> Result<Barrier> {
        let barrier = local::Barrier::new(parties).map_err(|e| e.into_error("Barrier"))?;
        Ok(Barrier {
            inner: Arc::new(BarrierInner {
                barrier,
                timeout,
                action,
            }),
        })
    }

    /// Waits for every party; returns this caller's index, `0..parties`.
    pub fn wait(&self) -> Result<usize> {
        self.wait_with(&self.inner.timeout.map_or(Wait::forever(), Wait::timeout))
    }

    /// As [`wait`](Self::wait), for at most `timeout` (a timeout breaks it).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_with(&Wait::timeout(timeout))
    }

    fn wait_with(&self, wait: &Wait<'_>) -> Result<usize> {
        let mut panicked = None;
        let r = self.inner.barrier.wait_then(wait, || {
            let Some(action) = &self.inner.action else {
                return true;
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(action)) {
                Ok(()) => true,
                Err(p) => {
                    panicked = Some(mp_proc::plumbing::panic_message(&*p));
                    false
                }
            }
        });
        match panicked {
            Some(message) => Err(mp_proc::Error::ActionPanicked {
                what: "Barrier",
                message,
            }),
            None => r.map_err(|e| e.into_error("Barrier")),
        }
    }

    /// Breaks the barrier: waiters get `BrokenBarrier`.
    pub fn abort(&self) -> Result<()> {
        self.inner.barrier.abort();
        Ok(())
    }

    /// Makes it whole again; current waiters get `BrokenBarrier`.
    pub fn reset(&self) -> Result<()> {
        self.inner.barrier.reset();
        Ok(())
    }

    /// Whether it is broken.
    pub fn broken(&self) -> bool {
        self.inner.barrier.broken()
    }

    /// How many wait now.
    pub fn n_waiting(&self) -> usize {
        self.inner.barrier.n_waiting()
    }

    /// How many parties it needs.
    pub fn parties(&self) -> usize {
        self.inner.barrier.parties()
    }
}
