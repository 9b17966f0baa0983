//! Proxies: handles to objects that live in the manager's server.

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::Payload;
use mp_proc::codec::{decode, encode};
use mp_proc::connection::Address;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Result;
use crate::link::{Link, unexpected};
use crate::protocol::{Bytes, DictOp, ListOp, NamespaceOp, Reply, Request, ValueOp};

/// A reference to a server object: counted by the server, so the object
/// lives while a proxy to it exists anywhere (a process that is killed
/// gives its references back with its connection).
pub(crate) struct Reference {
    pub(crate) link: Arc<Link>,
    pub(crate) id: u64,
}

impl Reference {
    fn call(&self, r: &Request) -> Result<Reply> {
        self.link.call(r)
    }
}

impl Clone for Reference {
    fn clone(&self) -> Reference {
        // A failed incref (the manager is gone) leaves a proxy whose calls fail.
        let _ = self.link.call(&Request::IncRef(self.id));
        Reference {
            link: self.link.clone(),
            id: self.id,
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.link.call(&Request::DecRef(self.id));
    }
}

impl Serialize for Reference {
    /// Lends the receiver a reference, so that the object outlives this copy
    /// until the receiver adopts it (a copy never received keeps the object
    /// until the manager ends).
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        self.link
            .call(&Request::Lend(self.id))
            .map_err(S::Error::custom)?;
        (self.link.address.to_string(), self.id).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Reference {
    /// Reconnects (once per process) with this process's authkey, which it
    /// inherited, and adopts the reference its sender lent.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Reference, D::Error> {
        use serde::de::Error as _;
        let (address, id): (String, u64) = Deserialize::deserialize(d)?;
        let address: Address = address.parse().map_err(D::Error::custom)?;
        let link =
            Link::to(&address, mp_proc::current_process().authkey()).map_err(D::Error::custom)?;
        link.call(&Request::Adopt(id)).map_err(D::Error::custom)?;
        Ok(Reference { link, id })
    }
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes> {
    Ok(Bytes::from(encode(v)?))
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
    r: Reference,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy {
            r: self.r.clone(),
            _kv: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for DictProxy<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DictProxy({} at {})", self.r.id, self.r.link.address)
    }
}

impl<K, V> Serialize for DictProxy<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.r.serialize(s)
    }
}

impl<'de, K, V> Deserialize<'de> for DictProxy<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(DictProxy {
            r: Reference::deserialize(d)?,
            _kv: PhantomData,
        })
    }
}

impl<K: Payload + Eq + Hash, V: Payload> DictProxy<K, V> {
    pub(crate) fn new(r: Reference) -> Self {
        DictProxy {
            r,
            _kv: PhantomData,
        }
    }

    fn op(&self, op: DictOp) -> Result<Reply> {
        self.r.call(&Request::Dict(self.r.id, op))
    }

    fn maybe(&self, op: DictOp) -> Result<Option<V>> {
        match self.op(op)? {
            Reply::Maybe(v) => v.map(|b| decode(&b)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    /// `d.get(k)`.
    pub fn get(&self, k: &K) -> Result<Option<V>> {
        self.maybe(DictOp::Get(enc(k)?))
    }

    /// `d[k] = v`; returns the value it replaced.
    pub fn insert(&self, k: K, v: V) -> Result<Option<V>> {
        self.maybe(DictOp::Insert(enc(&k)?, enc(&v)?))
    }

    /// `d.pop(k, None)`.
    pub fn remove(&self, k: &K) -> Result<Option<V>> {
        self.maybe(DictOp::Remove(enc(k)?))
    }

    /// `k in d`.
    pub fn contains_key(&self, k: &K) -> Result<bool> {
        match self.op(DictOp::ContainsKey(enc(k)?))? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        match self.op(DictOp::Len)? {
            Reply::Count(n) => Ok(n as usize),
            r => Err(unexpected(r)),
        }
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `list(d.keys())`, in one round trip.
    pub fn keys(&self) -> Result<Vec<K>> {
        match self.op(DictOp::Keys)? {
            Reply::List(l) => l.iter().map(|b| decode(b)).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// `list(d.values())`, in one round trip.
    pub fn values(&self) -> Result<Vec<V>> {
        match self.op(DictOp::Values)? {
            Reply::List(l) => l.iter().map(|b| decode(b)).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// `list(d.items())`, in one round trip.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.op(DictOp::Items)? {
            Reply::Pairs(l) => l
                .iter()
                .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
                .collect(),
            r => Err(unexpected(r)),
        }
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.op(DictOp::Clear).map(|_| ())
    }

    /// `d.update(pairs)`, in one round trip.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.op(DictOp::Update(pairs)).map(|_| ())
    }
}

/// The handle traits every proxy has: `Clone` (one more reference),
/// `Debug`, and `Serialize`/`Deserialize` (a child reconnects).
macro_rules! proxy_handle {
    ($name:ident $(<$($t:ident),+>)?) => {
        impl$(<$($t),+>)? Clone for $name$(<$($t),+>)? {
            fn clone(&self) -> Self {
                $name { r: self.r.clone(), _t: PhantomData }
            }
        }

        impl$(<$($t),+>)? std::fmt::Debug for $name$(<$($t),+>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({} at {})", stringify!($name), self.r.id, self.r.link.address)
            }
        }

        impl$(<$($t),+>)? Serialize for $name$(<$($t),+>)? {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.r.serialize(s)
            }
        }

        impl<'de $($(, $t)+)?> Deserialize<'de> for $name$(<$($t),+>)? {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok($name { r: Reference::deserialize(d)?, _t: PhantomData })
            }
        }
    };
}

fn maybe<T: Payload>(r: Reply) -> Result<Option<T>> {
    match r {
        Reply::Maybe(v) => v.map(|b| decode(&b)).transpose(),
        r => Err(unexpected(r)),
    }
}

fn one<T: Payload>(r: Reply) -> Result<T> {
    match r {
        Reply::Maybe(Some(b)) => decode(&b),
        r => Err(unexpected(r)),
    }
}

/// A `list` in the manager (Python's `ListProxy`).
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let l = m.list::<u32>()?;
/// l.push(1)?;
/// l.extend([2, 3])?;
/// l.set(0, 10)?;
/// assert_eq!(l.to_vec()?, [10, 2, 3]);
/// assert_eq!(l.pop()?, Some(3));
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct ListProxy<T> {
    r: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(ListProxy<T>);

impl<T: Payload> ListProxy<T> {
    pub(crate) fn new(r: Reference) -> Self {
        ListProxy { r, _t: PhantomData }
    }

    fn op(&self, op: ListOp) -> Result<Reply> {
        self.r.call(&Request::List(self.r.id, op))
    }

    /// `l.append(v)`.
    pub fn push(&self, v: T) -> Result<()> {
        self.op(ListOp::Push(enc(&v)?)).map(|_| ())
    }

    /// `l[i]`; an index out of range is an error (`IndexError`).
    pub fn get(&self, i: usize) -> Result<T> {
        one(self.op(ListOp::Get(i as u64))?)
    }

    /// `l[i] = v`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.op(ListOp::Set(i as u64, enc(&v)?)).map(|_| ())
    }

    /// `l.pop()`; `None` when empty.
    pub fn pop(&self) -> Result<Option<T>> {
        maybe(self.op(ListOp::Pop)?)
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize> {
        match self.op(ListOp::Len)? {
            Reply::Count(n) => Ok(n as usize),
            r => Err(unexpected(r)),
        }
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `l.extend(items)`, in one round trip.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        self.op(ListOp::Extend(items)).map(|_| ())
    }

    /// `list(l)`, in one round trip.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match self.op(ListOp::ToVec)? {
            Reply::List(l) => l.iter().map(|b| decode(b)).collect(),
            r => Err(unexpected(r)),
        }
    }
}

/// A `Namespace` in the manager: named attributes of any type.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let ns = m.namespace()?;
/// ns.set("x", &42u32)?;
/// assert_eq!(ns.get::<u32>("x")?, 42);
/// assert!(ns.get::<u32>("missing").is_err());
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct NamespaceProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(NamespaceProxy);

impl NamespaceProxy {
    pub(crate) fn new(r: Reference) -> Self {
        NamespaceProxy { r, _t: PhantomData }
    }

    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.r
            .call(&Request::Namespace(
                self.r.id,
                NamespaceOp::Set(name.into(), enc(value)?),
            ))
            .map(|_| ())
    }

    /// `ns.name`; a missing one is an error (`AttributeError`).
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        match self.r.call(&Request::Namespace(
            self.r.id,
            NamespaceOp::Get(name.into()),
        ))? {
            Reply::Maybe(Some(b)) => decode(&b),
            r => Err(unexpected(r)),
        }
    }
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
    r: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(ValueProxy<T>);

impl<T: Payload> ValueProxy<T> {
    pub(crate) fn new(r: Reference) -> Self {
        ValueProxy { r, _t: PhantomData }
    }

    /// `v.value`.
    pub fn get(&self) -> Result<T> {
        one(self.r.call(&Request::Value(self.r.id, ValueOp::Get))?)
    }

    /// `v.value = new`.
    pub fn set(&self, new: T) -> Result<()> {
        self.r
            .call(&Request::Value(self.r.id, ValueOp::Set(enc(&new)?)))
            .map(|_| ())
    }
}
