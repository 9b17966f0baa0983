//! A shared `set` (CPython 3.14's `Manager().set()`): its requests, its
//! proxy and its server side.

use std::collections::HashSet;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::Payload;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Kind, Reply, Request};
use crate::proxy::{Reference, count, enc, flag, list, maybe, ok, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object};

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
/// by their encoding, as a [`DictProxy`](crate::DictProxy)'s keys are.
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

    fn encoded(items: impl IntoIterator<Item = T>) -> Result<Vec<Bytes>> {
        items.into_iter().map(|v| enc(&v)).collect()
    }

    /// `s.add(v)`; whether `v` was new.
    pub fn add(&self, v: T) -> Result<bool> {
        flag(self.op(Op::Add(enc(&v)?))?)
    }

    /// `s.discard(v)`; whether `v` was there.
    pub fn discard(&self, v: &T) -> Result<bool> {
        flag(self.op(Op::Discard(enc(v)?))?)
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
        flag(self.op(Op::Contains(enc(v)?))?)
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
        ok(self.op(Op::Update(Self::encoded(items)?))?)
    }

    /// `s.intersection_update(items)` (`s &= items`): keeps the items also
    /// in `items`.
    pub fn intersection_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        ok(self.op(Op::IntersectionUpdate(Self::encoded(items)?))?)
    }

    /// `s.difference_update(items)` (`s -= items`): drops the items in
    /// `items`.
    pub fn difference_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        ok(self.op(Op::DifferenceUpdate(Self::encoded(items)?))?)
    }

    /// `s.symmetric_difference_update(items)` (`s ^= items`): keeps the
    /// items in exactly one of the two.
    pub fn symmetric_difference_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        ok(self.op(Op::SymmetricDifferenceUpdate(Self::encoded(items)?))?)
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

/// A set in the server, of encoded items.
pub(crate) struct Set(Guarded<HashSet<Bytes>>);

impl Set {
    pub(crate) fn new() -> Set {
        Set(Guarded::new(HashSet::new()))
    }
}

impl Object for Set {}

impl Handler<Op> for Set {
    fn serve(self: Arc<Self>, op: Op, _: &mut Call<'_>) -> Reply {
        self.0.with(|s| match op {
            Op::Add(v) => Reply::Bool(s.insert(v)),
            Op::Discard(v) => Reply::Bool(s.remove(&v)),
            Op::Contains(v) => Reply::Bool(s.contains(&v)),
            Op::Len => Reply::Count(s.len() as u64),
            Op::Pop => {
                let any = s.iter().next().cloned();
                Reply::Maybe(any.inspect(|v| {
                    s.remove(v);
                }))
            }
            Op::Clear => {
                s.clear();
                Reply::Ok
            }
            Op::Items => Reply::List(s.iter().cloned().collect()),
            Op::Update(items) => {
                s.extend(items);
                Reply::Ok
            }
            Op::IntersectionUpdate(items) => {
                let keep: HashSet<Bytes> = items.into_iter().collect();
                s.retain(|v| keep.contains(v));
                Reply::Ok
            }
            Op::DifferenceUpdate(items) => {
                for v in items {
                    s.remove(&v);
                }
                Reply::Ok
            }
            Op::SymmetricDifferenceUpdate(items) => {
                // Each distinct item once, as Python makes a set of them.
                let theirs: HashSet<Bytes> = items.into_iter().collect();
                for v in theirs {
                    if !s.remove(&v) {
                        s.insert(v);
                    }
                }
                Reply::Ok
            }
        })
    }
}
