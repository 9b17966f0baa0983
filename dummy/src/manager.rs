//! `Manager` on threads: plain in-process objects with the method names
//! (and `Result`s) of mp-manager's proxies, so code written for a
//! `SyncManager` reads the same.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_proc::plumbing::local::OrderedMap;
use mp_proc::{Error, Result};

use crate::registry::handle;
use crate::sync::lock;
use crate::{
    Array, Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Queue, RLock,
    Semaphore, Value,
};

/// `multiprocessing.dummy.Manager()`: its factories match
/// `mp_manager::SyncManager`'s, and give in-process objects.
///
/// ```
/// let m = mp_dummy::Manager::new();
/// let d = m.dict::<String, u32>()?;
/// d.insert("a".into(), 1)?;
/// assert_eq!(d.get(&"a".into())?, Some(1));
/// let l = m.list::<u32>()?;
/// l.extend([1, 2])?;
/// assert_eq!(l.to_vec()?, [1, 2]);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Manager;

impl Manager {
    /// A manager (nothing to start: the objects live in this process).
    pub fn new() -> Manager {
        Manager
    }

    /// A shared dict.
    pub fn dict<K: Eq + Hash + Clone, V: Clone>(&self) -> Result<Dict<K, V>> {
        Ok(Dict {
            inner: Arc::new(Mutex::new(OrderedMap::default())),
        })
    }

    /// A shared dict of `keys`, each with `value` (`dict.fromkeys`).
    pub fn dict_fromkeys<K: Eq + Hash + Clone, V: Clone>(
        &self,
        keys: impl IntoIterator<Item = K>,
        value: V,
    ) -> Result<Dict<K, V>> {
        let d = self.dict()?;
        d.update(keys.into_iter().map(|k| (k, value.clone())))?;
        Ok(d)
    }

    /// A shared list.
    pub fn list<T: Clone>(&self) -> Result<List<T>> {
        Ok(List {
            inner: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// A namespace.
    pub fn namespace(&self) -> Result<Namespace> {
        Ok(Namespace {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    /// A shared value.
    pub fn value<T: Clone>(&self, v: T) -> Result<Value<T>> {
        Value::new(v)
    }

    /// A shared fixed-length array.
    pub fn array<T: Clone>(&self, items: &[T]) -> Result<Array<T>> {
        Array::from_slice(items)
    }

    /// An unbounded queue.
    pub fn queue<T>(&self) -> Result<Queue<T>> {
        Queue::new()
    }

    /// A queue of at most `maxsize` items.
    pub fn queue_with_maxsize<T>(&self, maxsize: usize) -> Result<Queue<T>> {
        Queue::with_maxsize(maxsize)
    }

    /// A joinable queue.
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueue<T>> {
        JoinableQueue::new()
    }

    /// A joinable queue of at most `maxsize` items (0: unbounded).
    pub fn joinable_queue_with_maxsize<T>(&self, maxsize: usize) -> Result<JoinableQueue<T>> {
        JoinableQueue::with_maxsize(maxsize)
    }

    /// A lock.
    pub fn lock(&self) -> Result<Lock> {
        Lock::new()
    }

    /// A re-entrant lock.
    pub fn rlock(&self) -> Result<RLock> {
        RLock::new()
    }

    /// A semaphore.
    pub fn semaphore(&self, value: usize) -> Result<Semaphore> {
        Semaphore::new(value)
    }

    /// A bounded semaphore.
    pub fn bounded_semaphore(&self, value: usize) -> Result<BoundedSemaphore> {
        BoundedSemaphore::new(value)
    }

    /// A condition variable (over a new lock).
    pub fn condition(&self) -> Result<Condition> {
        Condition::new(None)
    }

    /// A condition variable over `lock` (several may share one), as
    /// `mp_manager::SyncManager::condition_over`.
    ///
    /// ```
    /// let m = mp_dummy::Manager::new();
    /// let lock = m.lock()?;
    /// let (a, b) = (m.condition_over(&lock)?, m.condition_over(&lock)?);
    /// let held = a.acquire()?;
    /// assert!(b.lock().try_acquire()?.is_none()); // the same lock
    /// drop(held);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn condition_over(&self, lock: &Lock) -> Result<Condition> {
        Condition::new(Some(lock.clone()))
    }

    /// An event.
    pub fn event(&self) -> Result<Event> {
        Event::new()
    }

    /// A barrier.
    pub fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<Barrier> {
        Barrier::new(parties, timeout)
    }

    /// A barrier whose `action` runs once each time it trips, before any
    /// party goes through, as `SyncManager::barrier_with_action` (here in
    /// the last thread to arrive; see [`Barrier::with_action`]).
    ///
    /// ```
    /// fn announce() {
    ///     println!("both threads arrived");
    /// }
    /// let m = mp_dummy::Manager::new();
    /// let b = m.barrier_with_action(2, announce, None)?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| b.wait().unwrap());
    ///     b.wait().unwrap();
    /// });
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn barrier_with_action(
        &self,
        parties: usize,
        action: fn(),
        timeout: Option<Duration>,
    ) -> Result<Barrier> {
        Barrier::with_action(parties, action, timeout)
    }

    /// A pool of `processes` worker threads (`None`: one per CPU), as
    /// `SyncManager::pool` makes a pool in its server: a
    /// [`ThreadPool`](crate::ThreadPool), with the proxy's method names.
    ///
    /// ```
    /// fn double(x: u32) -> u32 {
    ///     2 * x
    /// }
    /// let m = mp_dummy::Manager::new();
    /// let pool = m.pool(Some(2))?;
    /// assert_eq!(pool.apply(double, 4)?, 8);
    /// assert!(m.pool(Some(0)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool(&self, processes: Option<usize>) -> Result<crate::ThreadPool> {
        crate::ThreadPool::new(processes).map_err(|e| Error::Invalid {
            what: "Pool",
            reason: e.to_string(),
        })
    }
}

/// A dict shared by threads, with `DictProxy`'s methods; its keys keep
/// the order they were first inserted in (as a Python `dict`'s).
pub struct Dict<K, V> {
    inner: Arc<Mutex<OrderedMap<K, V>>>,
}

handle!(Dict<K, V>);

impl<K: Eq + Hash + Clone, V: Clone> Dict<K, V> {
    /// `d.get(k)`.
    pub fn get(&self, k: &K) -> Result<Option<V>> {
        Ok(lock(&self.inner).get(k).cloned())
    }

    /// `d[k] = v`; returns the value it replaced.
    pub fn insert(&self, k: K, v: V) -> Result<Option<V>> {
        Ok(lock(&self.inner).insert(k, v))
    }

    /// `d.pop(k, None)`.
    pub fn remove(&self, k: &K) -> Result<Option<V>> {
        Ok(lock(&self.inner).remove(k))
    }

    /// `k in d`.
    pub fn contains_key(&self, k: &K) -> Result<bool> {
        Ok(lock(&self.inner).contains_key(k))
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        Ok(lock(&self.inner).len())
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(lock(&self.inner).is_empty())
    }

    /// `list(d.keys())`, in insertion order (`reversed(d)` is
    /// `d.keys()?.into_iter().rev()`).
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(lock(&self.inner).iter().map(|(k, _)| k.clone()).collect())
    }

    /// `list(d.values())`.
    pub fn values(&self) -> Result<Vec<V>> {
        Ok(lock(&self.inner).iter().map(|(_, v)| v.clone()).collect())
    }

    /// `list(d.items())`.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        Ok(lock(&self.inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        lock(&self.inner).drain().for_each(drop);
        Ok(())
    }

    /// `d.update(pairs)`.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut d = lock(&self.inner);
        for (k, v) in pairs {
            d.insert(k, v);
        }
        Ok(())
    }

    /// `d.popitem()`: the pair inserted last; `None` when empty.
    ///
    /// ```
    /// let d = mp_dummy::Manager::new().dict_fromkeys(["a", "b"], 0)?;
    /// assert_eq!(d.popitem()?, Some(("b", 0)));
    /// assert_eq!(d.setdefault("c", 1)?, 1);
    /// assert_eq!(d.pop_or(&"z", 9)?, 9);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn popitem(&self) -> Result<Option<(K, V)>> {
        Ok(lock(&self.inner).pop_last())
    }

    /// `d.copy()`.
    pub fn copy(&self) -> Result<HashMap<K, V>> {
        Ok(self.items()?.into_iter().collect())
    }

    /// `d.setdefault(k, v)`.
    pub fn setdefault(&self, k: K, v: V) -> Result<V> {
        let mut d = lock(&self.inner);
        if let Some(old) = d.get(&k) {
            return Ok(old.clone());
        }
        d.insert(k, v.clone());
        Ok(v)
    }

    /// `d.pop(k, default)`.
    pub fn pop_or(&self, k: &K, default: V) -> Result<V> {
        Ok(self.remove(k)?.unwrap_or(default))
    }

    /// `d | other`, as a plain `HashMap`.
    pub fn union(&self, other: impl IntoIterator<Item = (K, V)>) -> Result<HashMap<K, V>> {
        let mut all = self.copy()?;
        all.extend(other);
        Ok(all)
    }
}

/// A list shared by threads, with `ListProxy`'s methods.
pub struct List<T> {
    inner: Arc<Mutex<Vec<T>>>,
}

handle!(List<T>);

impl<T: Clone> List<T> {
    /// `l.append(v)`.
    pub fn push(&self, v: T) -> Result<()> {
        lock(&self.inner).push(v);
        Ok(())
    }

    /// `l[i]`; out of range is an error.
    pub fn get(&self, i: usize) -> Result<T> {
        let items = lock(&self.inner);
        items.get(i).cloned().ok_or(Error::Index {
            what: "list",
            index: i,
            len: items.len(),
        })
    }

    /// `l[i] = v`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        crate::value::set_at(&mut lock(&self.inner), i, v, "list")
    }

    /// `l.pop()`; `None` when empty.
    pub fn pop(&self) -> Result<Option<T>> {
        Ok(lock(&self.inner).pop())
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize> {
        Ok(lock(&self.inner).len())
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(lock(&self.inner).is_empty())
    }

    /// `l.extend(items)`.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        lock(&self.inner).extend(items);
        Ok(())
    }

    /// `list(l)`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(lock(&self.inner).clone())
    }

    /// `l.copy()`: Python's name for [`to_vec`](Self::to_vec).
    pub fn copy(&self) -> Result<Vec<T>> {
        self.to_vec()
    }

    /// `l.pop(i)`; out of range is [`Error::Index`].
    pub fn pop_at(&self, i: usize) -> Result<T> {
        let mut items = lock(&self.inner);
        if i < items.len() {
            Ok(items.remove(i))
        } else {
            Err(Error::Index {
                what: "list",
                index: i,
                len: items.len(),
            })
        }
    }

    /// `l.insert(i, v)`; an index past the end appends.
    pub fn insert(&self, i: usize, v: T) -> Result<()> {
        let mut items = lock(&self.inner);
        let at = i.min(items.len());
        items.insert(at, v);
        Ok(())
    }

    /// `l.reverse()`.
    pub fn reverse(&self) -> Result<()> {
        lock(&self.inner).reverse();
        Ok(())
    }

    /// `l.clear()`.
    pub fn clear(&self) -> Result<()> {
        lock(&self.inner).clear();
        Ok(())
    }
}

impl<T: Clone + PartialEq> List<T> {
    /// `l.count(v)`.
    pub fn count(&self, v: &T) -> Result<usize> {
        Ok(lock(&self.inner).iter().filter(|x| *x == v).count())
    }

    /// `l.index(v)`; absent is [`Error::Invalid`] (`ValueError`).
    ///
    /// ```
    /// let l = mp_dummy::Manager::new().list::<char>()?;
    /// l.extend(['b', 'a'])?;
    /// assert_eq!(l.index(&'a')?, 1);
    /// assert!(matches!(l.index(&'z'), Err(mp_proc::Error::Invalid { .. })));
    /// l.sort()?;
    /// assert_eq!(l.to_vec()?, ['a', 'b']);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn index(&self, v: &T) -> Result<usize> {
        lock(&self.inner)
            .iter()
            .position(|x| x == v)
            .ok_or_else(|| not_in_list("list.index"))
    }

    /// `l.remove(v)`: the first equal item; absent is [`Error::Invalid`].
    pub fn remove(&self, v: &T) -> Result<()> {
        let mut items = lock(&self.inner);
        let i = items
            .iter()
            .position(|x| x == v)
            .ok_or_else(|| not_in_list("list.remove"))?;
        items.remove(i);
        Ok(())
    }
}

impl<T: Clone + Ord> List<T> {
    /// `l.sort()`, stable.
    pub fn sort(&self) -> Result<()> {
        lock(&self.inner).sort();
        Ok(())
    }
}

/// Python's `ValueError: list.index(x): x not in list`.
fn not_in_list(what: &'static str) -> Error {
    Error::Invalid {
        what,
        reason: "no item of the list equals the value".into(),
    }
}

type Attributes = BTreeMap<String, Box<dyn Any + Send>>;

/// A namespace shared by threads, with `NamespaceProxy`'s methods.
pub struct Namespace {
    inner: Arc<Mutex<Attributes>>,
}

handle!(Namespace);

impl Namespace {
    /// `ns.name = value`.
    pub fn set<T: Clone + Send + 'static>(&self, name: &str, value: &T) -> Result<()> {
        lock(&self.inner).insert(name.to_owned(), Box::new(value.clone()));
        Ok(())
    }

    /// `ns.name`; missing, or of another type, is an error.
    pub fn get<T: Clone + 'static>(&self, name: &str) -> Result<T> {
        lock(&self.inner)
            .get(name)
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
            .ok_or_else(|| Error::Attribute {
                object: "Namespace",
                name: name.to_owned(),
            })
    }

    /// `del ns.name`; missing is [`Error::Attribute`].
    ///
    /// ```
    /// let ns = mp_dummy::Manager::new().namespace()?;
    /// ns.set("name", &"Bob")?;
    /// ns.set("job", &"Builder")?;
    /// ns.remove("job")?;
    /// assert!(ns.remove("job").is_err());
    /// assert_eq!(ns.to_string(), "Namespace(name=…)");
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn remove(&self, name: &str) -> Result<()> {
        match lock(&self.inner).remove(name) {
            Some(_) => Ok(()),
            None => Err(Error::Attribute {
                object: "Namespace",
                name: name.to_owned(),
            }),
        }
    }

    /// The names of the attributes, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(lock(&self.inner).keys().cloned().collect())
    }
}

impl std::fmt::Display for Namespace {
    /// `Namespace(job=…, name=…)`, as mp-manager's `NamespaceProxy` shows
    /// itself: the names not starting with `_`, sorted, values elided.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = lock(&self.inner)
            .keys()
            .filter(|n| !n.starts_with('_'))
            .map(|n| format!("{n}=…"))
            .collect::<Vec<_>>();
        write!(f, "Namespace({})", names.join(", "))
    }
}
