//! A shared `set` (CPython 3.14's `Manager().set()`): its requests, its
//! proxy and its server side.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::Payload;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Kind, Reply, Request};
use crate::proxy::{Reference, count, enc_stored, flag, list, maybe, ok, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Held, Object};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// `Bool(whether it was new)`.
    Add(Bytes),
    /// `Bool(whether it was there)`.
    Discard(Bytes),
    Contains(Bytes),
    Len,
    /// Takes out any item: `Maybe`.
    Pop,
    Clear,
    /// Every item: `List`.
    Items,
    Update(Vec<Bytes>),
    IntersectionUpdate(Vec<Bytes>),
    DifferenceUpdate(Vec<Bytes>),
    SymmetricDifferenceUpdate(Vec<Bytes>),
}

/// A `set` in the manager (CPython 3.14's `SetProxy`). Items are compared
/// by their encoding, as a [`DictProxy`](crate::DictProxy)'s keys are. A
/// proxy in an item keeps its object alive while the set stores the item
/// (as a proxy in a dict's key does); an item only looked up (`contains`,
/// `discard`, the items given to `*_update`) keeps nothing.
///
/// The methods that change the set (`add`, `discard`, `remove`, `pop`,
/// `clear`, `update` and the other `*_update`) are each one atomic step on
/// the server; those that give a new set (`union`, `intersection`,
/// `difference`, `symmetric_difference`) or compare (`isdisjoint`,
/// `issubset`, `issuperset`) read the set in one round trip and work on
/// the plain `HashSet` here, as Python's operators give a plain `set`.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let s = m.set::<String>()?;
/// s.update(["a", "b", "c"].map(String::from))?;
/// assert!(s.contains(&"a".into())?);
/// s.remove(&"a".into())?;
/// assert!(matches!(s.remove(&"a".into()), Err(mp_manager::Error::Invalid { .. })));
/// s.intersection_update(["b".into(), "d".into()])?;
/// assert_eq!(s.copy()?, ["b".to_string()].into());
/// assert_eq!(s.union(["e".into()])?, ["b", "e"].map(String::from).into());
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct SetProxy<T> {
    inner: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(SetProxy<T>);

impl crate::SyncManager {
    /// A new shared `set` (CPython 3.14's `Manager().set()`).
    pub fn set<T: Payload + Eq + Hash>(&self) -> Result<SetProxy<T>> {
        Ok(crate::Proxy::from_reference(self.create(Kind::Set)?))
    }

    /// A new shared `set` of `items` (`Manager().set(items)`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let s = m.set_from(["a", "b", "a"].map(String::from))?;
    /// assert_eq!(s.len()?, 2);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn set_from<T: Payload + Eq + Hash>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<SetProxy<T>> {
        let s = self.set()?;
        s.update(items)?;
        Ok(s)
    }
}

impl<T: Payload + Eq + Hash> SetProxy<T> {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::Set(self.inner.id, op))
    }

    /// `op`, whose items hold the references `held` (one list per item, in
    /// order): the set keeps those of the items it stores while it stores
    /// them, and gives back the others when the call ends (a proxy in an
    /// item was lent a reference to be encoded).
    fn storing(&self, held: Vec<Vec<u64>>, op: Op) -> Result<Reply> {
        if held.iter().all(Vec::is_empty) {
            return self.op(op);
        }
        let id = self.inner.id;
        self.inner.call(&Request::SetHolding(id, held, op))
    }

    /// `v` encoded as an item here, with the references it holds.
    fn item(&self, v: &T) -> Result<(Bytes, Vec<u64>)> {
        enc_stored(v, &self.inner.link.address)
    }

    /// `op` made of `items`, encoded, with their references.
    fn items_op(
        &self,
        items: impl IntoIterator<Item = T>,
        op: impl FnOnce(Vec<Bytes>) -> Op,
    ) -> Result<Reply> {
        let mut held = Vec::new();
        let items = items
            .into_iter()
            .map(|v| {
                let (v, h) = self.item(&v)?;
                held.push(h);
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        self.storing(held, op(items))
    }

    /// `op` on the one item `v`.
    fn item_op(&self, v: &T, op: impl FnOnce(Bytes) -> Op) -> Result<Reply> {
        let (v, held) = self.item(v)?;
        self.storing(vec![held], op(v))
    }

    /// `s.add(v)`; whether `v` was new. A proxy in `v` keeps its object
    /// alive while the set keeps `v` (an item already there keeps the first
    /// one, as Python's set does).
    pub fn add(&self, v: T) -> Result<bool> {
        flag(self.item_op(&v, Op::Add)?)
    }

    /// `s.discard(v)`; whether `v` was there.
    pub fn discard(&self, v: &T) -> Result<bool> {
        flag(self.item_op(v, Op::Discard)?)
    }

    /// `s.remove(v)`; absent is [`Error::Invalid`](crate::Error::Invalid)
    /// (Python's `KeyError`).
    pub fn remove(&self, v: &T) -> Result<()> {
        match self.discard(v)? {
            true => Ok(()),
            false => Err(crate::Error::Invalid {
                what: "set.remove",
                reason: "no item of the set equals the value".into(),
            }),
        }
    }

    /// `v in s`.
    pub fn contains(&self, v: &T) -> Result<bool> {
        flag(self.item_op(v, Op::Contains)?)
    }

    /// `len(s)`.
    pub fn len(&self) -> Result<usize> {
        count(self.op(Op::Len)?)
    }

    /// `len(s) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `s.pop()`: takes out any item; `None` when empty (Python's
    /// `KeyError`).
    pub fn pop(&self) -> Result<Option<T>> {
        maybe(self.op(Op::Pop)?)
    }

    /// `s.clear()`.
    pub fn clear(&self) -> Result<()> {
        ok(self.op(Op::Clear)?)
    }

    /// `list(s)`, in one round trip (in no particular order).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        list(self.op(Op::Items)?)
    }

    /// `s.copy()`: the items as a plain `HashSet`, in one round trip.
    pub fn copy(&self) -> Result<HashSet<T>> {
        Ok(self.to_vec()?.into_iter().collect())
    }

    /// `s.update(items)` (`s |= items`), in one round trip.
    pub fn update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        ok(self.items_op(items, Op::Update)?)
    }

    /// `s.intersection_update(items)` (`s &= items`): keeps the items also
    /// in `items`.
    pub fn intersection_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        ok(self.items_op(items, Op::IntersectionUpdate)?)
    }

    /// `s.difference_update(items)` (`s -= items`): drops the items in
    /// `items`.
    pub fn difference_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        ok(self.items_op(items, Op::DifferenceUpdate)?)
    }

    /// `s.symmetric_difference_update(items)` (`s ^= items`): keeps the
    /// items in exactly one of the two.
    pub fn symmetric_difference_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        ok(self.items_op(items, Op::SymmetricDifferenceUpdate)?)
    }

    /// `s | items` (`s.union(items)`), a plain `HashSet`.
    pub fn union(&self, items: impl IntoIterator<Item = T>) -> Result<HashSet<T>> {
        let mut all = self.copy()?;
        all.extend(items);
        Ok(all)
    }

    /// `s & items` (`s.intersection(items)`), a plain `HashSet`.
    pub fn intersection(&self, items: impl IntoIterator<Item = T>) -> Result<HashSet<T>> {
        let mut mine = self.copy()?;
        Ok(items.into_iter().filter_map(|v| mine.take(&v)).collect())
    }

    /// `s - items` (`s.difference(items)`), a plain `HashSet`.
    pub fn difference(&self, items: impl IntoIterator<Item = T>) -> Result<HashSet<T>> {
        let mut mine = self.copy()?;
        for v in items {
            mine.remove(&v);
        }
        Ok(mine)
    }

    /// `s ^ items` (`s.symmetric_difference(items)`), a plain `HashSet`.
    pub fn symmetric_difference(&self, items: impl IntoIterator<Item = T>) -> Result<HashSet<T>> {
        let mut mine = self.copy()?;
        let theirs: HashSet<T> = items.into_iter().collect();
        for v in theirs {
            if !mine.remove(&v) {
                mine.insert(v);
            }
        }
        Ok(mine)
    }

    /// `s.isdisjoint(items)`: no item in common.
    pub fn isdisjoint(&self, items: impl IntoIterator<Item = T>) -> Result<bool> {
        let mine = self.copy()?;
        Ok(!items.into_iter().any(|v| mine.contains(&v)))
    }

    /// `s.issubset(items)` (`s <= items`; `s < items` is that and a
    /// smaller `len`).
    pub fn issubset(&self, items: impl IntoIterator<Item = T>) -> Result<bool> {
        let theirs: HashSet<T> = items.into_iter().collect();
        Ok(self.copy()?.is_subset(&theirs))
    }

    /// `s.issuperset(items)` (`s >= items`; `s > items` is that and a
    /// greater `len`).
    pub fn issuperset(&self, items: impl IntoIterator<Item = T>) -> Result<bool> {
        let mine = self.copy()?;
        Ok(items.into_iter().all(|v| mine.contains(&v)))
    }
}

/// A set in the server, of encoded items, each beside the references it
/// holds (the proxies in it).
pub(crate) struct Set(Guarded<HashMap<Bytes, Held>>);

impl Set {
    pub(crate) fn new() -> Set {
        Set(Guarded::new(HashMap::new()))
    }
}

impl Object for Set {}

impl Handler<Op> for Set {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        // The references of the items taken out, and of items not stored
        // (already there), are given back after the set's lock is let go;
        // those of items only looked up, when the call ends.
        let mut out = Vec::new();
        let reply = self.0.with(|s| match op {
            Op::Add(v) => {
                let held = call.held();
                Reply::Bool(insert(s, v, held, &mut out))
            }
            Op::Discard(v) => Reply::Bool(s.remove(&v).map(|h| out.push(h)).is_some()),
            Op::Contains(v) => Reply::Bool(s.contains_key(&v)),
            Op::Len => Reply::Count(s.len() as u64),
            Op::Pop => {
                let any = s.keys().next().cloned();
                // Its references go to the caller, which adopts them.
                Reply::Maybe(any.inspect(|v| {
                    if let Some(held) = s.remove(v) {
                        held.lend();
                    }
                }))
            }
            Op::Clear => {
                out.extend(s.drain().map(|(_, h)| h));
                Reply::Ok
            }
            Op::Items => Reply::List(s.keys().cloned().collect()),
            Op::Update(items) => {
                for v in items {
                    let held = call.held();
                    insert(s, v, held, &mut out);
                }
                Reply::Ok
            }
            Op::IntersectionUpdate(items) => {
                let keep: HashSet<Bytes> = items.into_iter().collect();
                let gone: Vec<Bytes> = s.keys().filter(|v| !keep.contains(*v)).cloned().collect();
                out.extend(gone.iter().filter_map(|v| s.remove(v)));
                Reply::Ok
            }
            Op::DifferenceUpdate(items) => {
                out.extend(items.iter().filter_map(|v| s.remove(v)));
                Reply::Ok
            }
            Op::SymmetricDifferenceUpdate(items) => {
                // Each distinct item once (the first), as Python makes a set
                // of them first.
                let mut theirs: HashMap<Bytes, Held> = HashMap::new();
                for v in items {
                    let held = call.held();
                    insert(&mut theirs, v, held, &mut out);
                }
                for (v, held) in theirs {
                    match s.remove(&v) {
                        Some(old) => out.extend([old, held]),
                        None => {
                            s.insert(v, held);
                        }
                    }
                }
                Reply::Ok
            }
        });
        drop(out);
        reply
    }
}

/// Adds `v`, whose references `held` holds, unless it is there: an item
/// already there keeps its references (Python keeps its first object), and
/// those of the new one go to `out`. Whether `v` was new.
fn insert(s: &mut HashMap<Bytes, Held>, v: Bytes, held: Held, out: &mut Vec<Held>) -> bool {
    match s.entry(v) {
        std::collections::hash_map::Entry::Occupied(_) => {
            out.push(held);
            false
        }
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(held);
            true
        }
    }
}
