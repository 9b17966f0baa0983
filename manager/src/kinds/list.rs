//! A shared `list` and a fixed-length array (Python's `Manager().Array`):
//! their requests, their proxies and their server side (one kind of
//! object, which an array never grows).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use mp_proc::Payload;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::protocol::{Bytes, Failure, Reply, Request};
use crate::proxy::{Reference, count, enc_stored, list, maybe, ok, one, proxy_handle};
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
    /// per value, in order).
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
}

/// A list in the server, or an array (`what` says which, for its
/// `IndexError`).
pub(crate) struct List {
    items: Guarded<Vec<Stored>>,
    what: &'static str,
}

impl List {
    pub(crate) fn new() -> List {
        List {
            items: Guarded::new(Vec::new()),
            what: "list",
        }
    }

    pub(crate) fn array(items: Vec<Bytes>) -> List {
        List {
            items: Guarded::new(items.into_iter().map(Stored::plain).collect()),
            what: "Array",
        }
    }
}

impl Object for List {}

impl Handler<Op> for List {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        // Values taken out are dropped (their references given back) after
        // the list's lock is let go.
        let mut out = None;
        let reply = self.items.with(|l| {
            let out_of_range = |index: u64, l: &[Stored]| {
                fail(Failure::Index {
                    what: self.what.into(),
                    index,
                    len: l.len() as u64,
                })
            };
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
                        out = Some(std::mem::replace(slot, call.stored(v)));
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
            }
        });
        drop(out);
        reply
    }
}
