//! A shared value (Python's `Manager().Value`): its requests, its proxy
//! and its server side.

use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::Payload;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Reply, Request};
use crate::proxy::{Reference, enc_stored, ok, one, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object, Stored};

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

    /// `v.value = new`. A proxy in `new` keeps its object alive while the
    /// value keeps it.
    pub fn set(&self, new: T) -> Result<()> {
        let (v, held) = enc_stored(&new, &self.inner.link.address)?;
        let id = self.inner.id;
        ok(match held.is_empty() {
            true => self.op(Op::Set(v))?,
            false => self
                .inner
                .call(&Request::ValueHolding(id, vec![held], Op::Set(v)))?,
        })
    }
}

/// A value in the server, encoded (with the references it holds).
pub(crate) struct Value(Guarded<Stored>);

impl Value {
    pub(crate) fn new(v: Bytes) -> Value {
        Value(Guarded::new(Stored::plain(v)))
    }
}

impl Object for Value {}

impl Handler<Op> for Value {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        // The value replaced is dropped (its references given back) after
        // the lock is let go.
        let mut out = None;
        let reply = self.0.with(|v| match op {
            Op::Get => Reply::Maybe(Some(v.bytes.clone())),
            Op::Set(new) => {
                out = Some(std::mem::replace(v, call.stored(new)));
                Reply::Ok
            }
        });
        drop(out);
        reply
    }
}
