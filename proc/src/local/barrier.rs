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

/// A barrier for a number of parties (`threading.Barrier`, without its
/// action). A waiter that times out or is cancelled breaks it, as
/// CPython's does, so that the others do not wait forever.
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
        let mut st = lock(&self.state);
        if st.broken {
            return Err(Refused::BrokenBarrier);
        }
        let index = st.waiting;
        st.waiting += 1;
        if st.waiting == self.parties {
            st.end_generation(true);
            drop(st);
            self.changed.notify_all();
            return Ok(index);
        }
        let generation = st.generation.clone();
        let (mut st, r) = wait_on(&self.changed, st, wait, |s| {
            if let Some(&passed) = generation.get() {
                Some(passed)
            } else if s.broken {
                s.waiting = s.waiting.saturating_sub(1);
                Some(false)
            } else {
                None
            }
        });
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
