//! Queues: Python's `multiprocessing.Queue`, `SimpleQueue` and `JoinableQueue`.

mod ring;

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Payload;
use crate::error::{Error, Result};
use crate::spin::deadline_after;
use crate::sync::shared::Shared;
use crate::wire::payload;
use ring::{DEFAULT_CAPACITY, Ring};

thread_local! {
    /// Where `put` encodes, reused between calls.
    static ENCODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encodes `item` and hands the bytes to `f`.
fn encoded<T: serde::Serialize>(item: &T, f: impl FnOnce(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf = ENCODE.with(|b| std::mem::take(&mut *b.borrow_mut()));
    buf.clear();
    let mut buf = payload::encode_into(item, buf)?;
    let r = f(&buf);
    if buf.capacity() <= 1 << 16 {
        buf.clear();
        ENCODE.with(|b| *b.borrow_mut() = buf);
    }
    r
}

macro_rules! queue {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $joinable:literal) => {
        $(#[$doc])*
        pub struct $ty<T> {
            ring: Ring,
            _t: PhantomData<fn(T) -> T>,
        }

        impl<T: Payload> $ty<T> {
            /// A queue with no limit on the number of items (its bytes are
            /// limited to 1 GiB queued at once).
            pub fn new() -> Result<$ty<T>> {
                $ty::with_capacity(0, DEFAULT_CAPACITY as usize)
            }

            /// A queue of at most `maxsize` items (`0`: no limit), Python's
            /// `Queue(maxsize)`.
            pub fn with_maxsize(maxsize: usize) -> Result<$ty<T>> {
                $ty::with_capacity(maxsize, DEFAULT_CAPACITY as usize)
            }

            /// A queue of at most `maxsize` items (`0`: no limit) and at most
            /// `bytes` of encoded items queued at once. An item may be at most
            /// half of `bytes` ([`Error::ItemTooLarge`] otherwise). The memory
            /// is taken as items come and given back as they go.
            pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<$ty<T>> {
                Ok($ty { ring: Ring::new(bytes as u64, maxsize)?, _t: PhantomData })
            }

            fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<()> {
                encoded(&item, |bytes| {
                    if $joinable {
                        self.ring.add_task();
                    }
                    let r = self.ring.put(bytes, deadline);
                    if $joinable && r.is_err() {
                        let _ = self.ring.task_done();
                    }
                    r
                })
            }

            /// Puts `item` at the end, waiting for room in a bounded queue.
            /// The item is encoded here, so one that cannot be is an error of
            /// this call (CPython's feeder thread drops it silently), and once
            /// `put` returns the item is in shared memory: it survives this
            /// process and never holds up its exit.
            pub fn put(&self, item: T) -> Result<()> {
                self.put_until(item, None)
            }

            /// As [`put`](Self::put), waiting at most `timeout` for room
            /// ([`Error::Full`] then).
            pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
                self.put_until(item, deadline_after(timeout))
            }

            /// Puts `item` only if there is room now ([`Error::Full`] otherwise).
            pub fn try_put(&self, item: T) -> Result<()> {
                self.put_until(item, Some(Instant::now()))
            }

            fn get_until(&self, deadline: Option<Instant>) -> Result<T> {
                self.ring.get(deadline, |bytes| payload::decode::<T>(bytes))?
            }

            /// Takes the oldest item, waiting for one. An item that does not
            /// decode is [`Error::Decode`]: it is consumed and the queue goes on.
            /// A closed queue, once drained, is [`Error::Closed`].
            pub fn get(&self) -> Result<T> {
                self.get_until(None)
            }

            /// As [`get`](Self::get), waiting at most `timeout` ([`Error::Empty`] then).
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                self.get_until(deadline_after(timeout))
            }

            /// Takes the oldest item if there is one now ([`Error::Empty`] otherwise).
            pub fn try_get(&self) -> Result<T> {
                self.get_until(Some(Instant::now()))
            }

            /// The number of items in the queue (exact when nothing moves).
            pub fn qsize(&self) -> usize {
                self.ring.len()
            }

            /// Whether the queue has no item.
            pub fn empty(&self) -> bool {
                self.ring.len() == 0
            }

            /// Whether a bounded queue has `maxsize` items.
            pub fn full(&self) -> bool {
                let max = self.ring.maxsize();
                max > 0 && self.ring.len() >= max
            }

            /// Closes the queue for every process that shares it: puts fail
            /// with [`Error::Closed`], gets drain what is left and then fail,
            /// and getters blocked now wake with the error.
            pub fn close(&self) {
                self.ring.close()
            }

            /// Whether the queue was closed.
            pub fn is_closed(&self) -> bool {
                self.ring.is_closed()
            }

            /// The largest encoded item a put accepts.
            pub fn max_item_size(&self) -> usize {
                self.ring.max_item()
            }
        }

        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty { ring: self.ring.clone(), _t: PhantomData }
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct($what)
                    .field("qsize", &self.ring.len())
                    .field("closed", &self.ring.is_closed())
                    .finish()
            }
        }

        impl<T: 'static> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.ring.shared().serialize($what, crate::wire::handle::type_tag::<T>(), s)
            }
        }

        impl<'de, T: 'static> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let shared = Shared::deserialize($what, crate::wire::handle::type_tag::<T>(), d)?;
                let ring = Ring::from_shared(shared).map_err(serde::de::Error::custom)?;
                Ok($ty { ring, _t: PhantomData })
            }
        }
    };
}

queue!(
    /// A first-in first-out queue shared by processes, Python's
    /// `multiprocessing.Queue`: many producers and consumers, in any
    /// processes that have a clone of it (pass one in a child's `args`, or send
    /// one after start).
    ///
    /// Items live in shared memory, not in a feeder thread: `put` encodes the
    /// item and stores it before it returns, so an item that cannot be
    /// encoded is an error of `put`, an item put before its producer exits is
    /// never lost, and that producer's exit never waits for a reader (the two
    /// traps of CPython's queue).
    ///
    /// ```
    /// use mp_proc::{Process, Queue};
    ///
    /// fn produce(q: Queue<String>) {
    ///     for i in 0..3 {
    ///         q.put(format!("item {i}")).unwrap();
    ///     }
    /// }
    ///
    /// let q = Queue::new()?;
    /// let mut p = Process::new(produce, q.clone());
    /// p.start()?;
    /// assert_eq!(p.join()?, 0); // no deadlock: the items are already queued
    /// assert_eq!(q.get()?, "item 0");
    /// assert_eq!(q.qsize(), 2);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    Queue,
    "Queue",
    false
);

queue!(
    /// A queue without the extras, Python's `multiprocessing.SimpleQueue`
    /// (here it has the same methods and guarantees as [`Queue`]).
    SimpleQueue,
    "SimpleQueue",
    false
);

queue!(
    /// A [`Queue`] whose consumers mark items done, Python's
    /// `multiprocessing.JoinableQueue`: [`join`](JoinableQueue::join) waits
    /// until every item put has been marked with
    /// [`task_done`](JoinableQueue::task_done).
    ///
    /// ```
    /// let q = mp_proc::JoinableQueue::new()?;
    /// q.put(1u8)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// assert!(matches!(q.task_done(), Err(mp_proc::Error::TaskDoneTooManyTimes)));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    JoinableQueue,
    "JoinableQueue",
    true
);

impl<T: Payload> JoinableQueue<T> {
    /// Marks one item as done. More calls than items put is
    /// [`Error::TaskDoneTooManyTimes`].
    pub fn task_done(&self) -> Result<()> {
        self.ring.task_done()
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.ring.join(None).map(|_| ())
    }

    /// As [`join`](Self::join), for at most `timeout` ([`Error::Timeout`] then).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        match self.ring.join(deadline_after(timeout))? {
            true => Ok(()),
            false => Err(Error::Timeout),
        }
    }
}
