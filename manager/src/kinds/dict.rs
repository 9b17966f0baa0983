//! A shared `dict`: its requests, its proxy and its server side.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::Payload;
use mp_proc::codec::decode;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::link::unexpected;
use crate::protocol::{Bytes, Reply, Request};
use crate::proxy::{Reference, count, enc, enc_stored, flag, list, maybe, ok, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object, Stored};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Get(Bytes),
    Insert(Bytes, Bytes),
    Remove(Bytes),
    ContainsKey(Bytes),
    Len,
    Keys,
    Values,
    Items,
    Clear,
    Update(Vec<(Bytes, Bytes)>),
}

/// A `dict` in the manager (Python's `DictProxy`). Keys are compared by
/// their encoding.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let d = m.dict::<String, u32>()?;
/// d.insert("a".into(), 1)?;
/// assert_eq!(d.get(&"a".into())?, Some(1));
/// assert_eq!(d.len()?, 1);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct DictProxy<K, V> {
    inner: Reference,
    _t: PhantomData<fn() -> (K, V)>,
}

proxy_handle!(DictProxy<K, V>);

impl<K: Payload + Eq + Hash, V: Payload> DictProxy<K, V> {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Dict(self.inner.id, op))
    }

    /// `op`, which stores values holding the references `held` (one list
    /// per value, in order).
    fn storing(&self, held: Vec<Vec<u64>>, op: Op) -> Result<Reply> {
        if held.iter().all(Vec::is_empty) {
            return self.op(op);
        }
        let id = self.inner.id;
        self.inner.call(&Request::DictHolding(id, held, op))
    }

    /// `v` encoded to be stored here.
    fn value(&self, v: &V) -> Result<(Bytes, Vec<u64>)> {
        enc_stored(v, &self.inner.link.address)
    }

    /// `d.get(k)`.
    pub fn get(&self, k: &K) -> Result<Option<V>> {
        maybe(self.op(Op::Get(enc(k)?))?)
    }

    /// `d[k] = v`; returns the value it replaced. A proxy in `v` keeps its
    /// object alive while the dict keeps `v`.
    pub fn insert(&self, k: K, v: V) -> Result<Option<V>> {
        let (v, held) = self.value(&v)?;
        maybe(self.storing(vec![held], Op::Insert(enc(&k)?, v))?)
    }

    /// `d.pop(k, None)`.
    pub fn remove(&self, k: &K) -> Result<Option<V>> {
        maybe(self.op(Op::Remove(enc(k)?))?)
    }

    /// `k in d`.
    pub fn contains_key(&self, k: &K) -> Result<bool> {
        flag(self.op(Op::ContainsKey(enc(k)?))?)
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        count(self.op(Op::Len)?)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `list(d.keys())`, in one round trip.
    pub fn keys(&self) -> Result<Vec<K>> {
        list(self.op(Op::Keys)?)
    }

    /// `list(d.values())`, in one round trip.
    pub fn values(&self) -> Result<Vec<V>> {
        list(self.op(Op::Values)?)
    }

    /// `list(d.items())`, in one round trip.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.op(Op::Items)? {
            Reply::Pairs(l) => l
                .iter()
                .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
                .collect(),
            r => Err(unexpected(r)),
        }
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        ok(self.op(Op::Clear)?)
    }

    /// `d.update(pairs)`, in one round trip.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut held = Vec::new();
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| {
                let (v, h) = self.value(&v)?;
                held.push(h);
                Ok((enc(&k)?, v))
            })
            .collect::<Result<Vec<_>>>()?;
        ok(self.storing(held, Op::Update(pairs))?)
    }
}

/// A dict in the server: encoded keys to encoded values.
pub(crate) struct Dict(Guarded<HashMap<Bytes, Stored>>);

impl Dict {
    pub(crate) fn new() -> Dict {
        Dict(Guarded::new(HashMap::new()))
    }
}

impl Object for Dict {}

impl Handler<Op> for Dict {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        // Values taken out are dropped (their references given back) after
        // the dict's lock is let go.
        let mut out = Vec::new();
        let reply = self.0.with(|d| match op {
            Op::Get(k) => Reply::Maybe(d.get(&k).map(|v| v.bytes.clone())),
            Op::Insert(k, v) => {
                let old = d.insert(k, call.stored(v));
                Reply::Maybe(old.map(Stored::into_reply))
            }
            Op::Remove(k) => Reply::Maybe(d.remove(&k).map(Stored::into_reply)),
            Op::ContainsKey(k) => Reply::Bool(d.contains_key(&k)),
            Op::Len => Reply::Count(d.len() as u64),
            Op::Keys => Reply::List(d.keys().cloned().collect()),
            Op::Values => Reply::List(d.values().map(|v| v.bytes.clone()).collect()),
            Op::Items => Reply::Pairs(
                d.iter()
                    .map(|(k, v)| (k.clone(), v.bytes.clone()))
                    .collect(),
            ),
            Op::Clear => {
                out.extend(d.drain().map(|(_, v)| v));
                Reply::Ok
            }
            Op::Update(pairs) => {
                for (k, v) in pairs {
                    out.extend(d.insert(k, call.stored(v)));
                }
                Reply::Ok
            }
        });
        drop(out);
        reply
    }
}
