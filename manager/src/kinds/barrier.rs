//! A shared `Barrier`: its requests, its proxy and its server side.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::plumbing::local;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Failure, Reply, Request, Wait};
use crate::proxy::{Reference, count, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, fail};

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

/// A barrier in the server: mp-proc's in-process barrier, and the
/// timeout of a wait that gives none.
pub(crate) struct Barrier {
    barrier: local::Barrier,
    timeout: Wait,
}

impl Barrier {
    /// A barrier for `parties` (at least one) waiters, whose waits give up
    /// after `timeout` unless a call says otherwise.
    pub(crate) fn new(parties: u64, timeout: Wait) -> Option<Barrier> {
        let parties = usize::try_from(parties).unwrap_or(usize::MAX);
        Some(Barrier {
            barrier: local::Barrier::new(parties).ok()?,
            timeout,
        })
    }
}

impl Object for Barrier {}

impl Handler<Op> for Barrier {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let b = &self.barrier;
        match op {
            // A waiter that times out (or hangs up) breaks the barrier.
            Op::Wait(wait) => match call.waiting(wait.or(self.timeout), |w| b.wait(w)) {
                Ok(index) => Reply::Count(index as u64),
                Err(_) => fail(Failure::BrokenBarrier),
            },
            Op::Abort => {
                b.abort();
                Reply::Ok
            }
            Op::Reset => {
                b.reset();
                Reply::Ok
            }
            Op::Parties => Reply::Count(b.parties() as u64),
            Op::NWaiting => Reply::Count(b.n_waiting() as u64),
            Op::Broken => Reply::Bool(b.broken()),
        }
    }
}
