//! `Value` and `Array` on threads, with mp-proc's names: `get`/`set`, and
//! `lock()` for a guard that reads and writes in place.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use mp_proc::{Error, Result, Shareable};

use crate::lock::{AnyLock, LockGuard, RLock};
use crate::registry::handle;
use crate::sync::lock;

/// The data of a [`Value`] (`T`) or an [`Array`] (`[T]`) and the lock that
/// guards it: its own `RLock` (CPython's default) or the one it was made
/// with (`lock=`).
pub(crate) struct Guarded<T: ?Sized> {
    lock: AnyLock,
    data: Mutex<Box<T>>,
}

impl<T: ?Sized> Guarded<T> {
    fn new(data: Box<T>, lock: Option<AnyLock>) -> Result<Arc<Guarded<T>>> {
        let lock = match lock {
            Some(l) => l,
            None => AnyLock::RLock(RLock::new()?),
        };
        Ok(Arc::new(Guarded {
            lock,
            data: Mutex::new(data),
        }))
    }

    /// Runs `f` on the data with the lock held (or, if this thread holds a
    /// `Lock` it guards, as it is: mp-proc's values do the same).
    fn with<R>(&self, f: impl FnOnce(&mut Box<T>) -> R) -> R {
        let _held = self.lock.acquire().ok();
        f(&mut lock(&self.data))
    }

    /// Takes the lock, then the data, until the guard drops.
    fn guard(&self) -> Result<SharedGuard<'_, T>> {
        let held = self.lock.acquire()?;
        Ok(SharedGuard {
            guard: lock(&self.data),
            _held: held,
        })
    }
}

/// Sets `items[i]` to `v`; an index out of range is [`Error::Index`] of
/// `what`.
pub(crate) fn set_at<T>(items: &mut [T], i: usize, v: T, what: &'static str) -> Result<()> {
    let len = items.len();
    let slot = items.get_mut(i).ok_or(Error::Index {
        what,
        index: i,
        len,
    })?;
    *slot = v;
    Ok(())
}

/// Holds the lock of a [`Value`] (`T`) or an [`Array`] (`[T]`) and gives
/// access to its data until dropped, as mp-proc's `SharedGuard`.
///
/// ```
/// let a = mp_dummy::Array::from_slice(&[1, 2, 3])?;
/// a.lock()?.reverse();
/// assert_eq!(a.to_vec(), [3, 2, 1]);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct SharedGuard<'a, T: ?Sized> {
    // Released before the lock.
    guard: MutexGuard<'a, Box<T>>,
    _held: LockGuard<'a>,
}

impl<T: ?Sized> Deref for SharedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for SharedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for SharedGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedGuard").field(&&**self).finish()
    }
}

/// A value shared by threads (`multiprocessing.dummy`'s `Value`).
///
/// ```
/// let v = mp_dummy::Value::new(1u32)?;
/// v.set(2);
/// assert_eq!(v.update(|x| *x += 1)?, 3);
/// *v.lock()? += 1;
/// assert_eq!(v.get(), 4);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Value<T> {
    inner: Arc<Guarded<T>>,
}

handle!(Value<T>);

impl<T: Clone> Value<T> {
    /// A new shared value.
    pub fn new(v: T) -> Result<Value<T>> {
        Ok(Value {
            inner: Guarded::new(Box::new(v), None)?,
        })
    }

    /// A value guarded by `lock` instead of a lock of its own, as
    /// mp-proc's `Value::with_lock` (CPython's `lock=`): values made with
    /// one lock exclude each other.
    ///
    /// ```
    /// let lock = mp_dummy::RLock::new()?;
    /// let a = mp_dummy::Value::with_lock(1u32, lock.clone())?;
    /// let b = mp_dummy::Value::with_lock(2u32, lock.clone())?;
    /// let both = lock.acquire()?;
    /// *a.lock()? -= 1;
    /// *b.lock()? += 1;
    /// drop(both);
    /// assert_eq!((a.get(), b.get()), (0, 3));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn with_lock(v: T, lock: impl Into<AnyLock>) -> Result<Value<T>> {
        Ok(Value {
            inner: Guarded::new(Box::new(v), Some(lock.into()))?,
        })
    }

    /// The lock that guards it (CPython's `get_lock()`): the one it was
    /// made with, or its own `RLock`. Holding it excludes
    /// [`lock`](Self::lock), [`get`](Self::get) and [`set`](Self::set) in
    /// other threads.
    ///
    /// ```
    /// let v = mp_dummy::Value::new(1u8)?;
    /// let lock = v.get_lock()?;
    /// let held = lock.acquire()?;
    /// assert!(lock.is_reentrant() && lock.locked());
    /// drop(held);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn get_lock(&self) -> Result<AnyLock> {
        Ok(self.inner.lock.clone())
    }

    /// The value.
    pub fn get(&self) -> T {
        self.inner.with(|v| T::clone(v))
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        self.inner.with(|slot| **slot = v)
    }

    /// Changes the value with `f` under its lock; returns the new value
    /// (Python's `with v.get_lock(): v.value += 1`).
    pub fn update(&self, f: impl FnOnce(&mut T)) -> Result<T> {
        let mut g = self.lock()?;
        f(&mut g);
        Ok(T::clone(&g))
    }

    /// Takes its lock and gives access to the value until the guard drops
    /// (`with v.get_lock():`), as mp-proc's `Value::lock`.
    ///
    /// ```
    /// let v = mp_dummy::Value::new(1i64)?;
    /// *v.lock()? += 1;
    /// assert_eq!(v.get(), 2);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn lock(&self) -> Result<SharedGuard<'_, T>> {
        self.inner.guard()
    }
}

/// A fixed-length array shared by threads (`Array`).
///
/// ```
/// let a = mp_dummy::Array::from_slice(&[1, 2, 3])?;
/// a.set(0, 10)?;
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// assert!(a.set(3, 0).is_err());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Array<T> {
    inner: Arc<Guarded<[T]>>,
}

handle!(Array<T>);

impl<T: Shareable> Array<T> {
    /// `len` zero-filled items, as mp-proc's `Array::new`: any
    /// [`Shareable`] type, whose every bit pattern (zero among them) is a
    /// value.
    ///
    /// ```
    /// let a = mp_dummy::Array::<f64>::new(3)?;
    /// assert_eq!(a.to_vec(), [0.0; 3]);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn new(len: usize) -> Result<Array<T>> {
        // Zeroed items come from the one place that makes them (without
        // `unsafe` here): mp-proc's zero-filled shared memory.
        Self::from_slice(&mp_proc::RawArray::<T>::new(len)?.to_vec())
    }
}

impl<T: Clone> Array<T> {
    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        Ok(Array {
            inner: Guarded::new(values.into(), None)?,
        })
    }

    /// A copy of `values` guarded by `lock` instead of a lock of its own,
    /// as mp-proc's `Array::with_lock`.
    ///
    /// ```
    /// let lock = mp_dummy::Lock::new()?;
    /// let a = mp_dummy::Array::with_lock(&[1, 2], lock.clone())?;
    /// assert_eq!(a.get_lock()?, lock.into());
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn with_lock(values: &[T], lock: impl Into<AnyLock>) -> Result<Array<T>> {
        Ok(Array {
            inner: Guarded::new(values.into(), Some(lock.into()))?,
        })
    }

    /// The lock that guards it, as [`Value::get_lock`].
    pub fn get_lock(&self) -> Result<AnyLock> {
        Ok(self.inner.lock.clone())
    }

    /// Its length (fixed: no lock needed).
    pub fn len(&self) -> usize {
        lock(&self.inner.data).len()
    }

    /// Whether it has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<T> {
        self.inner.with(|items| items.get(i).cloned())
    }

    /// Sets element `i`; an index out of range is an error.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.inner.with(|items| set_at(items, i, v, "Array"))
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        self.inner.with(|items| items.to_vec())
    }

    /// Takes its lock and gives access to the items until the guard drops,
    /// as mp-proc's `Array::lock`.
    ///
    /// ```
    /// let a = mp_dummy::Array::from_slice(&[1u8, 2, 3])?;
    /// a.lock()?[1] = 20;
    /// assert_eq!(a.lock()?.iter().sum::<u8>(), 24);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn lock(&self) -> Result<SharedGuard<'_, [T]>> {
        self.inner.guard()
    }
}
