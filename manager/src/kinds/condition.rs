//! A shared `Condition` (its lock an `RLock`): its requests, its proxy and
//! its server side.

use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::kinds::lock::{Acquirer, LockState, ProxyGuard, acquire, acquire_wait, release};
use crate::link::thread_id;
use crate::protocol::{Failure, Reply, Request, SessionId, Thread, Wait};
use crate::proxy::{Reference, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, Owner, Waitable, Waited, fail};

/// A `Condition`'s operations (its lock is an `RLock`), for the calling thread.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Acquire(Wait),
    Release,
    Wait(Wait),
    Notify(u64),
    NotifyAll,
}

/// A `threading.Condition` in the manager, with an `RLock`; the methods of
/// `mp_proc::Condition`.
///
/// ```
/// use std::time::Duration;
/// let m = mp_manager::SyncManager::start()?;
/// let c = m.condition()?;
/// let held = c.acquire()?;
/// c.notify_all()?;
/// let (held, notified) = c.wait_timeout(held, Duration::from_millis(1))?;
/// assert!(!notified);
/// drop(held);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct ConditionProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(ConditionProxy);

impl Acquirer for ConditionProxy {
    fn acquire_request(id: u64, thread: Thread, wait: Wait) -> Request {
        Request::Condition(id, thread, Op::Acquire(wait))
    }

    fn release_request(id: u64, thread: Thread) -> Request {
        Request::Condition(id, thread, Op::Release)
    }
}

impl ConditionProxy {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner
            .call(&Request::Condition(self.inner.id, thread_id(), op))
    }

    /// `acquire()`: waits for the lock (at once if this thread holds it:
    /// one level more); it is released when the guard is dropped. If this
    /// process dies holding it, it is released.
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        acquire(self)
    }

    /// `acquire(blocking=False)`.
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        acquire_wait(self, Some(Duration::ZERO))
    }

    /// `acquire(timeout=...)`: `None` if the lock was not free in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<ProxyGuard<'_>>> {
        acquire_wait(self, Some(timeout))
    }

    /// `release()`: one level, by the owning thread.
    pub fn release(&self) -> Result<()> {
        release(self)
    }

    /// `wait()`: releases the lock, waits for a notification, and takes
    /// the lock again.
    pub fn wait<'a>(&self, guard: ProxyGuard<'a>) -> Result<ProxyGuard<'a>> {
        Ok(self.wait_until(guard, None)?.0)
    }

    /// `wait(timeout)`: the flag is false when the time ran out.
    pub fn wait_timeout<'a>(
        &self,
        guard: ProxyGuard<'a>,
        timeout: Duration,
    ) -> Result<(ProxyGuard<'a>, bool)> {
        self.wait_until(guard, Some(timeout))
    }

    fn wait_until<'a>(&self, guard: ProxyGuard<'a>, wait: Wait) -> Result<(ProxyGuard<'a>, bool)> {
        let notified = flag(self.op(Op::Wait(wait))?)?;
        Ok((guard, notified))
    }

    /// `wait_for(predicate, timeout)`: waits until `predicate()` is true
    /// (checked with the lock held), for at most `timeout` (`None`:
    /// forever); returns its last value.
    pub fn wait_for<'a>(
        &self,
        guard: ProxyGuard<'a>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(ProxyGuard<'a>, bool)> {
        mp_proc::plumbing::wait_for_with(guard, predicate, timeout, |g, until| {
            let left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            self.wait_until(g, left)
        })
    }

    /// `notify(n)`: wakes up to `n` waiters (the lock must be held).
    pub fn notify(&self, n: usize) -> Result<()> {
        ok(self.op(Op::Notify(n as u64))?)
    }

    /// `notify_all()`.
    pub fn notify_all(&self) -> Result<()> {
        ok(self.op(Op::NotifyAll)?)
    }
}

struct State {
    lock: LockState,
    waiters: VecDeque<u64>,
    notified: HashSet<u64>,
    next_ticket: u64,
}

/// A condition in the server.
pub(crate) struct Condition(Waitable<State>);

impl Condition {
    pub(crate) fn new() -> Condition {
        Condition(Waitable::new(State {
            lock: LockState::new(true),
            waiters: VecDeque::new(),
            notified: HashSet::new(),
            next_ticket: 0,
        }))
    }

    /// If the reply is lost, `who` releases the lock it took.
    fn release_if_lost(self: &Arc<Self>, who: Owner, call: &mut Call<'_>) {
        let this = self.clone();
        call.on_lost(move |_| this.0.change(|c| c.lock.release_all(who)));
    }

    /// `Condition.wait`: releases the lock, waits for a notification (or
    /// the timeout), and takes the lock again at its depth.
    fn wait(self: &Arc<Self>, who: Owner, wait: Wait, call: &mut Call<'_>) -> Reply {
        let c = &self.0;
        let mut guard = c.lock();
        if guard.lock.owner != Some(who) {
            return fail(Failure::NotHeld("Condition".into()));
        }
        let depth = guard.lock.depth;
        guard.lock.release_all(who);
        let ticket = guard.next_ticket;
        guard.next_ticket += 1;
        guard.waiters.push_back(ticket);
        c.changed();
        let (mut guard, w) = c.wait_until(guard, call.client, wait, |c| {
            c.notified.remove(&ticket).then_some(())
        });
        let notified = matches!(w, Waited::Ready(()));
        if !notified {
            guard.waiters.retain(|t| *t != ticket);
        }
        if matches!(w, Waited::Gone) {
            return Reply::Bool(false);
        }
        let (_g, w) = c.wait_until(guard, call.client, None, |c| {
            c.lock.try_take(who).then(|| c.lock.depth = depth)
        });
        match w {
            Waited::Ready(()) => {
                self.release_if_lost(who, call);
                Reply::Bool(notified)
            }
            _ => Reply::Bool(false),
        }
    }
}

impl Object for Condition {
    fn release_session(&self, session: SessionId) {
        if self.0.lock().lock.release_session(session) {
            self.0.changed();
        }
    }
}

impl Handler for Condition {
    type Op = (Thread, Op);

    fn serve(self: Arc<Self>, (thread, op): (Thread, Op), call: &mut Call<'_>) -> Reply {
        let who = call.owner(thread);
        let c = &self.0;
        let reply = match op {
            Op::Acquire(wait) => {
                let guard = c.lock();
                let (_g, w) = c.wait_until(guard, call.client, wait, |c| {
                    c.lock.try_take(who).then_some(())
                });
                return match w {
                    Waited::Ready(()) => {
                        self.release_if_lost(who, call);
                        Reply::Bool(true)
                    }
                    _ => Reply::Bool(false),
                };
            }
            Op::Wait(wait) => return self.wait(who, wait, call),
            Op::Release => c.lock().lock.release(who, "Condition"),
            Op::Notify(n) => {
                let mut guard = c.lock();
                if guard.lock.owner != Some(who) {
                    return fail(Failure::NotHeld("Condition".into()));
                }
                let State {
                    waiters, notified, ..
                } = &mut *guard;
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(waiters.len());
                notified.extend(waiters.drain(..n));
                Reply::Ok
            }
            Op::NotifyAll => {
                let mut guard = c.lock();
                if guard.lock.owner != Some(who) {
                    return fail(Failure::NotHeld("Condition".into()));
                }
                let State {
                    waiters, notified, ..
                } = &mut *guard;
                notified.extend(waiters.drain(..));
                Reply::Ok
            }
        };
        c.changed();
        reply
    }
}
