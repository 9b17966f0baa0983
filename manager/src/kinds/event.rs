//! A shared `Event`: its requests, its proxy and its server side.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::plumbing::local;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Reply, Request, Wait};
use crate::proxy::{Reference, flag, ok, proxy_handle};
use crate::server::object::{Call, Handler, Object};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Set,
    Clear,
    IsSet,
    Wait(Wait),
}

/// A `threading.Event` in the manager.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let e = m.event()?;
/// assert!(!e.wait(Some(std::time::Duration::ZERO))?);
/// e.set()?;
/// assert!(e.is_set()? && e.wait(None)?);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct EventProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(EventProxy);

impl EventProxy {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Event(self.inner.id, op))
    }

    /// `set()`: wakes every waiter.
    pub fn set(&self) -> Result<()> {
        ok(self.op(Op::Set)?)
    }

    /// `clear()`.
    pub fn clear(&self) -> Result<()> {
        ok(self.op(Op::Clear)?)
    }

    /// `is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        flag(self.op(Op::IsSet)?)
    }

    /// `wait(timeout)`: whether the flag is set (`None`: wait forever).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        flag(self.op(Op::Wait(timeout))?)
    }
}

/// An event in the server: mp-proc's in-process event.
pub(crate) struct Event(local::Event);

impl Event {
    pub(crate) fn new() -> Event {
        Event(local::Event::new())
    }
}

impl Object for Event {}

impl Handler<Op> for Event {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let e = &self.0;
        match op {
            Op::Set => e.set(),
            Op::Clear => e.clear(),
            Op::IsSet => return Reply::Bool(e.is_set()),
            Op::Wait(wait) => return Reply::Bool(call.waiting(wait, |w| e.wait(w)).is_ok()),
        }
        Reply::Ok
    }
}
