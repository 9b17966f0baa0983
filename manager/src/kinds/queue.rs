//! A shared `queue.Queue` and its joinable variant: their requests, their
//! proxies and their server side (one kind of object).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::Payload;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Failure, Reply, Request, Wait};
use crate::proxy::{Reference, count, enc, flag, ok, one, proxy_handle};
use crate::server::object::{Call, Handler, Object, Waitable, Waited, fail};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Put(Bytes, Wait),
    Get(Wait),
    Qsize,
    Full,
    TaskDone,
    Join(Wait),
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

struct State {
    items: VecDeque<Bytes>,
    maxsize: u64,
    /// Items put and not yet marked done, for a joinable queue.
    unfinished: Option<u64>,
}

/// A queue in the server, of encoded items.
pub(crate) struct Queue(Waitable<State>);

impl Queue {
    pub(crate) fn new(maxsize: u64, joinable: bool) -> Queue {
        Queue(Waitable::new(State {
            items: VecDeque::new(),
            maxsize,
            unfinished: joinable.then_some(0),
        }))
    }
}

impl Object for Queue {}

impl Handler<Op> for Queue {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let q = &self.0;
        let guard = q.lock();
        let reply = match op {
            Op::Put(item, wait) => {
                let mut item = Some(item);
                let (_g, w) = q.wait_until(guard, call.client, wait, |q| {
                    if q.maxsize != 0 && q.items.len() as u64 >= q.maxsize {
                        return None;
                    }
                    q.items.extend(item.take());
                    if let Some(n) = &mut q.unfinished {
                        *n += 1;
                    }
                    Some(())
                });
                match w {
                    Waited::Ready(()) => Reply::Ok,
                    _ => fail(Failure::Full),
                }
            }
            Op::Get(wait) => {
                let (_g, w) = q.wait_until(guard, call.client, wait, |q| q.items.pop_front());
                match w {
                    Waited::Ready(item) => {
                        // The item goes back to the front if the client
                        // does not get it.
                        let this = self.clone();
                        call.on_lost(move |reply| {
                            if let Reply::Maybe(Some(item)) = reply {
                                this.0.change(|q| q.items.push_front(item));
                            }
                        });
                        Reply::Maybe(Some(item))
                    }
                    _ => fail(Failure::Empty),
                }
            }
            Op::Qsize => return Reply::Count(guard.items.len() as u64),
            Op::Full => {
                return Reply::Bool(guard.maxsize > 0 && guard.items.len() as u64 >= guard.maxsize);
            }
            Op::TaskDone => {
                let mut guard = guard;
                match &mut guard.unfinished {
                    Some(0) => fail(Failure::TaskDoneTooManyTimes),
                    Some(n) => {
                        *n -= 1;
                        Reply::Ok
                    }
                    None => not_joinable(),
                }
            }
            Op::Join(wait) => {
                if guard.unfinished.is_none() {
                    return not_joinable();
                }
                let (_g, w) = q.wait_until(guard, call.client, wait, |q| {
                    (q.unfinished == Some(0)).then_some(())
                });
                match w {
                    Waited::Ready(()) => Reply::Ok,
                    _ => fail(Failure::Timeout),
                }
            }
        };
        q.changed();
        reply
    }
}

fn not_joinable() -> Reply {
    fail(Failure::Remote(
        "a Queue has no task_done or join (a JoinableQueue has)".into(),
    ))
}
