//! `Queue`, `SimpleQueue` and `JoinableQueue` on threads: mp-proc's
//! in-process queue (`mp_proc::plumbing::local::Queue`). Items move, never
//! encoded, so they need not be serializable.

use std::sync::Arc;
use std::time::Duration;

use mp_proc::Result;
use mp_proc::plumbing::local::{self, Wait};

use crate::registry::handle;

macro_rules! queue_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<T> {
            inner: Arc<local::Queue<T>>,
        }

        handle!($name<T>);

        impl<T> $name<T> {
            /// An unbounded queue.
            pub fn new() -> Result<Self> {
                Self::with_maxsize(0)
            }

            /// A queue of at most `maxsize` items (0: unbounded).
            pub fn with_maxsize(maxsize: usize) -> Result<Self> {
                Ok(Self {
                    inner: Arc::new(local::Queue::new(maxsize)),
                })
            }

            /// As mp-proc's, a queue of at most `maxsize` items; `bytes`
            /// limits nothing here: items are moved, never encoded.
            pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Self> {
                let _ = bytes;
                Self::with_maxsize(maxsize)
            }

            fn wait<R>(&self, r: std::result::Result<R, local::Refused>) -> Result<R> {
                r.map_err(|e| e.into_error(stringify!($name)))
            }

            /// Puts `item` at the end, waiting for room in a bounded queue.
            pub fn put(&self, item: T) -> Result<()> {
                self.wait(self.inner.put(item, &Wait::forever()))
            }

            /// As [`put`](Self::put), waiting at most `timeout` ([`Error::Full`](mp_proc::Error::Full) then).
            pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
                self.wait(self.inner.put(item, &Wait::timeout(timeout)))
            }

            /// Puts `item` only if there is room now ([`Error::Full`](mp_proc::Error::Full) otherwise).
            pub fn try_put(&self, item: T) -> Result<()> {
                self.wait(self.inner.put(item, &Wait::now()))
            }

            /// Takes the oldest item, waiting for one ([`Error::Closed`](mp_proc::Error::Closed)
            /// once a closed queue is drained).
            pub fn get(&self) -> Result<T> {
                self.wait(self.inner.get(&Wait::forever()))
            }

            /// As [`get`](Self::get), waiting at most `timeout` ([`Error::Empty`](mp_proc::Error::Empty) then).
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                self.wait(self.inner.get(&Wait::timeout(timeout)))
            }

            /// Takes the oldest item if there is one now ([`Error::Empty`](mp_proc::Error::Empty) otherwise).
            pub fn try_get(&self) -> Result<T> {
                self.wait(self.inner.get(&Wait::now()))
            }

            /// The number of items.
            pub fn qsize(&self) -> usize {
                self.inner.qsize()
            }

            /// Whether it has no item.
            pub fn empty(&self) -> bool {
                self.inner.is_empty()
            }

            /// Whether a bounded queue has `maxsize` items.
            pub fn full(&self) -> bool {
                self.inner.is_full()
            }

            /// Closes it: puts fail with [`Error::Closed`](mp_proc::Error::Closed); gets drain what is
            /// left, then fail.
            pub fn close(&self) {
                self.inner.close()
            }

            /// Whether it was closed.
            pub fn is_closed(&self) -> bool {
                self.inner.is_closed()
            }

            /// The largest item it takes, as mp-proc's: any (`usize::MAX`),
            /// as items are moved, never encoded.
            pub fn max_item_size(&self) -> usize {
                usize::MAX
            }
        }
    };
}

queue_type!(
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
    Queue
);

queue_type!(
    /// A queue without the extras, as mp-proc's `SimpleQueue` (the same
    /// methods as [`Queue`]).
    ///
    /// ```
    /// let q = mp_dummy::SimpleQueue::new()?;
    /// q.put("a")?;
    /// assert_eq!(q.get()?, "a");
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    SimpleQueue
);

queue_type!(
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
    JoinableQueue
);

impl<T> JoinableQueue<T> {
    /// One item taken is done ([`Error::TaskDoneTooManyTimes`](mp_proc::Error::TaskDoneTooManyTimes) if none is pending).
    pub fn task_done(&self) -> Result<()> {
        self.wait(self.inner.task_done())
    }

    /// Waits until every item put is done.
    pub fn join(&self) -> Result<()> {
        self.wait(self.inner.join(&Wait::forever()))
    }

    /// As [`join`](Self::join), for at most `timeout` ([`Error::Timeout`](mp_proc::Error::Timeout) then).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait(self.inner.join(&Wait::timeout(timeout)))
    }
}
