//! The synchronization primitives on threads, with the names, methods and
//! errors of mp-proc's: `Lock`, `RLock`, `Condition`, `Semaphore`,
//! `BoundedSemaphore`, `Event`, `Barrier`, `Value`, `Array`.

use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use mp_proc::plumbing::deadline_after;
use mp_proc::{Error, Result};

use crate::registry::handle;

/// Locks `m`, whether or not a thread panicked holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until `ready(state)` or `until` passes; returns the guard
/// and whether `ready` held.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    mut g: MutexGuard<'a, T>,
    until: Option<Instant>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if ready(&mut g) {
            return (g, true);
        }
        match until {
            None => g = cv.wait(g).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (g, false);
                }
                g = cv
                    .wait_timeout(g, d - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

struct LockState {
    owner: Option<ThreadId>,
    depth: usize,
}

pub(crate) struct LockInner {
    state: Mutex<LockState>,
    free: Condvar,
    reentrant: bool,
}

impl LockInner {
    fn new(reentrant: bool) -> Arc<LockInner> {
        Arc::new(LockInner {
            state: Mutex::new(LockState {
                owner: None,
                depth: 0,
            }),
            free: Condvar::new(),
            reentrant,
        })
    }

    fn what(&self) -> &'static str {
        if self.reentrant { "RLock" } else { "Lock" }
    }

    /// Takes the lock for this thread; false if `until` passed first. A
    /// `Lock` its holder takes again with no deadline would wait forever:
    /// `WouldDeadlock`.
    fn take(&self, until: Option<Instant>) -> Result<bool> {
        let me = std::thread::current().id();
        let mut g = lock(&self.state);
        if g.owner == Some(me) {
            if self.reentrant {
                g.depth += 1;
                return Ok(true);
            }
            if until.is_none() {
                return Err(Error::WouldDeadlock);
            }
        }
        let (mut g, got) = wait_until(&self.free, g, until, |s| s.owner.is_none());
        if got {
            g.owner = Some(me);
            g.depth = 1;
        }
        Ok(got)
    }

    /// One release by this thread.
    fn give(&self) -> Result<()> {
        let mut g = lock(&self.state);
        if g.owner != Some(std::thread::current().id()) {
            return Err(Error::NotHeld { what: self.what() });
        }
        g.depth -= 1;
        if g.depth == 0 {
            g.owner = None;
            drop(g);
            self.free.notify_one();
        }
        Ok(())
    }

    /// Releases every level this thread holds; returns how many.
    fn give_all(&self) -> Result<usize> {
        let mut g = lock(&self.state);
        if g.owner != Some(std::thread::current().id()) {
            return Err(Error::NotHeld { what: self.what() });
        }
        let depth = std::mem::take(&mut g.depth);
        g.owner = None;
        drop(g);
        self.free.notify_one();
        Ok(depth)
    }

    /// Takes the lock again at `depth` (after a condition's wait).
    fn retake(&self, depth: usize) {
        let (mut g, _) = wait_until(&self.free, lock(&self.state), None, |s| s.owner.is_none());
        g.owner = Some(std::thread::current().id());
        g.depth = depth;
    }
}

/// Holds a [`Lock`] or an [`RLock`] (one level) until dropped, as Python's
/// `with lock:`.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a LockInner,
    /// Released by the thread that holds it.
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.give();
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

macro_rules! lock_type {
    ($name:ident, $reentrant:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name {
            inner: Arc<LockInner>,
        }

        handle!($name);

        impl $name {
            /// A new lock, not held.
            pub fn new() -> Result<$name> {
                Ok($name {
                    inner: LockInner::new($reentrant),
                })
            }

            fn guard(&self) -> LockGuard<'_> {
                LockGuard {
                    lock: &self.inner,
                    _not_send: PhantomData,
                }
            }

            /// Waits for the lock; it is released when the guard is dropped.
            pub fn acquire(&self) -> Result<LockGuard<'_>> {
                self.inner.take(None)?;
                Ok(self.guard())
            }

            /// Takes the lock if it is free now.
            pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
                Ok(self.inner.take(Some(Instant::now()))?.then(|| self.guard()))
            }

            /// Waits at most `timeout`; `None` if the lock did not come free.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
                let until = deadline_after(timeout);
                Ok(self.inner.take(until)?.then(|| self.guard()))
            }

            /// Releases one level held by this thread (for a guard given up
            /// with `std::mem::forget`); [`Error::NotHeld`] otherwise.
            pub fn release(&self) -> Result<()> {
                self.inner.give()
            }
        }
    };
}

lock_type!(
    Lock,
    false,
    "A lock for threads (`threading.Lock`, with mp-proc's rules: only its holder releases it, and taking it twice from one thread is `Error::WouldDeadlock`, not a hang).\n\n```\nlet lock = mp_dummy::Lock::new()?;\nlet held = lock.acquire()?;\nassert!(lock.acquire().is_err()); // would deadlock\ndrop(held);\n# Ok::<(), mp_proc::Error>(())\n```"
);
lock_type!(
    RLock,
    true,
    "A re-entrant lock for threads (`threading.RLock`).\n\n```\nlet lock = mp_dummy::RLock::new()?;\nlet a = lock.acquire()?;\nlet b = lock.acquire()?;\ndrop((b, a));\n# Ok::<(), mp_proc::Error>(())\n```"
);

struct CondState {
    waiters: VecDeque<u64>,
    notified: HashSet<u64>,
    next: u64,
}

pub(crate) struct ConditionInner {
    lock: Lock,
    state: Mutex<CondState>,
    changed: Condvar,
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
        Ok(Condition {
            inner: Arc::new(ConditionInner {
                lock: match lock {
                    Some(l) => l,
                    None => Lock::new()?,
                },
                state: Mutex::new(CondState {
                    waiters: VecDeque::new(),
                    notified: HashSet::new(),
                    next: 0,
                }),
                changed: Condvar::new(),
            }),
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
        self.wait_until(guard, deadline_after(timeout))
    }

    fn wait_until<'a>(
        &self,
        guard: LockGuard<'a>,
        until: Option<Instant>,
    ) -> Result<(LockGuard<'a>, bool)> {
        let held = guard.lock;
        // Registered before the lock is released: no notification is lost.
        let mut st = lock(&self.inner.state);
        let ticket = st.next;
        st.next += 1;
        st.waiters.push_back(ticket);
        let depth = match held.give_all() {
            Ok(d) => d,
            Err(e) => {
                st.waiters.retain(|t| *t != ticket);
                return Err(e);
            }
        };
        std::mem::forget(guard);
        let (mut st, notified) = wait_until(&self.inner.changed, st, until, |s| {
            s.notified.remove(&ticket)
        });
        if !notified {
            st.waiters.retain(|t| *t != ticket);
        }
        drop(st);
        held.retake(depth);
        Ok((
            LockGuard {
                lock: held,
                _not_send: PhantomData,
            },
            notified,
        ))
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
        let mut st = lock(&self.inner.state);
        for _ in 0..n {
            match st.waiters.pop_front() {
                Some(t) => {
                    st.notified.insert(t);
                }
                None => break,
            }
        }
        drop(st);
        self.inner.changed.notify_all();
        Ok(())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        let mut st = lock(&self.inner.state);
        let all: Vec<u64> = st.waiters.drain(..).collect();
        st.notified.extend(all);
        drop(st);
        self.inner.changed.notify_all();
        Ok(())
    }
}

pub(crate) struct SemaphoreInner {
    value: Mutex<usize>,
    changed: Condvar,
    bound: Option<usize>,
}

macro_rules! semaphore_type {
    ($name:ident, $bounded:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name {
            inner: Arc<SemaphoreInner>,
        }

        handle!($name);

        impl $name {
            /// A semaphore of `value` units.
            pub fn new(value: usize) -> Result<$name> {
                Ok($name {
                    inner: Arc::new(SemaphoreInner {
                        value: Mutex::new(value),
                        changed: Condvar::new(),
                        bound: $bounded.then_some(value),
                    }),
                })
            }

            fn take(&self, until: Option<Instant>) -> bool {
                let (mut v, got) =
                    wait_until(&self.inner.changed, lock(&self.inner.value), until, |v| {
                        *v > 0
                    });
                if got {
                    *v -= 1;
                }
                got
            }

            /// Waits for a unit and takes it.
            pub fn acquire(&self) -> Result<()> {
                self.take(None);
                Ok(())
            }

            /// Takes a unit if there is one now.
            pub fn try_acquire(&self) -> Result<bool> {
                Ok(self.take(Some(Instant::now())))
            }

            /// Waits at most `timeout` for a unit.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                Ok(self.take(deadline_after(timeout)))
            }

            /// Gives a unit back.
            pub fn release(&self) -> Result<()> {
                let mut v = lock(&self.inner.value);
                if let Some(bound) = self.inner.bound
                    && *v >= bound
                {
                    return Err(Error::TooManyReleases { bound });
                }
                *v += 1;
                drop(v);
                self.inner.changed.notify_one();
                Ok(())
            }

            /// The units free now.
            pub fn value(&self) -> usize {
                *lock(&self.inner.value)
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

pub(crate) struct EventInner {
    flag: Mutex<bool>,
    changed: Condvar,
}

/// An event for threads (`threading.Event`).
///
/// ```
/// let e = mp_dummy::Event::new()?;
/// e.set();
/// assert!(e.wait(None)?);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Event {
    inner: Arc<EventInner>,
}

handle!(Event);

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            inner: Arc::new(EventInner {
                flag: Mutex::new(false),
                changed: Condvar::new(),
            }),
        })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *lock(&self.inner.flag) = true;
        self.inner.changed.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        *lock(&self.inner.flag) = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *lock(&self.inner.flag)
    }

    /// Waits until the flag is set, for at most `timeout` (`None`: forever);
    /// returns the flag.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let until = timeout.and_then(deadline_after);
        let (_g, set) = wait_until(&self.inner.changed, lock(&self.inner.flag), until, |f| *f);
        Ok(set)
    }
}

struct BarrierState {
    waiting: usize,
    generation: u64,
    broken: bool,
    /// A generation ended by `reset`: its waiters fail.
    reset: Option<u64>,
}

pub(crate) struct BarrierInner {
    parties: usize,
    timeout: Option<Duration>,
    state: Mutex<BarrierState>,
    changed: Condvar,
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
        if parties == 0 {
            return Err(Error::Invalid {
                what: "Barrier",
                reason: "a barrier needs at least one party".into(),
            });
        }
        Ok(Barrier {
            inner: Arc::new(BarrierInner {
                parties,
                timeout,
                state: Mutex::new(BarrierState {
                    waiting: 0,
                    generation: 0,
                    broken: false,
                    reset: None,
                }),
                changed: Condvar::new(),
            }),
        })
    }

    /// Waits for every party; returns this caller's index, `0..parties`.
    pub fn wait(&self) -> Result<usize> {
        self.wait_until(self.inner.timeout.and_then(deadline_after))
    }

    /// As [`wait`](Self::wait), for at most `timeout` (a timeout breaks it).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_until(deadline_after(timeout))
    }

    fn wait_until(&self, until: Option<Instant>) -> Result<usize> {
        let mut st = lock(&self.inner.state);
        if st.broken {
            return Err(Error::BrokenBarrier);
        }
        let index = st.waiting;
        st.waiting += 1;
        if st.waiting == self.inner.parties {
            st.generation += 1;
            st.waiting = 0;
            drop(st);
            self.inner.changed.notify_all();
            return Ok(index);
        }
        let generation = st.generation;
        let (mut st, ended) = wait_until(&self.inner.changed, st, until, |s| {
            s.generation != generation || s.broken
        });
        if ended && st.generation != generation {
            return if st.reset == Some(generation) {
                Err(Error::BrokenBarrier)
            } else {
                Ok(index)
            };
        }
        // Broken while waiting, or timed out (which breaks it).
        st.broken = true;
        st.waiting = st.waiting.saturating_sub(1);
        drop(st);
        self.inner.changed.notify_all();
        Err(Error::BrokenBarrier)
    }

    /// Breaks the barrier: waiters get `BrokenBarrier`.
    pub fn abort(&self) -> Result<()> {
        lock(&self.inner.state).broken = true;
        self.inner.changed.notify_all();
        Ok(())
    }

    /// Makes it whole again; current waiters get `BrokenBarrier`.
    pub fn reset(&self) -> Result<()> {
        let mut st = lock(&self.inner.state);
        if st.waiting > 0 {
            st.reset = Some(st.generation);
            st.generation += 1;
            st.waiting = 0;
        }
        st.broken = false;
        drop(st);
        self.inner.changed.notify_all();
        Ok(())
    }

    /// Whether it is broken.
    pub fn broken(&self) -> bool {
        lock(&self.inner.state).broken
    }

    /// How many wait now.
    pub fn n_waiting(&self) -> usize {
        lock(&self.inner.state).waiting
    }

    /// How many parties it needs.
    pub fn parties(&self) -> usize {
        self.inner.parties
    }
}

/// A value shared by threads (`multiprocessing.dummy`'s `Value`).
///
/// ```
/// let v = mp_dummy::Value::new(1u32)?;
/// v.set(2);
/// assert_eq!(v.update(|x| *x += 1)?, 3);
/// assert_eq!(v.get(), 3);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Value<T> {
    inner: Arc<Mutex<T>>,
}

handle!(Value<T>);

impl<T: Clone> Value<T> {
    /// A new shared value.
    pub fn new(v: T) -> Result<Value<T>> {
        Ok(Value {
            inner: Arc::new(Mutex::new(v)),
        })
    }

    /// The value.
    pub fn get(&self) -> T {
        lock(&self.inner).clone()
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        *lock(&self.inner) = v;
    }

    /// Changes the value with `f` under its lock; returns the new value
    /// (Python's `with v.get_lock(): v.value += 1`).
    pub fn update(&self, f: impl FnOnce(&mut T)) -> Result<T> {
        let mut g = lock(&self.inner);
        f(&mut g);
        Ok(g.clone())
    }
}

/// A fixed-length array shared by threads (`Array`).
///
/// ```
/// let a = mp_dummy::Array::from_slice(&[1, 2, 3])?;
/// a.set(0, 10)?;
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// assert!(a.set(3, 0).is_err());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Array<T> {
    inner: Arc<Mutex<Vec<T>>>,
}

handle!(Array<T>);

impl<T: Clone> Array<T> {
    /// `len` default values.
    pub fn new(len: usize) -> Result<Array<T>>
    where
        T: Default,
    {
        Self::from_slice(&vec![T::default(); len])
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        Ok(Array {
            inner: Arc::new(Mutex::new(values.to_vec())),
        })
    }

    /// Its length.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Whether it has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<T> {
        lock(&self.inner).get(i).cloned()
    }

    /// Sets element `i`; an index out of range is an error.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        let mut items = lock(&self.inner);
        let len = items.len();
        match items.get_mut(i) {
            Some(slot) => {
                *slot = v;
                Ok(())
            }
            None => Err(Error::Index {
                what: "Array",
                index: i,
                len,
            }),
        }
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        lock(&self.inner).clone()
    }
}
