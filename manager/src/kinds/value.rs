//! A shared value (Python's `Manager().Value`): its requests, its proxy
//! and its server side.

use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::Payload;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Reply, Request};
use crate::proxy::{Reference, enc, ok, one, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Get,
    Set(Bytes),
}

/// A `Value` in the manager (Python's `Manager().Value(typecode, v)`).
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let v = m.value(1.5f64)?;
/// v.set(2.5)?;
/// assert_eq!(v.get()?, 2.5);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct ValueProxy<T> {
    inner: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(ValueProxy<T>);

impl<T: Payload> ValueProxy<T> {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Value(self.inner.id, op))
    }

    /// `v.value`.
    pub fn get(&self) -> Result<T> {
        one(self.op(Op::Get)?)
    }

    /// `v.value = new`.
    pub fn set(&self, new: T) -> Result<()> {
        ok(self.op(Op::Set(enc(&new)?))?)
    }
}

/// A value in the server, encoded.
pub(crate) struct Value(Guarded<Bytes>);

impl Value {
    pub(crate) fn new(v: Bytes) -> Value {
        Value(Guarded::new(v))
    }
}

impl Object for Value {}

impl Handler<Op> for Value {
    fn serve(self: Arc<Self>, op: Op, _: &mut Call<'_>) -> Reply {
        self.0.with(|v| match op {
            Op::Get => Reply::Maybe(Some(v.clone())),
            Op::Set(new) => {
                *v = new;
                Reply::Ok
            }
        })
    }
}
