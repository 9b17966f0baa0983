//! [`Barrier`]: parties wait for each other (`threading.Barrier`).

use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::{Ended, Refused, Wait, wait_on};
use crate::mutex::lock;

/// How a generation ended, shared with its waiters: `true` when its
/// parties went through, `false` when it was reset (its waiters fail).
/// Each waiter keeps its own generation's, so one that wakes late still
/// learns how its generation ended, whatever came after.
type Outcome = Arc<OnceLock<bool>>;

struct State {
    waiting: usize,
    /// The last party runs the action: the others wait for it, whatever
    /// their deadlines (as CPython's, which wait for the lock the action
    /// holds).
    acting: bool,
    /// The current generation's outcome, not set yet.
    generation: Outcome,
    broken: bool,
}

impl State {
    /// Ends the current generation (`passed`: its parties go through;
    /// else it was reset) and starts the next.
    fn end_generation(&mut self, passed: bool) {
        let _ = self.generation.set(passed);
        self.generation = Outcome::default();
        self.waiting = 0;
    }
}

/// A barrier for a number of parties (`threading.Barrier`; its action is
/// the caller's, given to [`wait_then`](Self::wait_then)). A waiter that
/// times out or is cancelled breaks it, as CPython's does, so that the
/// others do not wait forever.
///
/// ```
/// use mp_proc::plumbing::local::{Barrier, Refused, Wait};
///
/// let b = Barrier::new(2)?;
/// assert_eq!(b.wait(&Wait::now()), Err(Refused::BrokenBarrier)); // timed out: broken
/// b.reset();
/// let other = std::thread::scope(|s| {
///     let other = s.spawn(|| b.wait(&Wait::forever()));
///     let mine = b.wait(&Wait::forever()).unwrap();
///     mine + other.join().unwrap().unwrap()
/// });
/// assert_eq!(other, 1); // indices 0 and 1
/// # Ok::<(), Refused>(())
/// ```
pub struct Barrier {
    parties: usize,
    state: Mutex<State>,
    changed: Condvar,
}

impl Barrier {
    /// A barrier for `parties` (at least one: [`Refused::NoParties`]).
    pub fn new(parties: usize) -> Result<Barrier, Refused> {
        if parties == 0 {
            return Err(Refused::NoParties);
        }
        Ok(Barrier {
            parties,
            state: Mutex::new(State {
                waiting: 0,
                acting: false,
                generation: Outcome::default(),
                broken: false,
            }),
            changed: Condvar::new(),
        })
    }

    /// Waits until every party waits; this caller's index, `0..parties`
    /// (in the order they came). [`Refused::BrokenBarrier`] if it is or
    /// gets broken, or reset, or the deadline passes (which breaks it);
    /// [`Refused::Cancelled`] if cancelled (which breaks it too).
    pub fn wait(&self, wait: &Wait<'_>) -> Result<usize, Refused> {
        self.wait_then(wait, || true)
    }

    /// As [`wait`](Self::wait); the last party to arrive runs `action`
    /// first (without the barrier's state locked: it may look at the
    /// barrier), while the others wait for it past their deadlines, and a
    /// party of the next round waits for it before it counts. If it returns
    /// false (the caller's action failed) or panics (the panic goes on to
    /// the caller), the barrier breaks: every party, this one too, gets
    /// [`Refused::BrokenBarrier`], and the caller knows its action failed.
    ///
    /// ```
    /// use mp_proc::plumbing::local::{Barrier, Refused, Wait};
    ///
    /// let b = Barrier::new(1)?;
    /// let mut ran = 0;
    /// assert_eq!(b.wait_then(&Wait::forever(), || { ran += 1; true }), Ok(0));
    /// assert_eq!(ran, 1);
    /// assert_eq!(b.wait_then(&Wait::forever(), || false), Err(Refused::BrokenBarrier));
    /// assert!(b.broken());
    /// # Ok::<(), Refused>(())
    /// ```
    pub fn wait_then(
        &self,
        wait: &Wait<'_>,
        action: impl FnOnce() -> bool,
    ) -> Result<usize, Refused> {
        let st = lock(&self.state);
        // A party of the next round waits for the action of this one.
        let (mut st, r) = wait_on(&self.changed, st, &wait.with_deadline(None), |s| {
            (!s.acting).then_some(())
        });
        if let Err(ended) = r {
            return Err(ended.or(Refused::BrokenBarrier));
        }
        if st.broken {
            return Err(Refused::BrokenBarrier);
        }
        let index = st.waiting;
        st.waiting += 1;
        let generation = st.generation.clone();
        if st.waiting == self.parties {
            st.acting = true;
            drop(st);
            // A panic breaks the barrier too, and goes on to the caller.
            let acted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(action));
            let mut st = lock(&self.state);
            st.acting = false;
            let r = if generation.get().is_some() {
                // Reset while it acted: its waiters failed already.
                Err(Refused::BrokenBarrier)
            } else if matches!(acted, Ok(true)) && !st.broken {
                st.end_generation(true);
                Ok(index)
            } else {
                st.broken = true;
                st.waiting = st.waiting.saturating_sub(1);
                Err(Refused::BrokenBarrier)
            };
            drop(st);
            self.changed.notify_all();
            if let Err(panic) = acted {
                std::panic::resume_unwind(panic);
            }
            return r;
        }
        let ready = |s: &mut State| {
            if let Some(&passed) = generation.get() {
                Some(passed)
            } else if s.broken {
                s.waiting = s.waiting.saturating_sub(1);
                Some(false)
            } else {
                None
            }
        };
        let (st, r) = wait_on(&self.changed, st, wait, ready);
        // Past the deadline while the action runs: wait for the action.
        let (mut st, r) = match r {
            Err(Ended::Timeout) if st.acting => {
                wait_on(&self.changed, st, &wait.with_deadline(None), ready)
            }
            r => (st, r),
        };
        match r {
            Ok(true) => Ok(index),
            Ok(false) => Err(Refused::BrokenBarrier),
            Err(ended) => {
                st.broken = true;
                st.waiting = st.waiting.saturating_sub(1);
                drop(st);
                self.changed.notify_all();
                Err(match ended {
                    Ended::Timeout => Refused::BrokenBarrier,
                    Ended::Cancelled => Refused::Cancelled,
                })
            }
        }
    }

    /// Breaks it: every waiter, now and later, gets
    /// [`Refused::BrokenBarrier`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        lock(&self.state).broken = true;
        self.changed.notify_all();
    }

    /// Makes it whole and empty again; its current waiters get
    /// [`Refused::BrokenBarrier`].
    pub fn reset(&self) {
        let mut st = lock(&self.state);
        if st.waiting > 0 {
            st.end_generation(false);
        }
        st.broken = false;
        drop(st);
        self.changed.notify_all();
    }

    /// Whether it is broken.
    pub fn broken(&self) -> bool {
        lock(&self.state).broken
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> usize {
        lock(&self.state).waiting
    }

    /// How many parties it needs.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Makes every waiter run its cancel check now.
    pub fn wake(&self) {
        drop(lock(&self.state));
        self.changed.notify_all();
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("waiting", &st.waiting)
            .field("broken", &st.broken)
            .finish()
    }
}
