//! A shared `dict`: its requests, its proxy and its server side.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::Payload;
use mp_proc::codec::decode;
use mp_proc::plumbing::local::OrderedMap;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::link::unexpected;
use crate::protocol::{Bytes, Reply, Request};
use crate::proxy::{Reference, count, enc_stored, flag, list, maybe, ok, one, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Held, Object, Stored};

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
    /// Takes out the last pair inserted: `Pairs` of none or one.
    PopItem,
    /// The key's value, inserting this one first if the key has none.
    SetDefault(Bytes, Bytes),
}

/// A `dict` in the manager (Python's `DictProxy`). Keys are compared by
/// their encoding, and kept in the order they were first inserted (as a
/// Python `dict`'s).
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
    /// per value, in order: a key's, then its value's, when it stores
    /// pairs).
    fn storing(&self, held: Vec<Vec<u64>>, op: Op) -> Result<Reply> {
        if held.iter().all(Vec::is_empty) {
            return self.op(op);
        }
        let id = self.inner.id;
        self.inner.call(&Request::DictHolding(id, held, op))
    }

    /// `k` encoded as a key here: a proxy in it is held by the dict while
    /// the key is stored, and only while the call runs when the key is
    /// looked up (the reference lent to encode it is given back).
    fn key(&self, k: &K) -> Result<(Bytes, Vec<u64>)> {
        enc_stored(k, &self.inner.link.address)
    }

    /// `v` encoded to be stored here.
    fn value(&self, v: &V) -> Result<(Bytes, Vec<u64>)> {
        enc_stored(v, &self.inner.link.address)
    }

    /// `d.get(k)`.
    pub fn get(&self, k: &K) -> Result<Option<V>> {
        let (k, held) = self.key(k)?;
        maybe(self.storing(vec![held], Op::Get(k))?)
    }

    /// `d[k] = v`; returns the value it replaced. A proxy in `v` keeps its
    /// object alive while the dict keeps `v`.
    pub fn insert(&self, k: K, v: V) -> Result<Option<V>> {
        let (k, key_held) = self.key(&k)?;
        let (v, held) = self.value(&v)?;
        maybe(self.storing(vec![key_held, held], Op::Insert(k, v))?)
    }

    /// `d.pop(k, None)`.
    pub fn remove(&self, k: &K) -> Result<Option<V>> {
        let (k, held) = self.key(k)?;
        maybe(self.storing(vec![held], Op::Remove(k))?)
    }

    /// `k in d`.
    pub fn contains_key(&self, k: &K) -> Result<bool> {
        let (k, held) = self.key(k)?;
        flag(self.storing(vec![held], Op::ContainsKey(k))?)
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        count(self.op(Op::Len)?)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `list(d.keys())`, in one round trip, in the order the keys were
    /// first inserted (as a Python `dict`; a key removed and inserted again
    /// goes last). Python's `reversed(d)` is `d.keys()?.into_iter().rev()`.
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let d = m.dict::<String, u32>()?;
    /// d.update([("foo".into(), 5), ("bar".into(), 6)])?;
    /// assert_eq!(d.keys()?, ["foo", "bar"]);
    /// let reversed: Vec<String> = d.keys()?.into_iter().rev().collect();
    /// assert_eq!(reversed, ["bar", "foo"]);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<K>> {
        list(self.op(Op::Keys)?)
    }

    /// `list(d.values())`, in one round trip, in the keys' order.
    pub fn values(&self) -> Result<Vec<V>> {
        list(self.op(Op::Values)?)
    }

    /// `list(d.items())`, in one round trip, in the keys' order.
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

    /// `d.popitem()`: takes out the pair inserted last (LIFO, as Python's
    /// dict); `None` when empty (Python's `KeyError`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let d = m.dict::<String, u32>()?;
    /// d.update([("a".into(), 1), ("b".into(), 2)])?;
    /// assert_eq!(d.popitem()?, Some(("b".into(), 2)));
    /// assert_eq!(d.popitem()?, Some(("a".into(), 1)));
    /// assert_eq!(d.popitem()?, None);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn popitem(&self) -> Result<Option<(K, V)>> {
        match self.op(Op::PopItem)? {
            Reply::Pairs(mut l) if l.len() <= 1 => l
                .pop()
                .map(|(k, v)| Ok((decode(&k)?, decode(&v)?)))
                .transpose(),
            r => Err(unexpected(r)),
        }
    }

    /// `d.copy()`: the pairs as a plain `HashMap`, in one round trip.
    pub fn copy(&self) -> Result<HashMap<K, V>> {
        Ok(self.items()?.into_iter().collect())
    }

    /// `d.setdefault(k, v)`: the value of `k`, after inserting `v` under it
    /// if it had none, in one round trip (atomic).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let d = m.dict::<String, u32>()?;
    /// assert_eq!(d.setdefault("a".into(), 1)?, 1);
    /// assert_eq!(d.setdefault("a".into(), 2)?, 1);
    /// assert_eq!(d.pop_or(&"a".into(), 0)?, 1);
    /// assert_eq!(d.pop_or(&"a".into(), 0)?, 0);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn setdefault(&self, k: K, v: V) -> Result<V> {
        let (k, key_held) = self.key(&k)?;
        let (v, held) = self.value(&v)?;
        one(self.storing(vec![key_held, held], Op::SetDefault(k, v))?)
    }

    /// `d.pop(k, default)`: takes out the value of `k`, or gives `default`
    /// if it has none ([`remove`](Self::remove) is `d.pop(k, None)`).
    pub fn pop_or(&self, k: &K, default: V) -> Result<V> {
        Ok(self.remove(k)?.unwrap_or(default))
    }

    /// `d | other`: a plain `HashMap` of this dict's pairs and `other`'s,
    /// `other`'s value winning for a key in both. `d |= other` is
    /// [`update`](Self::update).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let d = m.dict::<String, u32>()?;
    /// d.insert("foo".into(), 5)?;
    /// let x = d.union([("foo".into(), 7), ("baz".into(), 7)])?;
    /// assert_eq!(x, [("foo".into(), 7), ("baz".into(), 7)].into());
    /// assert_eq!(d.len()?, 1);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn union(&self, other: impl IntoIterator<Item = (K, V)>) -> Result<HashMap<K, V>> {
        let mut all = self.copy()?;
        all.extend(other);
        Ok(all)
    }

    /// `d.update(pairs)`, in one round trip.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut held = Vec::new();
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| {
                let (k, key_held) = self.key(&k)?;
                let (v, h) = self.value(&v)?;
                held.extend([key_held, h]);
                Ok((k, v))
            })
            .collect::<Result<Vec<_>>>()?;
        ok(self.storing(held, Op::Update(pairs))?)
    }
}

impl crate::SyncManager {
    /// A new shared `dict` of `keys`, each with `value` (Python's
    /// `Manager().dict(dict.fromkeys(keys, value))`), in the keys' order.
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let d = m.dict_fromkeys(["a".to_string(), "b".to_string()], 0u32)?;
    /// assert_eq!(d.items()?, [("a".into(), 0), ("b".into(), 0)]);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn dict_fromkeys<K: Payload + Eq + Hash, V: Payload + Clone>(
        &self,
        keys: impl IntoIterator<Item = K>,
        value: V,
    ) -> Result<DictProxy<K, V>> {
        let d = self.dict()?;
        d.update(keys.into_iter().map(|k| (k, value.clone())))?;
        Ok(d)
    }
}

/// A dict in the server: encoded keys to encoded values, in the order the
/// keys were first inserted (as a Python `dict`); each value beside the
/// references its key holds (the proxies in the key).
pub(crate) struct Dict(Guarded<Ordered>);

impl Dict {
    pub(crate) fn new() -> Dict {
        Dict(Guarded::new(Ordered::default()))
    }
}

type Ordered = OrderedMap<Bytes, (Held, Stored)>;

impl Object for Dict {}

impl Handler<Op> for Dict {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        // Values and keys taken out are dropped (their references given
        // back) after the dict's lock is let go.
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let reply = self.0.with(|d| match op {
            Op::Get(k) => Reply::Maybe(d.get(&k).map(|(_, v)| v.bytes.clone())),
            Op::Insert(k, v) => {
                let key = call.held();
                let old = insert(d, k, key, call.stored(v), &mut keys);
                Reply::Maybe(old.map(Stored::into_reply))
            }
            Op::Remove(k) => Reply::Maybe(d.remove(&k).map(|(key, v)| {
                keys.push(key);
                v.into_reply()
            })),
            Op::ContainsKey(k) => Reply::Bool(d.contains_key(&k)),
            Op::Len => Reply::Count(d.len() as u64),
            Op::Keys => Reply::List(d.iter().map(|(k, _)| k.clone()).collect()),
            Op::Values => Reply::List(d.iter().map(|(_, (_, v))| v.bytes.clone()).collect()),
            Op::Items => Reply::Pairs(
                d.iter()
                    .map(|(k, (_, v))| (k.clone(), v.bytes.clone()))
                    .collect(),
            ),
            Op::Clear => {
                for (_, (key, v)) in d.drain() {
                    keys.push(key);
                    values.push(v);
                }
                Reply::Ok
            }
            Op::Update(pairs) => {
                for (k, v) in pairs {
                    let key = call.held();
                    values.extend(insert(d, k, key, call.stored(v), &mut keys));
                }
                Reply::Ok
            }
            Op::PopItem => Reply::Pairs(
                d.pop_last()
                    .map(|(k, (key, v))| {
                        key.lend();
                        (k, v.into_reply())
                    })
                    .into_iter()
                    .collect(),
            ),
            Op::SetDefault(k, v) => {
                if d.get(&k).is_none() {
                    let key = call.held();
                    d.insert(k.clone(), (key, call.stored(v)));
                }
                Reply::Maybe(d.get(&k).map(|(_, v)| v.bytes.clone()))
            }
        });
        drop((keys, values));
        reply
    }
}

/// `d[k] = v`, where `key` holds the references of `k`: a key already in
/// the dict keeps its references (Python keeps its first key object), and
/// those of the new one go to `out`, to be given back once the dict's lock
/// is let go. The value replaced, if any.
fn insert(d: &mut Ordered, k: Bytes, key: Held, v: Stored, out: &mut Vec<Held>) -> Option<Stored> {
    match d.get_mut(&k) {
        Some((_, slot)) => {
            out.push(key);
            Some(std::mem::replace(slot, v))
        }
        None => {
            d.insert(k, (key, v));
            None
        }
    }
}
