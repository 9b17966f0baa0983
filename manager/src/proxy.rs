//! Proxies: handles to objects that live in the manager's server.

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::Payload;
use mp_proc::codec::{decode, encode};
use mp_proc::connection::Address;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Result;
use crate::link::thread_id;
use crate::link::{Link, unexpected};
use crate::protocol::{
    BarrierOp, Bytes, ConditionOp, DictOp, EventOp, ListOp, LockOp, NamespaceOp, QueueOp, Reply,
    Request, SemaphoreOp, ValueOp, Wait,
};

/// A counted reference to an object in a manager's server, the inside of
/// every proxy: the server counts references, so the object lives while a
/// proxy to it exists anywhere (a process that is killed gives its
/// references back with its connections).
#[doc(hidden)]
pub struct Reference {
    pub(crate) link: Arc<Link>,
    pub(crate) id: u64,
}

impl Reference {
    fn call(&self, r: &Request) -> Result<Reply> {
        self.link.call(r)
    }
}

impl std::fmt::Debug for Reference {
    /// Never shows the authkey.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.id, self.link.address)
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
    /// until the receiver adopts it. A copy never received (or stored in a
    /// dict or list entry that is later overwritten) keeps the object until
    /// the manager ends. The authkey goes along only to a child
    /// being started (CPython's rule: `get_spawning_popen()`), never into a
    /// dict or a queue.
    ///
    /// The bytes are signed with the manager's key (see
    /// [`HandleKey`](mp_proc::plumbing::HandleKey)): a receiver connects only to
    /// an address that a holder of that key wrote, so bytes from a peer
    /// without it never make a program answer another server's challenge
    /// with its key.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        self.link
            .call(&Request::Lend(self.id))
            .map_err(S::Error::custom)?;
        let key =
            mp_proc::plumbing::is_spawning().then(|| serde_bytes::Bytes::new(self.link.authkey()));
        let address = self.link.address.to_string();
        let tag = reference_tag(self.link.authkey(), &address, self.id);
        (address, self.id, key, serde_bytes::Bytes::new(&tag)).serialize(s)
    }
}

/// What a proxy's bytes are signed as.
const PROXY: &str = "manager proxy";

/// The tag of a reference to object `id` at `address`, under `authkey`.
fn reference_tag(authkey: &[u8], address: &str, id: u64) -> [u8; 16] {
    mp_proc::plumbing::HandleKey::new(authkey).sign(PROXY, &[address.as_bytes(), &id.to_le_bytes()])
}

impl<'de> Deserialize<'de> for Reference {
    /// Reconnects (once per process) with the key that came along, or the
    /// one this process reached that manager with, or this process's
    /// authkey; and adopts the reference its sender lent.
    ///
    /// The signature is checked before anything else: bytes that no holder
    /// of the key made are an error, and no connection is made.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Reference, D::Error> {
        use serde::de::Error as _;
        let (text, id, key, tag): (
            String,
            u64,
            Option<serde_bytes::ByteBuf>,
            serde_bytes::ByteBuf,
        ) = Deserialize::deserialize(d)?;
        let address: Address = text.parse().map_err(D::Error::custom)?;
        // A key that came with the bytes counts only in what this process
        // tree made for this process (a child's args): from a peer, a key of
        // its own would let it choose where this process connects.
        let key = match key {
            Some(k) if mp_proc::plumbing::is_receiving_from_parent() => k.into_vec(),
            _ => crate::link::known_key(&address),
        };
        if !mp_proc::plumbing::HandleKey::new(&key).verify(
            PROXY,
            &[text.as_bytes(), &id.to_le_bytes()],
            &tag,
        ) {
            return Err(mp_proc::plumbing::decode_failure(format!(
                "a proxy to {address} whose signature does not check under the key for that \
                 address: not made by a holder of the manager's key, or changed; not connecting"
            )));
        }
        let link = Link::to(&address, &key).map_err(D::Error::custom)?;
        link.call(&Request::Adopt(id)).map_err(D::Error::custom)?;
        Ok(Reference { link, id })
    }
}

/// A proxy type: made from a [`Reference`] (by a manager's factory
/// methods, or by [`BaseManager::create`](crate::BaseManager::create) for a
/// registered type id).
pub trait Proxy: Sized {
    #[doc(hidden)]
    fn from_reference(r: Reference) -> Self;
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
                write!(f, "{}({:?})", stringify!($name), self.r)
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

        impl$(<$($t),+>)? Proxy for $name$(<$($t),+>)? {
            fn from_reference(r: Reference) -> Self {
                $name { r, _t: PhantomData }
            }
        }
    };
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes> {
    Ok(Bytes::from(encode(v)?))
}

// The replies' shapes, checked and decoded.

fn ok(r: Reply) -> Result<()> {
    match r {
        Reply::Ok => Ok(()),
        r => Err(unexpected(r)),
    }
}

fn flag(r: Reply) -> Result<bool> {
    match r {
        Reply::Bool(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

fn count(r: Reply) -> Result<usize> {
    match r {
        Reply::Count(n) => Ok(n as usize),
        r => Err(unexpected(r)),
    }
}

fn maybe<T: serde::de::DeserializeOwned>(r: Reply) -> Result<Option<T>> {
    match r {
        Reply::Maybe(v) => v.map(|b| decode(&b)).transpose(),
        r => Err(unexpected(r)),
    }
}

fn one<T: serde::de::DeserializeOwned>(r: Reply) -> Result<T> {
    maybe(r)?.ok_or_else(|| unexpected(Reply::Maybe(None)))
}

fn list<T: serde::de::DeserializeOwned>(r: Reply) -> Result<Vec<T>> {
    match r {
        Reply::List(l) => l.iter().map(|b| decode(b)).collect(),
        r => Err(unexpected(r)),
    }
}

/// The methods a list and a (fixed-length) array share.
macro_rules! list_methods {
    () => {
        fn op(&self, op: ListOp) -> Result<Reply> {
            self.r.call(&Request::List(self.r.id, op))
        }

        /// `l[i]`; an index out of range is an error (`IndexError`).
        pub fn get(&self, i: usize) -> Result<T> {
            one(self.op(ListOp::Get(i as u64))?)
        }

        /// `l[i] = v`; an index out of range is an error.
        pub fn set(&self, i: usize, v: T) -> Result<()> {
            ok(self.op(ListOp::Set(i as u64, enc(&v)?))?)
        }

        /// `len(l)`.
        pub fn len(&self) -> Result<usize> {
            count(self.op(ListOp::Len)?)
        }

        /// `len(l) == 0`.
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }

        /// `list(l)`, in one round trip.
        pub fn to_vec(&self) -> Result<Vec<T>> {
            list(self.op(ListOp::ToVec)?)
        }
    };
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
    _t: PhantomData<fn() -> (K, V)>,
}

proxy_handle!(DictProxy<K, V>);

impl<K: Payload + Eq + Hash, V: Payload> DictProxy<K, V> {
    fn op(&self, op: DictOp) -> Result<Reply> {
        self.r.call(&Request::Dict(self.r.id, op))
    }

    /// `d.get(k)`.
    pub fn get(&self, k: &K) -> Result<Option<V>> {
        maybe(self.op(DictOp::Get(enc(k)?))?)
    }

    /// `d[k] = v`; returns the value it replaced.
    pub fn insert(&self, k: K, v: V) -> Result<Option<V>> {
        maybe(self.op(DictOp::Insert(enc(&k)?, enc(&v)?))?)
    }

    /// `d.pop(k, None)`.
    pub fn remove(&self, k: &K) -> Result<Option<V>> {
        maybe(self.op(DictOp::Remove(enc(k)?))?)
    }

    /// `k in d`.
    pub fn contains_key(&self, k: &K) -> Result<bool> {
        flag(self.op(DictOp::ContainsKey(enc(k)?))?)
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        count(self.op(DictOp::Len)?)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `list(d.keys())`, in one round trip.
    pub fn keys(&self) -> Result<Vec<K>> {
        list(self.op(DictOp::Keys)?)
    }

    /// `list(d.values())`, in one round trip.
    pub fn values(&self) -> Result<Vec<V>> {
        list(self.op(DictOp::Values)?)
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
        ok(self.op(DictOp::Clear)?)
    }

    /// `d.update(pairs)`, in one round trip.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect::<Result<Vec<_>>>()?;
        ok(self.op(DictOp::Update(pairs))?)
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
    list_methods!();

    /// `l.append(v)`.
    pub fn push(&self, v: T) -> Result<()> {
        ok(self.op(ListOp::Push(enc(&v)?))?)
    }

    /// `l.pop()`; `None` when empty.
    pub fn pop(&self) -> Result<Option<T>> {
        maybe(self.op(ListOp::Pop)?)
    }

    /// `l.extend(items)`, in one round trip.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        ok(self.op(ListOp::Extend(items))?)
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
    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        ok(self.r.call(&Request::Namespace(
            self.r.id,
            NamespaceOp::Set(name.into(), enc(value)?),
        ))?)
    }

    /// `ns.name`; a missing one is an error (`AttributeError`).
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        one(self.r.call(&Request::Namespace(
            self.r.id,
            NamespaceOp::Get(name.into()),
        ))?)
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
    /// `v.value`.
    pub fn get(&self) -> Result<T> {
        one(self.r.call(&Request::Value(self.r.id, ValueOp::Get))?)
    }

    /// `v.value = new`.
    pub fn set(&self, new: T) -> Result<()> {
        ok(self
            .r
            .call(&Request::Value(self.r.id, ValueOp::Set(enc(&new)?)))?)
    }
}

/// The methods of `mp_proc::Queue`, for the two queue proxies.
macro_rules! queue_methods {
    () => {
        fn op(&self, op: QueueOp) -> Result<Reply> {
            self.r.call(&Request::Queue(self.r.id, op))
        }

        fn put_wait(&self, item: &T, wait: Wait) -> Result<()> {
            ok(self.op(QueueOp::Put(enc(item)?, wait))?)
        }

        fn get_wait(&self, wait: Wait) -> Result<T> {
            one(self.op(QueueOp::Get(wait))?)
        }

        /// `q.put(item)`: waits for room in a bounded queue.
        pub fn put(&self, item: T) -> Result<()> {
            self.put_wait(&item, None)
        }

        /// `q.put(item, timeout=...)`: [`Error::Full`](crate::Error::Full)
        /// if there is no room in time.
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
            self.put_wait(&item, Some(timeout))
        }

        /// `q.put_nowait(item)`.
        pub fn try_put(&self, item: T) -> Result<()> {
            self.put_wait(&item, Some(Duration::ZERO))
        }

        /// `q.get()`: waits for an item. If this process dies while it
        /// waits, the item it would have got stays in the queue.
        pub fn get(&self) -> Result<T> {
            self.get_wait(None)
        }

        /// `q.get(timeout=...)`: [`Error::Empty`](crate::Error::Empty) if
        /// none comes in time.
        pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
            self.get_wait(Some(timeout))
        }

        /// `q.get_nowait()`.
        pub fn try_get(&self) -> Result<T> {
            self.get_wait(Some(Duration::ZERO))
        }

        /// `q.qsize()`.
        pub fn qsize(&self) -> Result<usize> {
            count(self.op(QueueOp::Qsize)?)
        }

        /// `q.empty()`.
        pub fn empty(&self) -> Result<bool> {
            Ok(self.qsize()? == 0)
        }

        /// `q.full()`: whether a bounded queue has `maxsize` items.
        pub fn full(&self) -> Result<bool> {
            flag(self.op(QueueOp::Full)?)
        }
    };
}

/// A `queue.Queue` in the manager (Python's `Manager().Queue()`), with the
/// method names of `mp_proc::Queue`.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let q = m.queue::<String>()?;
/// q.put("hello".into())?;
/// assert_eq!(q.qsize()?, 1);
/// assert_eq!(q.get()?, "hello");
/// assert!(matches!(q.try_get(), Err(mp_manager::Error::Empty)));
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct QueueProxy<T> {
    r: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(QueueProxy<T>);

impl<T: Payload> QueueProxy<T> {
    queue_methods!();
}

/// A `queue.Queue` with `task_done` and `join` (Python's
/// `Manager().JoinableQueue()`).
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let q = m.joinable_queue::<u32>()?;
/// q.put(1)?;
/// assert_eq!(q.get()?, 1);
/// q.task_done()?;
/// q.join()?; // every item put is done
/// assert!(q.task_done().is_err());
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct JoinableQueueProxy<T> {
    r: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(JoinableQueueProxy<T>);

impl<T: Payload> JoinableQueueProxy<T> {
    queue_methods!();

    /// `q.task_done()`: one item taken is done.
    pub fn task_done(&self) -> Result<()> {
        ok(self.op(QueueOp::TaskDone)?)
    }

    /// `q.join()`: waits until every item put is done.
    pub fn join(&self) -> Result<()> {
        ok(self.op(QueueOp::Join(None))?)
    }

    /// As [`join`](Self::join), for at most `timeout`
    /// ([`Error::Timeout`](crate::Error::Timeout) then).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        ok(self.op(QueueOp::Join(Some(timeout)))?)
    }
}

/// A lock held through a proxy: released when dropped (Python's `with lock:`).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ProxyGuard<'a> {
    r: &'a Reference,
    release: Request,
    /// Released on the thread that holds it.
    _not_send: PhantomData<*const ()>,
}

impl ProxyGuard<'_> {
    /// Releases now, reporting an error (dropping the guard ignores it).
    pub fn release(self) -> Result<()> {
        let r = self.r.call(&self.release);
        std::mem::forget(self);
        r.and_then(ok)
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = self.r.call(&self.release);
    }
}

impl std::fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyGuard({:?})", self.r)
    }
}

/// The acquire and release methods of the lock proxies.
macro_rules! lock_methods {
    ($request:ident, $op:ident) => {
        fn acquire_wait(&self, wait: Wait) -> Result<Option<ProxyGuard<'_>>> {
            let thread = thread_id();
            let got = flag(self.r.call(&Request::$request(
                self.r.id,
                thread,
                $op::Acquire(wait),
            ))?)?;
            Ok(got.then(|| ProxyGuard {
                r: &self.r,
                release: Request::$request(self.r.id, thread, $op::Release),
                _not_send: PhantomData,
            }))
        }

        /// `acquire()`: waits for the lock; it is released when the guard
        /// is dropped. If this process dies holding it, it is released.
        pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
            self.acquire_wait(None)?
                .ok_or_else(|| crate::link::remote("acquire without a timeout gave up".into()))
        }

        /// `acquire(blocking=False)`.
        pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
            self.acquire_wait(Some(Duration::ZERO))
        }

        /// `acquire(timeout=...)`: `None` if the lock was not free in time.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<ProxyGuard<'_>>> {
            self.acquire_wait(Some(timeout))
        }
    };
}

/// A `threading.Lock` in the manager (Python's `Manager().Lock()`).
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let lock = m.lock()?;
/// {
///     let _held = lock.acquire()?;
///     assert!(lock.locked()?);
///     assert!(lock.try_acquire()?.is_none());
/// }
/// assert!(!lock.locked()?);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct LockProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(LockProxy);

impl LockProxy {
    lock_methods!(Lock, LockOp);

    /// `release()`: any thread may release a `Lock` (as `threading.Lock`).
    pub fn release(&self) -> Result<()> {
        ok(self
            .r
            .call(&Request::Lock(self.r.id, thread_id(), LockOp::Release))?)
    }

    /// `locked()`.
    pub fn locked(&self) -> Result<bool> {
        flag(
            self.r
                .call(&Request::Lock(self.r.id, thread_id(), LockOp::Locked))?,
        )
    }
}

/// A `threading.RLock` in the manager (Python's `Manager().RLock()`): the
/// owning thread may take it again.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let lock = m.rlock()?;
/// let a = lock.acquire()?;
/// let b = lock.acquire()?; // the same thread again
/// drop(b);
/// drop(a);
/// assert!(lock.release().is_err()); // not held any more
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct RLockProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(RLockProxy);

impl RLockProxy {
    lock_methods!(Lock, LockOp);

    /// `release()`: one level, by the owning thread.
    pub fn release(&self) -> Result<()> {
        ok(self
            .r
            .call(&Request::Lock(self.r.id, thread_id(), LockOp::Release))?)
    }
}

/// The methods of the two semaphore proxies.
macro_rules! semaphore_methods {
    () => {
        fn acquire_wait(&self, wait: Wait) -> Result<bool> {
            flag(
                self.r
                    .call(&Request::Semaphore(self.r.id, SemaphoreOp::Acquire(wait)))?,
            )
        }

        /// `acquire()`: waits until the value is positive and decrements
        /// it. A process that dies in the wait takes nothing.
        pub fn acquire(&self) -> Result<()> {
            self.acquire_wait(None).map(|_| ())
        }

        /// `acquire(blocking=False)`.
        pub fn try_acquire(&self) -> Result<bool> {
            self.acquire_wait(Some(Duration::ZERO))
        }

        /// `acquire(timeout=...)`: false if it was not acquired in time.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            self.acquire_wait(Some(timeout))
        }

        /// `release()`: increments the value.
        pub fn release(&self) -> Result<()> {
            ok(self
                .r
                .call(&Request::Semaphore(self.r.id, SemaphoreOp::Release))?)
        }

        /// The current value (`get_value()`).
        pub fn value(&self) -> Result<usize> {
            count(
                self.r
                    .call(&Request::Semaphore(self.r.id, SemaphoreOp::Value))?,
            )
        }
    };
}

/// A `threading.Semaphore` in the manager.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let s = m.semaphore(1)?;
/// assert!(s.try_acquire()?);
/// assert!(!s.try_acquire()?);
/// s.release()?;
/// assert_eq!(s.value()?, 1);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct SemaphoreProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(SemaphoreProxy);

impl SemaphoreProxy {
    semaphore_methods!();
}

/// A `threading.BoundedSemaphore` in the manager: releasing above the
/// initial value is [`Error::TooManyReleases`](crate::Error::TooManyReleases).
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let s = m.bounded_semaphore(1)?;
/// assert!(s.release().is_err());
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct BoundedSemaphoreProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(BoundedSemaphoreProxy);

impl BoundedSemaphoreProxy {
    semaphore_methods!();
}

/// A `threading.Condition` in the manager, with an `RLock`; the methods of
/// `mp_proc::Condition`.
///
/// ```
/// use std::time::Duration;
/// let m = mp_manager::SyncManager::start()?;
/// let c = m.condition()?;
/// let held = c.acquire()?;
/// c.notify_all()?;
/// let (held, notified) = c.wait_timeout(held, Duration::from_millis(1))?;
/// assert!(!notified);
/// drop(held);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct ConditionProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(ConditionProxy);

impl ConditionProxy {
    lock_methods!(Condition, ConditionOp);

    fn op(&self, op: ConditionOp) -> Result<Reply> {
        self.r.call(&Request::Condition(self.r.id, thread_id(), op))
    }

    /// `release()`: one level, by the owning thread.
    pub fn release(&self) -> Result<()> {
        ok(self.op(ConditionOp::Release)?)
    }

    /// `wait()`: releases the lock, waits for a notification, and takes
    /// the lock again.
    pub fn wait<'a>(&self, guard: ProxyGuard<'a>) -> Result<ProxyGuard<'a>> {
        Ok(self.wait_until(guard, None)?.0)
    }

    /// `wait(timeout)`: the flag is false when the time ran out.
    pub fn wait_timeout<'a>(
        &self,
        guard: ProxyGuard<'a>,
        timeout: Duration,
    ) -> Result<(ProxyGuard<'a>, bool)> {
        self.wait_until(guard, Some(timeout))
    }

    fn wait_until<'a>(&self, guard: ProxyGuard<'a>, wait: Wait) -> Result<(ProxyGuard<'a>, bool)> {
        let notified = flag(self.op(ConditionOp::Wait(wait))?)?;
        Ok((guard, notified))
    }

    /// `wait_for(predicate, timeout)`: waits until `predicate()` is true
    /// (checked with the lock held), for at most `timeout` (`None`:
    /// forever); returns its last value.
    pub fn wait_for<'a>(
        &self,
        guard: ProxyGuard<'a>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(ProxyGuard<'a>, bool)> {
        mp_proc::plumbing::wait_for_with(guard, predicate, timeout, |g, until| {
            let left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            self.wait_until(g, left)
        })
    }

    /// `notify(n)`: wakes up to `n` waiters (the lock must be held).
    pub fn notify(&self, n: usize) -> Result<()> {
        ok(self.op(ConditionOp::Notify(n as u64))?)
    }

    /// `notify_all()`.
    pub fn notify_all(&self) -> Result<()> {
        ok(self.op(ConditionOp::NotifyAll)?)
    }
}

/// A `threading.Event` in the manager.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let e = m.event()?;
/// assert!(!e.wait(Some(std::time::Duration::ZERO))?);
/// e.set()?;
/// assert!(e.is_set()? && e.wait(None)?);
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct EventProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(EventProxy);

impl EventProxy {
    fn op(&self, op: EventOp) -> Result<Reply> {
        self.r.call(&Request::Event(self.r.id, op))
    }

    /// `set()`: wakes every waiter.
    pub fn set(&self) -> Result<()> {
        ok(self.op(EventOp::Set)?)
    }

    /// `clear()`.
    pub fn clear(&self) -> Result<()> {
        ok(self.op(EventOp::Clear)?)
    }

    /// `is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        flag(self.op(EventOp::IsSet)?)
    }

    /// `wait(timeout)`: whether the flag is set (`None`: wait forever).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        flag(self.op(EventOp::Wait(timeout))?)
    }
}

/// A `threading.Barrier` in the manager.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// let b = m.barrier(1, None)?;
/// assert_eq!(b.wait()?, 0); // one party: passes at once
/// b.abort()?;
/// assert!(b.broken()?);
/// assert!(matches!(b.wait(), Err(mp_manager::Error::BrokenBarrier)));
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct BarrierProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(BarrierProxy);

impl BarrierProxy {
    fn op(&self, op: BarrierOp) -> Result<Reply> {
        self.r.call(&Request::Barrier(self.r.id, op))
    }

    /// `wait()`: waits for every party (with the barrier's own timeout);
    /// returns this caller's index, `0..parties`.
    /// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier) if the barrier
    /// breaks (abort, reset, or a waiter's timeout).
    pub fn wait(&self) -> Result<usize> {
        count(self.op(BarrierOp::Wait(None))?)
    }

    /// `wait(timeout)`: a timeout breaks the barrier, as in Python.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        count(self.op(BarrierOp::Wait(Some(timeout)))?)
    }

    /// `abort()`: breaks the barrier.
    pub fn abort(&self) -> Result<()> {
        ok(self.op(BarrierOp::Abort)?)
    }

    /// `reset()`: waiters now get `BrokenBarrier`; the barrier is whole again.
    pub fn reset(&self) -> Result<()> {
        ok(self.op(BarrierOp::Reset)?)
    }

    /// `broken`.
    pub fn broken(&self) -> Result<bool> {
        flag(self.op(BarrierOp::Broken)?)
    }

    /// `n_waiting`.
    pub fn n_waiting(&self) -> Result<usize> {
        count(self.op(BarrierOp::NWaiting)?)
    }

    /// `parties`.
    pub fn parties(&self) -> Result<usize> {
        count(self.op(BarrierOp::Parties)?)
    }
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
/// assert!(a.get(3).is_err());
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct ArrayProxy<T> {
    r: Reference,
    _t: PhantomData<fn() -> T>,
}

proxy_handle!(ArrayProxy<T>);

impl<T: Payload> ArrayProxy<T> {
    list_methods!();
}

/// A proxy to an object of a type registered with a
/// [`BaseManager`](crate::BaseManager): its methods are called by name
/// (Python's `BaseProxy._callmethod`).
///
/// ```
/// use mp_manager::{Args, BaseManager, BaseProxy, Served, no_such_method, reply};
///
/// #[derive(Default)]
/// struct Counter(u64);
///
/// impl Served for Counter {
///     fn call_method(&mut self, method: &str, args: Args<'_>) -> mp_manager::Result<Vec<u8>> {
///         match method {
///             "add" => {
///                 self.0 += args.decode::<u64>()?;
///                 reply(&self.0)
///             }
///             _ => Err(no_such_method("Counter", method)),
///         }
///     }
/// }
///
/// fn main() -> mp_manager::Result<()> {
///     mp_proc::init();
///     let m = BaseManager::builder()
///         .register::<Counter>("Counter", Counter::default)
///         .start()?;
///     let c: BaseProxy = m.create("Counter")?;
///     assert_eq!(c.call_method::<u64, u64>("add", &2)?, 2);
///     assert!(c.call_method::<(), ()>("nope", &()).is_err());
///     Ok(())
/// }
/// ```
pub struct BaseProxy {
    r: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(BaseProxy);

impl BaseProxy {
    /// Calls `method` with `args` (a tuple for several) and decodes its
    /// result. A method that fails or panics in the server is this call's
    /// error; the object and the server go on.
    pub fn call_method<A: Serialize + ?Sized, R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R> {
        match self
            .r
            .call(&Request::Call(self.r.id, method.to_owned(), enc(args)?))?
        {
            Reply::Value(b) => decode(&b),
            r => Err(unexpected(r)),
        }
    }
}
