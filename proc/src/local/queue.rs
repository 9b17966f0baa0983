//! [`Queue`]: a FIFO of items moved between threads (`queue.Queue`), with
//! an optional `maxsize`, `close`, and `task_done`/`join`.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::{Refused, Wait, wait_on};
use crate::plumbing::lock;

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Items put and not yet marked done.
    unfinished: usize,
}

/// A FIFO queue; items are moved, never encoded.
///
/// ```
/// use mp_proc::plumbing::local::{Queue, Refused, Wait};
///
/// let q = Queue::new(1);
/// q.put("a", &Wait::forever())?;
/// assert_eq!(q.put("b", &Wait::now()), Err(Refused::Full));
/// assert_eq!(q.get(&Wait::forever())?, "a");
/// q.task_done()?;
/// q.join(&Wait::now())?;
/// # Ok::<(), Refused>(())
/// ```
pub struct Queue<T> {
    state: Mutex<State<T>>,
    /// An item arrived (or the queue closed): wakes a getter.
    item: Condvar,
    /// Room freed (or the queue closed): wakes a putter.
    room: Condvar,
    /// Every item put is done: wakes every `join`.
    done: Condvar,
    maxsize: usize,
}

impl<T> Queue<T> {
    /// A queue of at most `maxsize` items (0: unbounded).
    pub fn new(maxsize: usize) -> Queue<T> {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                unfinished: 0,
            }),
            item: Condvar::new(),
            room: Condvar::new(),
            done: Condvar::new(),
            maxsize,
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }

    /// Puts `item` at the end, waiting for room in a bounded queue:
    /// [`Refused::Full`] when the deadline passes, [`Refused::Closed`] once
    /// closed (the item is dropped then).
    pub fn put(&self, item: T, wait: &Wait<'_>) -> Result<(), Refused> {
        let max = self.maxsize;
        let (mut st, r) = wait_on(&self.room, self.state(), wait, |s| {
            (s.closed || max == 0 || s.items.len() < max).then_some(())
        });
        r.map_err(|e| e.or(Refused::Full))?;
        if st.closed {
            return Err(Refused::Closed);
        }
        st.unfinished = st.unfinished.checked_add(1).ok_or(Refused::Overflow)?;
        st.items.push_back(item);
        drop(st);
        self.item.notify_one();
        Ok(())
    }

    /// Takes the oldest item, waiting for one: [`Refused::Empty`] when the
    /// deadline passes, [`Refused::Closed`] once closed and drained.
    pub fn get(&self, wait: &Wait<'_>) -> Result<T, Refused> {
        let (st, r) = wait_on(&self.item, self.state(), wait, |s| {
            match s.items.pop_front() {
                Some(item) => Some(Ok(item)),
                None if s.closed => Some(Err(Refused::Closed)),
                None => None,
            }
        });
        drop(st);
        let item = r.map_err(|e| e.or(Refused::Empty))??;
        if self.maxsize > 0 {
            self.room.notify_one();
        }
        Ok(item)
    }

    /// Puts back at the front an item a `get` took for a caller that never
    /// got it (its client hung up); it is still pending for `join`.
    pub fn put_back(&self, item: T) {
        self.state().items.push_front(item);
        self.item.notify_one();
    }

    /// One item taken is done: [`Refused::TaskDoneTooManyTimes`] if none
    /// is pending.
    pub fn task_done(&self) -> Result<(), Refused> {
        let mut st = self.state();
        st.unfinished = st
            .unfinished
            .checked_sub(1)
            .ok_or(Refused::TaskDoneTooManyTimes)?;
        if st.unfinished == 0 {
            drop(st);
            self.done.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put is done: [`Refused::Timeout`] when the
    /// deadline passes.
    pub fn join(&self, wait: &Wait<'_>) -> Result<(), Refused> {
        let (_st, r) = wait_on(&self.done, self.state(), wait, |s| {
            (s.unfinished == 0).then_some(())
        });
        r.map_err(|e| e.or(Refused::Timeout))
    }

    /// The number of items.
    pub fn qsize(&self) -> usize {
        self.state().items.len()
    }

    /// Whether it has no item.
    pub fn is_empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue has `maxsize` items.
    pub fn is_full(&self) -> bool {
        self.maxsize > 0 && self.qsize() >= self.maxsize
    }

    /// Its bound (0: unbounded).
    pub fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// Closes it: puts are refused; gets drain what is left, then are
    /// refused. Every waiting put and get wakes.
    pub fn close(&self) {
        self.state().closed = true;
        self.wake();
    }

    /// Whether it was closed.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Makes every waiter run its cancel check now.
    pub fn wake(&self) {
        drop(self.state());
        self.item.notify_all();
        self.room.notify_all();
        self.done.notify_all();
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Queue")
            .field("len", &st.items.len())
            .field("maxsize", &self.maxsize)
            .field("closed", &st.closed)
            .field("unfinished", &st.unfinished)
            .finish()
    }
}
