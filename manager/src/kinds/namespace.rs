//! A shared `Namespace`: its requests, its proxy and its server side.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::link::unexpected;
use crate::protocol::{Bytes, Failure, Reply, Request};
use crate::proxy::{Reference, enc_stored, ok, one, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object, Stored, fail};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Set(String, Bytes),
    Get(String),
    /// `del ns.name`.
    Remove(String),
    /// The attributes' names, sorted (`Reply::Names`).
    Names,
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

    /// `ns.name = value`. A proxy in `value` keeps its object alive while
    /// the namespace keeps `value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let (v, held) = enc_stored(value, &self.inner.link.address)?;
        let op = Op::Set(name.into(), v);
        let id = self.inner.id;
        ok(match held.is_empty() {
            true => self.op(op)?,
            false => self
                .inner
                .call(&Request::NamespaceHolding(id, vec![held], op))?,
        })
    }

    /// `ns.name`; a missing one is
    /// [`Error::Attribute`](crate::Error::Attribute) (`AttributeError`).
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        one(self.op(Op::Get(name.into()))?)
    }

    /// `del ns.name`; a missing one is
    /// [`Error::Attribute`](crate::Error::Attribute) (`AttributeError`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let ns = m.namespace()?;
    /// ns.set("name", "Bob")?;
    /// ns.set("job", "Builder")?;
    /// ns.remove("job")?;
    /// assert!(matches!(ns.get::<String>("job"), Err(mp_manager::Error::Attribute { .. })));
    /// assert!(matches!(ns.remove("job"), Err(mp_manager::Error::Attribute { .. })));
    /// assert_eq!(ns.to_string(), "Namespace(name=…)");
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn remove(&self, name: &str) -> Result<()> {
        ok(self.op(Op::Remove(name.into()))?)
    }

    /// The names of the attributes, sorted (Python's `vars(ns)`'s keys).
    pub fn names(&self) -> Result<Vec<String>> {
        match self.op(Op::Names)? {
            Reply::Names(names) => Ok(names),
            r => Err(unexpected(r)),
        }
    }
}

impl std::fmt::Display for NamespaceProxy {
    /// Python's `str(ns)`, `Namespace(job=…, name=…)`: the attributes
    /// whose names do not start with `_`, sorted, each value shown as `…`
    /// (the manager holds values encoded, without their types, so it cannot
    /// show them; [`get`](Self::get) one to see it). A manager that cannot
    /// be reached shows as `Namespace(<unreachable: the error>)` rather than
    /// failing the formatting.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.names() {
            Ok(names) => write_namespace(f, &names),
            Err(e) => write!(f, "Namespace(<unreachable: {e}>)"),
        }
    }
}

/// `Namespace(a=…, b=…)` of the `names` not starting with `_` (mp-dummy's
/// `Namespace` shows itself the same way).
fn write_namespace(f: &mut std::fmt::Formatter<'_>, names: &[String]) -> std::fmt::Result {
    f.write_str("Namespace(")?;
    let public = names.iter().filter(|n| !n.starts_with('_'));
    for (i, name) in public.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{name}=…")?;
    }
    f.write_str(")")
}

/// A namespace in the server: names to encoded values (with the
/// references they hold), sorted by name.
pub(crate) struct Namespace(Guarded<BTreeMap<String, Stored>>);

impl Namespace {
    pub(crate) fn new() -> Namespace {
        Namespace(Guarded::new(BTreeMap::new()))
    }
}

impl Object for Namespace {}

impl Handler<Op> for Namespace {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        // A value replaced or removed is dropped (its references given
        // back) after the namespace's lock is let go.
        let mut out = None;
        let reply = self.0.with(|n| match op {
            Op::Set(name, v) => {
                out = n.insert(name, call.stored(v));
                Reply::Ok
            }
            Op::Get(name) => match n.get(&name) {
                Some(v) => Reply::Maybe(Some(v.bytes.clone())),
                None => no_attribute(name),
            },
            Op::Remove(name) => match n.remove(&name) {
                Some(v) => {
                    out = Some(v);
                    Reply::Ok
                }
                None => no_attribute(name),
            },
            Op::Names => Reply::Names(n.keys().cloned().collect()),
        });
        drop(out);
        reply
    }
}

/// `AttributeError: 'Namespace' object has no attribute 'name'`.
fn no_attribute(name: String) -> Reply {
    fail(Failure::Attribute {
        object: "Namespace".into(),
        name,
    })
}
