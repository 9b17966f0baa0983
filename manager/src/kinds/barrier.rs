//! A shared `Barrier`: its requests, its proxy and its server side.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Failure, Reply, Request, Wait};
use crate::proxy::{Reference, count, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, Waitable, Waited, fail};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Wait(Wait),
    Abort,
    Reset,
    Parties,
    NWaiting,
    Broken,
}

/// A `threading.Barrier` in the manager.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let b = m.barrier(1, None)?;
/// assert_eq!(b.wait()?, 0); // one party: passes at once
/// b.abort()?;
/// assert!(b.broken()?);
/// assert!(matches!(b.wait(), Err(mp_manager::Error::BrokenBarrier)));
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct BarrierProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(BarrierProxy);

impl BarrierProxy {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Barrier(self.inner.id, op))
    }

    /// `wait()`: waits for every party (with the barrier's own timeout);
    /// returns this caller's index, `0..parties`.
    /// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier) if the barrier
    /// breaks (abort, reset, or a waiter's timeout).
    pub fn wait(&self) -> Result<usize> {
        count(self.op(Op::Wait(None))?)
    }

    /// `wait(timeout)`: a timeout breaks the barrier, as in Python.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        count(self.op(Op::Wait(Some(timeout)))?)
    }

    /// `abort()`: breaks the barrier.
    pub fn abort(&self) -> Result<()> {
        ok(self.op(Op::Abort)?)
    }

    /// `reset()`: waiters now get `BrokenBarrier`; the barrier is whole again.
    pub fn reset(&self) -> Result<()> {
        ok(self.op(Op::Reset)?)
    }

    /// `broken`.
    pub fn broken(&self) -> Result<bool> {
        flag(self.op(Op::Broken)?)
    }

    /// `n_waiting`.
    pub fn n_waiting(&self) -> Result<usize> {
        count(self.op(Op::NWaiting)?)
    }

    /// `parties`.
    pub fn parties(&self) -> Result<usize> {
        count(self.op(Op::Parties)?)
    }
}

struct State {
    parties: u64,
    timeout: Wait,
    waiting: u64,
    generation: u64,
    broken: bool,
    /// A generation ended by `reset`: its waiters fail.
    reset: Option<u64>,
}

/// A barrier in the server.
pub(crate) struct Barrier(Waitable<State>);

impl Barrier {
    /// A barrier for `parties` (at least one) waiters, whose waits give up
    /// after `timeout` unless a call says otherwise.
    pub(crate) fn new(parties: u64, timeout: Wait) -> Option<Barrier> {
        (parties > 0).then(|| {
            Barrier(Waitable::new(State {
                parties,
                timeout,
                waiting: 0,
                generation: 0,
                broken: false,
                reset: None,
            }))
        })
    }

    fn wait(&self, wait: Wait, call: &Call<'_>) -> Reply {
        let b = &self.0;
        let mut guard = b.lock();
        if guard.broken {
            return fail(Failure::BrokenBarrier);
        }
        let index = guard.waiting;
        guard.waiting += 1;
        if guard.waiting == guard.parties {
            guard.generation += 1;
            guard.waiting = 0;
            drop(guard);
            b.changed();
            return Reply::Count(index);
        }
        let generation = guard.generation;
        let wait = wait.or(guard.timeout);
        let (mut guard, w) = b.wait_until(guard, call.client, wait, |b| {
            if b.generation != generation {
                Some(b.reset != Some(generation))
            } else if b.broken {
                b.waiting = b.waiting.saturating_sub(1);
                Some(false)
            } else {
                None
            }
        });
        let reply = match w {
            Waited::Ready(true) => Reply::Count(index),
            Waited::Ready(false) => fail(Failure::BrokenBarrier),
            _ => {
                // A waiter that times out breaks the barrier.
                guard.broken = true;
                guard.waiting = guard.waiting.saturating_sub(1);
                fail(Failure::BrokenBarrier)
            }
        };
        drop(guard);
        b.changed();
        reply
    }
}

impl Object for Barrier {}

impl Handler<Op> for Barrier {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let b = &self.0;
        match op {
            Op::Wait(wait) => self.wait(wait, call),
            Op::Abort => b.change(|b| {
                b.broken = true;
                Reply::Ok
            }),
            Op::Reset => b.change(|b| {
                if b.waiting > 0 {
                    b.reset = Some(b.generation);
                    b.generation += 1;
                    b.waiting = 0;
                }
                b.broken = false;
                Reply::Ok
            }),
            Op::Parties => Reply::Count(b.lock().parties),
            Op::NWaiting => Reply::Count(b.lock().waiting),
            Op::Broken => Reply::Bool(b.lock().broken),
        }
    }
}
