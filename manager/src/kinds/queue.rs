//! A shared `queue.Queue` and its joinable variant: their requests, their
//! proxies and their server side (one kind of object).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::Payload;
use mp_proc::plumbing::local::{self, Refused};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Failure, Reply, Request, Wait};
use crate::proxy::{Reference, count, enc, flag, ok, one, proxy_handle};
use crate::server::object::{Call, Handler, Object, fail};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Put(Bytes, Wait),
    Get(Wait),
    Qsize,
    Full,
    TaskDone,
    Join(Wait),
    Close,
}

/// A `queue.Queue` in the manager (Python's `Manager().Queue()`), with the
/// method names of `mp_proc::Queue`.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let q = m.queue::<String>()?;
/// q.put("hello".into())?;
/// assert_eq!(q.qsize()?, 1);
/// assert_eq!(q.get()?, "hello");
/// assert!(matches!(q.try_get(), Err(mp_manager::Error::Empty)));
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct QueueProxy<T> {
    inner: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(QueueProxy<T>);

impl<T: Payload> QueueProxy<T> {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Queue(self.inner.id, op))
    }

    fn put_wait(&self, item: &T, wait: Wait) -> Result<()> {
        ok(self.op(Op::Put(enc(item)?, wait))?)
    }

    fn get_wait(&self, wait: Wait) -> Result<T> {
        one(self.op(Op::Get(wait))?)
    }

    /// `q.put(item)`: waits for room in a bounded queue.
    pub fn put(&self, item: T) -> Result<()> {
        self.put_wait(&item, None)
    }

    /// `q.put(item, timeout=...)`: [`Error::Full`](crate::Error::Full)
    /// if there is no room in time.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.put_wait(&item, Some(timeout))
    }

    /// `q.put_nowait(item)`.
    pub fn try_put(&self, item: T) -> Result<()> {
        self.put_wait(&item, Some(Duration::ZERO))
    }

    /// `q.get()`: waits for an item. If this process dies while it
    /// waits, the item it would have got stays in the queue.
    pub fn get(&self) -> Result<T> {
        self.get_wait(None)
    }

    /// `q.get(timeout=...)`: [`Error::Empty`](crate::Error::Empty) if
    /// none comes in time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_wait(Some(timeout))
    }

    /// `q.get_nowait()`.
    pub fn try_get(&self) -> Result<T> {
        self.get_wait(Some(Duration::ZERO))
    }

    /// `q.qsize()`.
    pub fn qsize(&self) -> Result<usize> {
        count(self.op(Op::Qsize)?)
    }

    /// `q.empty()`.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// `q.full()`: whether a bounded queue has `maxsize` items.
    pub fn full(&self) -> Result<bool> {
        flag(self.op(Op::Full)?)
    }

    /// Closes the queue for every process that shares it, as
    /// [`mp_proc::Queue::close`]: puts fail with
    /// [`Error::Closed`](crate::Error::Closed), gets drain what is left and
    /// then fail, and getters blocked now wake with the error. (Python's
    /// `Manager().Queue()` is a `queue.Queue`, which has no `close`; this
    /// is `multiprocessing.Queue`'s, so that a manager's queue can stand in
    /// for one, as in a [`ClusterContext`](crate::ClusterContext).)
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let q = m.queue::<u32>()?;
    /// q.put(1)?;
    /// q.close()?;
    /// assert!(matches!(q.put(2), Err(mp_manager::Error::Closed)));
    /// assert_eq!(q.get()?, 1); // what was put is still there
    /// assert!(matches!(q.get(), Err(mp_manager::Error::Closed)));
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        ok(self.op(Op::Close)?)
    }
}

/// A `queue.Queue` with `task_done` and `join` (Python's
/// `Manager().JoinableQueue()`); a [`QueueProxy`]'s methods too.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let q = m.joinable_queue::<u32>()?;
/// q.put(1)?;
/// assert_eq!(q.get()?, 1);
/// q.task_done()?;
/// q.join()?; // every item put is done
/// assert!(q.task_done().is_err());
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct JoinableQueueProxy<T> {
    inner: QueueProxy<T>,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(JoinableQueueProxy<T>);

impl<T> Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;

    fn deref(&self) -> &QueueProxy<T> {
        &self.inner
    }
}

impl<T: Payload> JoinableQueueProxy<T> {
    /// `q.task_done()`: one item taken is done.
    pub fn task_done(&self) -> Result<()> {
        ok(self.op(Op::TaskDone)?)
    }

    /// `q.join()`: waits until every item put is done.
    pub fn join(&self) -> Result<()> {
        ok(self.op(Op::Join(None))?)
    }

    /// As [`join`](Self::join), for at most `timeout`
    /// ([`Error::Timeout`](crate::Error::Timeout) then).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        ok(self.op(Op::Join(Some(timeout)))?)
    }
}

impl crate::SyncManager {
    /// A new shared joinable queue of at most `maxsize` items, 0 for
    /// unbounded (Python's `Manager().JoinableQueue(maxsize)`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let q = m.joinable_queue_with_maxsize::<u32>(1)?;
    /// q.put(1)?;
    /// assert!(q.full()?);
    /// assert!(matches!(q.try_put(2), Err(mp_manager::Error::Full)));
    /// assert_eq!(q.get()?, 1);
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn joinable_queue_with_maxsize<T: Payload>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueueProxy<T>> {
        let kind = crate::protocol::Kind::Queue {
            maxsize: maxsize as u64,
            joinable: true,
        };
        Ok(crate::Proxy::from_reference(self.create(kind)?))
    }
}

/// A queue in the server, of encoded items: mp-proc's in-process queue.
pub(crate) struct Queue {
    items: local::Queue<Bytes>,
    /// Whether it has `task_done` and `join` (a `JoinableQueue`).
    joinable: bool,
}

impl Queue {
    pub(crate) fn new(maxsize: u64, joinable: bool) -> Queue {
        Queue {
            items: local::Queue::new(usize::try_from(maxsize).unwrap_or(usize::MAX)),
            joinable,
        }
    }
}

impl Object for Queue {}

impl Handler<Op> for Queue {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let q = &self.items;
        let refused = |r: Refused| {
            fail(match r {
                Refused::Full => Failure::Full,
                Refused::Empty => Failure::Empty,
                Refused::Timeout | Refused::Cancelled => Failure::Timeout,
                Refused::TaskDoneTooManyTimes => Failure::TaskDoneTooManyTimes,
                Refused::Closed => Failure::Closed,
                r => Failure::Remote(format!("queue: {r}")),
            })
        };
        match op {
            Op::Put(item, wait) => match call.waiting(wait, |w| q.put(item, w)) {
                Ok(()) => Reply::Ok,
                // A put given up (the client hung up) put nothing.
                Err(Refused::Cancelled) => fail(Failure::Full),
                Err(r) => refused(r),
            },
            Op::Get(wait) => match call.waiting(wait, |w| q.get(w)) {
                Ok(item) => {
                    // The item goes back to the front if the client does
                    // not get it.
                    let this = self.clone();
                    call.on_lost(move |reply| {
                        if let Reply::Maybe(Some(item)) = reply {
                            this.items.put_back(item);
                        }
                    });
                    Reply::Maybe(Some(item))
                }
                Err(Refused::Cancelled) => fail(Failure::Empty),
                Err(r) => refused(r),
            },
            Op::Qsize => Reply::Count(q.qsize() as u64),
            Op::Full => Reply::Bool(q.is_full()),
            Op::Close => {
                q.close();
                Reply::Ok
            }
            Op::TaskDone if self.joinable => q.task_done().map_or_else(refused, |()| Reply::Ok),
            Op::Join(wait) if self.joinable => call
                .waiting(wait, |w| q.join(w))
                .map_or_else(refused, |()| Reply::Ok),
            Op::TaskDone | Op::Join(_) => fail(Failure::Remote(
                "a Queue has no task_done or join (a JoinableQueue has)".into(),
            )),
        }
    }
}
