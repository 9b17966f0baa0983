//! A shared `Namespace`: its requests, its proxy and its server side.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Failure, Reply, Request};
use crate::proxy::{Reference, enc, ok, one, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object, fail};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Set(String, Bytes),
    Get(String),
}

/// A `Namespace` in the manager: named attributes of any type.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let ns = m.namespace()?;
/// ns.set("x", &42u32)?;
/// assert_eq!(ns.get::<u32>("x")?, 42);
/// assert!(matches!(ns.get::<u32>("missing"), Err(mp_manager::Error::Attribute { .. })));
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct NamespaceProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(NamespaceProxy);

impl NamespaceProxy {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Namespace(self.inner.id, op))
    }

    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        ok(self.op(Op::Set(name.into(), enc(value)?))?)
    }

    /// `ns.name`; a missing one is
    /// [`Error::Attribute`](crate::Error::Attribute) (`AttributeError`).
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        one(self.op(Op::Get(name.into()))?)
    }
}

/// A namespace in the server: names to encoded values.
pub(crate) struct Namespace(Guarded<HashMap<String, Bytes>>);

impl Namespace {
    pub(crate) fn new() -> Namespace {
        Namespace(Guarded::new(HashMap::new()))
    }
}

impl Object for Namespace {}

impl Handler<Op> for Namespace {
    fn serve(self: Arc<Self>, op: Op, _: &mut Call<'_>) -> Reply {
        self.0.with(|n| match op {
            Op::Set(name, v) => {
                n.insert(name, v);
                Reply::Ok
            }
            Op::Get(name) => match n.get(&name) {
                Some(v) => Reply::Maybe(Some(v.clone())),
                None => fail(Failure::Attribute {
                    object: "Namespace".into(),
                    name,
                }),
            },
        })
    }
}
