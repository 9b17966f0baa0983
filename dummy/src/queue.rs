//! `Queue` and `JoinableQueue` on threads: items move, never encoded, so
//! they need not be serializable.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mp_proc::plumbing::deadline_after;
use mp_proc::{Error, Result};

use crate::registry::handle;
use crate::sync::wait_until;

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Items put and not yet marked done.
    unfinished: usize,
}

pub(crate) struct Inner<T> {
    state: Mutex<State<T>>,
    /// An item arrived (or the queue closed): wakes one getter.
    item: Condvar,
    /// Room freed (or the queue closed): wakes one putter.
    room: Condvar,
    /// Every item put is done: wakes every `join`.
    done: Condvar,
    maxsize: usize,
}

impl<T> Inner<T> {
    fn new(maxsize: usize) -> Arc<Inner<T>> {
        Arc::new(Inner {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                unfinished: 0,
            }),
            item: Condvar::new(),
            room: Condvar::new(),
            done: Condvar::new(),
            maxsize,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, item: T, until: Option<Instant>) -> Result<()> {
        let max = self.maxsize;
        let (mut st, room) = wait_until(&self.room, self.lock(), until, |s| {
            s.closed || max == 0 || s.items.len() < max
        });
        if st.closed {
            return Err(Error::Closed);
        }
        if !room {
            return Err(Error::Full);
        }
        st.items.push_back(item);
        st.unfinished += 1;
        drop(st);
        self.item.notify_one();
        Ok(())
    }

    fn get(&self, until: Option<Instant>) -> Result<T> {
        let (mut st, _) = wait_until(&self.item, self.lock(), until, |s| {
            !s.items.is_empty() || s.closed
        });
        match st.items.pop_front() {
            Some(item) => {
                drop(st);
                if self.maxsize > 0 {
                    self.room.notify_one();
                }
                Ok(item)
            }
            None if st.closed => Err(Error::Closed),
            None => Err(Error::Empty),
        }
    }
}

/// The methods both queues share.
macro_rules! queue_methods {
    () => {
        /// An unbounded queue.
        pub fn new() -> Result<Self> {
            Self::with_maxsize(0)
        }

        /// A queue of at most `maxsize` items (0: unbounded).
        pub fn with_maxsize(maxsize: usize) -> Result<Self> {
            Ok(Self {
                inner: Inner::new(maxsize),
            })
        }

        /// Puts `item` at the end, waiting for room in a bounded queue.
        pub fn put(&self, item: T) -> Result<()> {
            self.inner.put(item, None)
        }

        /// As [`put`](Self::put), waiting at most `timeout` ([`Error::Full`] then).
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
            self.inner.put(item, deadline_after(timeout))
        }

        /// Puts `item` only if there is room now ([`Error::Full`] otherwise).
        pub fn try_put(&self, item: T) -> Result<()> {
            self.inner.put(item, Some(Instant::now()))
        }

        /// Takes the oldest item, waiting for one ([`Error::Closed`] once a
        /// closed queue is drained).
        pub fn get(&self) -> Result<T> {
            self.inner.get(None)
        }

        /// As [`get`](Self::get), waiting at most `timeout` ([`Error::Empty`] then).
        pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
            self.inner.get(deadline_after(timeout))
        }

        /// Takes the oldest item if there is one now ([`Error::Empty`] otherwise).
        pub fn try_get(&self) -> Result<T> {
            self.inner.get(Some(Instant::now()))
        }

        /// The number of items.
        pub fn qsize(&self) -> usize {
            self.inner.lock().items.len()
        }

        /// Whether it has no item.
        pub fn empty(&self) -> bool {
            self.qsize() == 0
        }

        /// Whether a bounded queue has `maxsize` items.
        pub fn full(&self) -> bool {
            self.inner.maxsize > 0 && self.qsize() >= self.inner.maxsize
        }

        /// Closes it: puts fail with [`Error::Closed`]; gets drain what is
        /// left, then fail.
        pub fn close(&self) {
            self.inner.lock().closed = true;
            self.inner.item.notify_all();
            self.inner.room.notify_all();
        }

        /// Whether it was closed.
        pub fn is_closed(&self) -> bool {
            self.inner.lock().closed
        }
    };
}

/// A FIFO queue for threads (`queue.Queue`, as `multiprocessing.dummy`'s).
///
/// Items are moved, never encoded: a closure can go through.
///
/// ```
/// let q = mp_dummy::Queue::<Box<dyn FnOnce() -> u32 + Send>>::new()?;
/// let q2 = q.clone();
/// std::thread::spawn(move || q2.put(Box::new(|| 7)).unwrap());
/// assert_eq!(q.get()?(), 7);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

handle!(Queue<T>);

impl<T> Queue<T> {
    queue_methods!();
}

/// A queue with `task_done` and `join` (`JoinableQueue`).
///
/// ```
/// let q = mp_dummy::JoinableQueue::new()?;
/// q.put(1)?;
/// q.get()?;
/// q.task_done()?;
/// q.join()?;
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct JoinableQueue<T> {
    inner: Arc<Inner<T>>,
}

handle!(JoinableQueue<T>);

impl<T> JoinableQueue<T> {
    queue_methods!();

    /// One item taken is done ([`Error::TaskDoneTooManyTimes`] if none is pending).
    pub fn task_done(&self) -> Result<()> {
        let mut st = self.inner.lock();
        if st.unfinished == 0 {
            return Err(Error::TaskDoneTooManyTimes);
        }
        st.unfinished -= 1;
        if st.unfinished == 0 {
            drop(st);
            self.inner.done.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put is done.
    pub fn join(&self) -> Result<()> {
        let _ = wait_until(&self.inner.done, self.inner.lock(), None, |s| {
            s.unfinished == 0
        });
        Ok(())
    }

    /// As [`join`](Self::join), for at most `timeout` ([`Error::Timeout`] then).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let (_g, done) = wait_until(
            &self.inner.done,
            self.inner.lock(),
            deadline_after(timeout),
            |s| s.unfinished == 0,
        );
        if done { Ok(()) } else { Err(Error::Timeout) }
    }
}
