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
use crate::proxy::{Reference, count, enc, list, maybe, ok, one, proxy_handle};
use crate::server::object::{Call, Guarded, Handler, Object, fail};

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

    /// `l[i]`; an index out of range is
    /// [`Error::Index`](crate::Error::Index) (`IndexError`).
    pub fn get(&self, i: usize) -> Result<T> {
        one(self.op(Op::Get(i as u64))?)
    }

    /// `l[i] = v`; an index out of range is
    /// [`Error::Index`](crate::Error::Index).
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        ok(self.op(Op::Set(i as u64, enc(&v)?))?)
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
    /// `l.append(v)`.
    pub fn push(&self, v: T) -> Result<()> {
        ok(self.op(Op::Push(enc(&v)?))?)
    }

    /// `l.pop()`; `None` when empty.
    pub fn pop(&self) -> Result<Option<T>> {
        maybe(self.op(Op::Pop)?)
    }

    /// `l.extend(items)`, in one round trip.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        ok(self.op(Op::Extend(items))?)
    }
}

/// A list in the server, or an array (`what` says which, for its
/// `IndexError`).
pub(crate) struct List {
    items: Guarded<Vec<Bytes>>,
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
            items: Guarded::new(items),
            what: "Array",
        }
    }
}

impl Object for List {}

impl Handler<Op> for List {
    fn serve(self: Arc<Self>, op: Op, _: &mut Call<'_>) -> Reply {
        self.items.with(|l| {
            let out_of_range = |index: u64, l: &[Bytes]| {
                fail(Failure::Index {
                    what: self.what.into(),
                    index,
                    len: l.len() as u64,
                })
            };
            match op {
                Op::Push(v) => {
                    l.push(v);
                    Reply::Ok
                }
                Op::Get(i) => match usize::try_from(i).ok().and_then(|i| l.get(i)) {
                    Some(v) => Reply::Maybe(Some(v.clone())),
                    None => out_of_range(i, l),
                },
                Op::Set(i, v) => match usize::try_from(i).ok().and_then(|i| l.get_mut(i)) {
                    Some(slot) => {
                        *slot = v;
                        Reply::Ok
                    }
                    None => out_of_range(i, l),
                },
                Op::Pop => Reply::Maybe(l.pop()),
                Op::Len => Reply::Count(l.len() as u64),
                Op::Extend(items) => {
                    l.extend(items);
                    Reply::Ok
                }
                Op::ToVec => Reply::List(l.clone()),
            }
        })
    }
}
