//! `Value` and `Array` on threads, with mp-proc's names: `get`/`set`, and
//! `lock()` for a guard that reads and writes in place.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use mp_proc::{Error, Result, Shareable};

use crate::registry::handle;
use crate::sync::lock;

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
    guard: MutexGuard<'a, Box<T>>,
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
    inner: Arc<Mutex<Box<T>>>,
}

handle!(Value<T>);

impl<T: Clone> Value<T> {
    /// A new shared value.
    pub fn new(v: T) -> Result<Value<T>> {
        Ok(Value {
            inner: Arc::new(Mutex::new(Box::new(v))),
        })
    }

    /// The value.
    pub fn get(&self) -> T {
        T::clone(&lock(&self.inner))
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        **lock(&self.inner) = v;
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
        Ok(SharedGuard {
            guard: lock(&self.inner),
        })
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
    inner: Arc<Mutex<Box<[T]>>>,
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
            inner: Arc::new(Mutex::new(values.into())),
        })
    }

    /// Its length.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Whether it has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<T> {
        lock(&self.inner).get(i).cloned()
    }

    /// Sets element `i`; an index out of range is an error.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        let mut items = lock(&self.inner);
        let len = items.len();
        match items.get_mut(i) {
            Some(slot) => {
                *slot = v;
                Ok(())
            }
            None => Err(Error::Index {
                what: "Array",
                index: i,
                len,
            }),
        }
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        lock(&self.inner).to_vec()
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
        Ok(SharedGuard {
            guard: lock(&self.inner),
        })
    }
}
