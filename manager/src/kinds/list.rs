//! A shared `list` and a fixed-length array (Python's `Manager().Array`):
//! their requests, their proxies and their server side (one kind of
//! object, which an array never grows).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use mp_proc::Payload;
use mp_proc::codec::decode;
use serde::{Deserialize, Serialize};

use crate::Result;

use crate::link::unexpected;
use crate::protocol::{Bytes, Failure, Reply, Request};
use crate::proxy::{Reference, count, enc_stored, flag, list, maybe, ok, one, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object, Stored, fail};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Push(Bytes),
    Get(u64),
    Set(u64, Bytes),
    Pop,
    Len,
    Extend(Vec<Bytes>),
    ToVec,
    /// How many items equal this one (by encoding).
    Count(Bytes),
    /// The first index of an item equal to this one: `Count(i)`, or
    /// `Bool(false)` if there is none.
    Index(Bytes),
    Reverse,
    /// `pop(i)`.
    PopAt(u64),
    /// `insert(i, v)`; an index past the end appends.
    Insert(u64, Bytes),
    /// Removes the first item equal to this one: `Bool(found)`.
    Remove(Bytes),
    Clear,
    /// The items and the list's version (`Reply::Versioned`).
    Snapshot,
    /// Reorders the items, the new `i`th being the old `perm[i]`, if the
    /// list is still at this version (`Bool(done)`); `perm` must be a
    /// permutation of the indices.
    Permute(u64, Vec<u64>),
}

/// A fixed-length array in the manager (Python's `Manager().Array`).
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let a = m.array(&[1i32, 2, 3])?;
/// a.set(0, 10)?;
/// assert_eq!(a.get(0)?, 10);
/// assert_eq!(a.len()?, 3);
/// assert_eq!(a.to_vec()?, [10, 2, 3]);
/// assert!(matches!(a.get(3), Err(mp_manager::Error::Index { index: 3, len: 3, .. })));
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct ArrayProxy<T> {
    inner: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(ArrayProxy<T>);

impl<T: Payload> ArrayProxy<T> {
    fn op(&self, op: Op) -> Result<Reply> {
        self.inner.call(&Request::List(self.inner.id, op))
    }

    /// `op`, which stores values holding the references `held` (one list
    /// per value, in order). The references of a value that the op only
    /// compares (`count`, `index`, `remove`) are given back when it ends:
    /// a proxy in it was lent one to be encoded.
    fn storing(&self, held: Vec<Vec<u64>>, op: Op) -> Result<Reply> {
        if held.iter().all(Vec::is_empty) {
            return self.op(op);
        }
        let id = self.inner.id;
        self.inner.call(&Request::ListHolding(id, held, op))
    }

    /// `v` encoded to be stored here.
    fn value(&self, v: &T) -> Result<(Bytes, Vec<u64>)> {
        enc_stored(v, &self.inner.link.address)
    }

    /// `l[i]`; an index out of range is
    /// [`Error::Index`](crate::Error::Index) (`IndexError`).
    pub fn get(&self, i: usize) -> Result<T> {
        one(self.op(Op::Get(i as u64))?)
    }

    /// `l[i] = v`; an index out of range is
    /// [`Error::Index`](crate::Error::Index).
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        let (v, held) = self.value(&v)?;
        ok(self.storing(vec![held], Op::Set(i as u64, v))?)
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize> {
        count(self.op(Op::Len)?)
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `list(l)`, in one round trip.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        list(self.op(Op::ToVec)?)
    }
}

/// A `list` in the manager (Python's `ListProxy`): an
/// [`ArrayProxy`]'s methods (`get`, `set`, `len`, `is_empty`, `to_vec`),
/// and it grows.
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
    inner: ArrayProxy<T>,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(ListProxy<T>);

impl<T> Deref for ListProxy<T> {
    type Target = ArrayProxy<T>;

    fn deref(&self) -> &ArrayProxy<T> {
        &self.inner
    }
}

impl<T: Payload> ListProxy<T> {
    /// `l.append(v)`. A proxy in `v` keeps its object alive while the list
    /// keeps `v`.
    pub fn push(&self, v: T) -> Result<()> {
        let (v, held) = self.value(&v)?;
        ok(self.storing(vec![held], Op::Push(v))?)
    }

    /// `l.pop()`; `None` when empty.
    pub fn pop(&self) -> Result<Option<T>> {
        maybe(self.op(Op::Pop)?)
    }

    /// `l.extend(items)`, in one round trip.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let mut held = Vec::new();
        let items = items
            .into_iter()
            .map(|v| {
                let (v, h) = self.value(&v)?;
                held.push(h);
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        ok(self.storing(held, Op::Extend(items))?)
    }

    /// `l.count(v)`: how many items equal `v`. Items are compared by their
    /// encoding, as a [`DictProxy`](crate::DictProxy)'s keys are: exact
    /// for integers, strings, and structs, enums and sequences of them;
    /// a float's `0.0` and `-0.0` differ, and a `NaN` equals itself.
    pub fn count(&self, v: &T) -> Result<usize> {
        let (v, held) = self.value(v)?;
        count(self.storing(vec![held], Op::Count(v))?)
    }

    /// `l.index(v)`: the index of the first item equal to `v` (compared as
    /// by [`count`](Self::count)); none is
    /// [`Error::Invalid`](crate::Error::Invalid) (Python's `ValueError`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let l = m.list::<char>()?;
    /// l.extend(['a', 'b', 'a'])?;
    /// assert_eq!(l.index(&'b')?, 1);
    /// assert_eq!(l.count(&'a')?, 2);
    /// assert!(matches!(l.index(&'z'), Err(mp_manager::Error::Invalid { .. })));
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn index(&self, v: &T) -> Result<usize> {
        let (v, held) = self.value(v)?;
        match self.storing(vec![held], Op::Index(v))? {
            Reply::Bool(false) => Err(not_in_list("list.index")),
            r => count(r),
        }
    }

    /// `l.remove(v)`: removes the first item equal to `v` (compared as by
    /// [`count`](Self::count)); none is
    /// [`Error::Invalid`](crate::Error::Invalid) (Python's `ValueError`).
    pub fn remove(&self, v: &T) -> Result<()> {
        let (v, held) = self.value(v)?;
        match flag(self.storing(vec![held], Op::Remove(v))?)? {
            true => Ok(()),
            false => Err(not_in_list("list.remove")),
        }
    }

    /// `l.pop(i)`: takes out the item at `i`; an index out of range is
    /// [`Error::Index`](crate::Error::Index) (`IndexError`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let l = m.list::<u32>()?;
    /// l.extend([1, 2, 3])?;
    /// assert_eq!(l.pop_at(0)?, 1);
    /// l.insert(1, 9)?;
    /// l.insert(100, 4)?; // past the end: appended, as Python does
    /// assert_eq!(l.to_vec()?, [2, 9, 3, 4]);
    /// assert!(matches!(l.pop_at(4), Err(mp_manager::Error::Index { index: 4, len: 4, .. })));
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn pop_at(&self, i: usize) -> Result<T> {
        one(self.op(Op::PopAt(i as u64))?)
    }

    /// `l.insert(i, v)`: `v` goes before the item at `i`; an index past the
    /// end appends (as in Python). A proxy in `v` keeps its object alive
    /// while the list keeps `v`.
    pub fn insert(&self, i: usize, v: T) -> Result<()> {
        let (v, held) = self.value(&v)?;
        ok(self.storing(vec![held], Op::Insert(i as u64, v))?)
    }

    /// `l.reverse()`, in place.
    pub fn reverse(&self) -> Result<()> {
        ok(self.op(Op::Reverse)?)
    }

    /// `l.clear()`.
    pub fn clear(&self) -> Result<()> {
        ok(self.op(Op::Clear)?)
    }

    /// `l.copy()`: Python's name for [`to_vec`](ArrayProxy::to_vec), a
    /// plain `Vec` of the items in one round trip.
    pub fn copy(&self) -> Result<Vec<T>> {
        self.to_vec()
    }

    /// `l.sort()`: sorts the list in place, stably, by `T`'s order.
    ///
    /// The server holds the items encoded and cannot order them: this
    /// process reads them with the list's version, sorts them here, and
    /// asks the server to reorder its items, which it does only if nobody
    /// changed the list in between (else this reads again). So a sort is
    /// atomic with respect to every other client: no item is lost or
    /// duplicated by a concurrent `push` or `set`. A list that changes
    /// under every one of many attempts is an
    /// [`Error::Invalid`](crate::Error::Invalid) rather than a call that
    /// never ends.
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let l = m.list::<i32>()?;
    /// l.extend([3, -1, 2])?;
    /// l.sort()?;
    /// assert_eq!(l.to_vec()?, [-1, 2, 3]);
    /// l.reverse()?;
    /// assert_eq!(l.to_vec()?, [3, 2, -1]);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        for _ in 0..SORT_ATTEMPTS {
            let (version, items) = match self.op(Op::Snapshot)? {
                Reply::Versioned(version, items) => (version, items),
                r => return Err(unexpected(r)),
            };
            let items = items
                .iter()
                .map(|b| decode::<T>(b))
                .collect::<Result<Vec<_>>>()?;
            let mut perm: Vec<usize> = (0..items.len()).collect();
            perm.sort_by(|&a, &b| items[a].cmp(&items[b]));
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return Ok(()); // sorted when read
            }
            let perm = perm.into_iter().map(|p| p as u64).collect();
            if flag(self.op(Op::Permute(version, perm))?)? {
                return Ok(());
            }
        }
        Err(crate::Error::Invalid {
            what: "list.sort",
            reason: format!(
                "the list changed while it was being sorted, {SORT_ATTEMPTS} times in a row"
            ),
        })
    }
}

/// How many times [`ListProxy::sort`] reads a list that others keep changing.
const SORT_ATTEMPTS: usize = 100;

/// Python's `ValueError: list.index(x): x not in list`.
fn not_in_list(what: &'static str) -> crate::Error {
    crate::Error::Invalid {
        what,
        reason: "no item of the list equals the value".into(),
    }
}

/// A list in the server, or an array (`what` says which, for its
/// `IndexError`).
pub(crate) struct List {
    items: Guarded<Items>,
    what: &'static str,
}

/// A list's items, and its version: a number that every change moves on
/// (a sort reorders the items only if nobody changed them since it read
/// them).
struct Items {
    items: Vec<Stored>,
    version: u64,
}

impl List {
    pub(crate) fn new() -> List {
        List::of(Vec::new(), "list")
    }

    pub(crate) fn array(items: Vec<Bytes>) -> List {
        List::of(items.into_iter().map(Stored::plain).collect(), "Array")
    }

    fn of(items: Vec<Stored>, what: &'static str) -> List {
        List {
            items: Guarded::new(Items { items, version: 0 }),
            what,
        }
    }
}

impl Object for List {}

impl Op {
    /// Python's name of the op, if it may change the list's length.
    fn resizes(&self) -> Option<&'static str> {
        match self {
            Op::Push(_) => Some("append"),
            Op::Pop | Op::PopAt(_) => Some("pop"),
            Op::Extend(_) => Some("extend"),
            Op::Insert(..) => Some("insert"),
            Op::Remove(_) => Some("remove"),
            Op::Clear => Some("clear"),
            _ => None,
        }
    }

    /// Whether the op may change the list (and so moves its version on).
    fn changes(&self) -> bool {
        !matches!(
            self,
            Op::Get(_)
                | Op::Len
                | Op::ToVec
                | Op::Count(_)
                | Op::Index(_)
                | Op::Snapshot
                // Moves the version on itself, only if it reorders.
                | Op::Permute(..)
        )
    }
}

impl Handler<Op> for List {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        // An array keeps its length, whatever proxy the request came from
        // (a proxy's bytes do not say its kind).
        if let Some(name) = op.resizes().filter(|_| self.what == "Array") {
            return fail(Failure::Attribute {
                object: self.what.into(),
                name: name.into(),
            });
        }
        // Values taken out are dropped (their references given back) after
        // the list's lock is let go.
        let mut out = Vec::new();
        let reply = self.items.with(|state| {
            if op.changes() {
                state.version = state.version.wrapping_add(1);
            }
            let version = &mut state.version;
            let l = &mut state.items;
            let out_of_range = |index: u64, l: &[Stored]| {
                fail(Failure::Index {
                    what: self.what.into(),
                    index,
                    len: l.len() as u64,
                })
            };
            let position = |v: &Bytes, l: &[Stored]| l.iter().position(|x| x.bytes == *v);
            match op {
                Op::Push(v) => {
                    l.push(call.stored(v));
                    Reply::Ok
                }
                Op::Get(i) => match usize::try_from(i).ok().and_then(|i| l.get(i)) {
                    Some(v) => Reply::Maybe(Some(v.bytes.clone())),
                    None => out_of_range(i, l),
                },
                Op::Set(i, v) => match usize::try_from(i).ok().and_then(|i| l.get_mut(i)) {
                    Some(slot) => {
                        out.push(std::mem::replace(slot, call.stored(v)));
                        Reply::Ok
                    }
                    None => out_of_range(i, l),
                },
                Op::Pop => Reply::Maybe(l.pop().map(Stored::into_reply)),
                Op::Len => Reply::Count(l.len() as u64),
                Op::Extend(items) => {
                    l.extend(items.into_iter().map(|v| call.stored(v)));
                    Reply::Ok
                }
                Op::ToVec => Reply::List(l.iter().map(|v| v.bytes.clone()).collect()),
                Op::Count(v) => Reply::Count(l.iter().filter(|x| x.bytes == v).count() as u64),
                Op::Index(v) => match position(&v, l) {
                    Some(i) => Reply::Count(i as u64),
                    None => Reply::Bool(false),
                },
                Op::Reverse => {
                    l.reverse();
                    Reply::Ok
                }
                Op::PopAt(i) => match usize::try_from(i).ok().filter(|&i| i < l.len()) {
                    Some(i) => Reply::Maybe(Some(l.remove(i).into_reply())),
                    None => out_of_range(i, l),
                },
                Op::Insert(i, v) => {
                    let at = usize::try_from(i).map_or(l.len(), |i| i.min(l.len()));
                    l.insert(at, call.stored(v));
                    Reply::Ok
                }
                Op::Remove(v) => match position(&v, l) {
                    Some(i) => {
                        out.push(l.remove(i));
                        Reply::Bool(true)
                    }
                    None => Reply::Bool(false),
                },
                Op::Clear => {
                    out.append(l);
                    Reply::Ok
                }
                Op::Snapshot => {
                    Reply::Versioned(*version, l.iter().map(|v| v.bytes.clone()).collect())
                }
                Op::Permute(seen, perm) => {
                    if seen != *version {
                        Reply::Bool(false)
                    } else if let Some(perm) = permutation(&perm, l.len()) {
                        let mut old: Vec<Option<Stored>> = l.drain(..).map(Some).collect();
                        l.extend(perm.into_iter().filter_map(|p| old[p].take()));
                        *version = version.wrapping_add(1);
                        Reply::Bool(true)
                    } else {
                        fail(Failure::Remote(format!(
                            "not a permutation of the {} items of the list",
                            l.len()
                        )))
                    }
                }
            }
        });
        drop(out);
        reply
    }
}

/// `perm` as indices, if it is a permutation of `0..len`.
fn permutation(perm: &[u64], len: usize) -> Option<Vec<usize>> {
    if perm.len() != len {
        return None;
    }
    let mut seen = vec![false; len];
    perm.iter()
        .map(|&p| {
            let p = usize::try_from(p).ok().filter(|&p| p < len)?;
            (!std::mem::replace(&mut seen[p], true)).then_some(p)
        })
        .collect()
}
