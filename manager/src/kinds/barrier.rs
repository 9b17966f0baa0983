//! A shared `Barrier`: its requests, its proxy and its server side, and
//! [`SyncManager::barrier_with_action`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::FnPointer;
use mp_proc::plumbing::local;
use serde::{Deserialize, Serialize};

use crate::kinds::registered::quietly;
use crate::protocol::{Bytes, Failure, Kind, Reply, Request, Wait};
use crate::proxy::{Proxy, Reference, count, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object, fail};
use crate::{Error, Result, SyncManager};

impl SyncManager {
    /// A new shared `Barrier` for `parties` waiters whose `action` runs
    /// once each time it trips, before any party goes through (Python's
    /// `Manager().Barrier(parties, action, timeout)`); its `wait` gives up
    /// after `timeout` (`None`: never) unless a call says otherwise.
    ///
    /// The action runs in the manager's server process, as Python's does
    /// (there, in the thread serving the last party to arrive). It travels
    /// as a signed reference to the function, which the server takes only
    /// from processes of the program and process tree that started it: a
    /// client of another tree gets an error here. If the action panics,
    /// the barrier breaks: the wait of the party whose arrival ran it is
    /// [`Error::ActionPanicked`], the others' [`Error::BrokenBarrier`].
    ///
    /// ```
    /// use mp_manager::SyncManager;
    ///
    /// fn announce() {
    ///     println!("every party arrived"); // in the server
    /// }
    /// fn party(b: mp_manager::BarrierProxy) {
    ///     b.wait().unwrap();
    /// }
    ///
    /// let m = SyncManager::start()?;
    /// let b = m.barrier_with_action(2, announce, None)?;
    /// let mut p = mp_proc::Process::new(party, b.clone());
    /// p.start()?;
    /// b.wait()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn barrier_with_action(
        &self,
        parties: usize,
        action: fn(),
        timeout: Option<Duration>,
    ) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(Error::Invalid {
                what: "Barrier",
                reason: "a Barrier needs at least one party".into(),
            });
        }
        let action = mp_proc::codec::encode(&FnPointer::new(action))?;
        let kind = Kind::BarrierWithAction {
            parties: parties as u64,
            timeout,
            action: Bytes::from(action),
        };
        Ok(Proxy::from_reference(self.create(kind)?))
    }
}

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

/// A barrier in the server: mp-proc's in-process barrier, the timeout of
/// a wait that gives none, and the action it runs when it trips.
pub(crate) struct Barrier {
    barrier: local::Barrier,
    timeout: Wait,
    action: Option<fn()>,
}

impl Barrier {
    /// A barrier for `parties` (at least one) waiters, whose waits give up
    /// after `timeout` unless a call says otherwise, and which runs
    /// `action` (an encoded `FnPointer<fn()>`) when it trips; why not.
    pub(crate) fn new(
        parties: u64,
        timeout: Wait,
        action: Option<&[u8]>,
    ) -> std::result::Result<Barrier, String> {
        let parties = usize::try_from(parties).unwrap_or(usize::MAX);
        let barrier =
            local::Barrier::new(parties).map_err(|_| "a Barrier needs at least one party")?;
        let action = match action {
            None => None,
            Some(bytes) => Some(action_of(bytes).map_err(|e| {
                format!(
                    "the barrier's action is refused: {e}. A manager runs only functions sent \
                     by processes of the program and process tree that started it"
                )
            })?),
        };
        Ok(Barrier {
            barrier,
            timeout,
            action,
        })
    }

    /// Waits with `wait`, running the action if this caller trips the
    /// barrier: a panicking (or unusable) action breaks it, and this
    /// caller's reply says why.
    fn wait(&self, wait: &local::Wait<'_>) -> Reply {
        let mut failed = None;
        let r = self.barrier.wait_then(wait, || {
            let Some(action) = self.action else {
                return true;
            };
            match quietly(action) {
                Ok(()) => true,
                Err(p) => {
                    failed = Some(mp_proc::plumbing::panic_message(&*p));
                    false
                }
            }
        });
        match (failed, r) {
            (Some(message), _) => fail(Failure::ActionPanicked(message)),
            (None, Ok(index)) => Reply::Count(index as u64),
            (None, Err(_)) => fail(Failure::BrokenBarrier),
        }
    }
}

/// The function an encoded `FnPointer<fn()>` names, if this server's
/// process tree made it.
fn action_of(bytes: &[u8]) -> mp_proc::Result<fn()> {
    mp_proc::codec::decode::<FnPointer<fn()>>(bytes)?.get()
}

impl Object for Barrier {}

impl Handler<Op> for Barrier {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let b = &self.barrier;
        match op {
            // A waiter that times out (or hangs up) breaks the barrier.
            Op::Wait(wait) => call.waiting(wait.or(self.timeout), |w| self.wait(w)),
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
