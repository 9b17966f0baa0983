//! A set shared by threads, the twin of mp-manager's `SetProxy` (CPython
//! 3.14's `Manager().set()`).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use mp_proc::{Error, Result};

use crate::Manager;
use crate::registry::handle;
use crate::sync::lock;

impl Manager {
    /// A shared set.
    pub fn set<T: Eq + Hash + Clone>(&self) -> Result<Set<T>> {
        Ok(Set {
            inner: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// A shared set of `items`.
    pub fn set_from<T: Eq + Hash + Clone>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Set<T>> {
        let s = self.set()?;
        s.update(items)?;
        Ok(s)
    }
}

/// A set shared by threads, with `SetProxy`'s methods.
///
/// ```
/// let s = mp_dummy::Manager::new().set_from(["a", "b", "c"])?;
/// s.remove(&"a")?;
/// assert!(s.remove(&"a").is_err());
/// s.intersection_update(["b", "d"])?;
/// assert_eq!(s.copy()?, ["b"].into());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Set<T> {
    inner: Arc<Mutex<HashSet<T>>>,
}

handle!(Set<T>);

impl<T: Eq + Hash + Clone> Set<T> {
    /// `s.add(v)`; whether `v` was new.
    pub fn add(&self, v: T) -> Result<bool> {
        Ok(lock(&self.inner).insert(v))
    }

    /// `s.discard(v)`; whether `v` was there.
    pub fn discard(&self, v: &T) -> Result<bool> {
        Ok(lock(&self.inner).remove(v))
    }

    /// `s.remove(v)`; absent is [`Error::Invalid`] (`KeyError`).
    pub fn remove(&self, v: &T) -> Result<()> {
        match self.discard(v)? {
            true => Ok(()),
            false => Err(Error::Invalid {
                what: "set.remove",
                reason: "no item of the set equals the value".into(),
            }),
        }
    }

    /// `v in s`.
    pub fn contains(&self, v: &T) -> Result<bool> {
        Ok(lock(&self.inner).contains(v))
    }

    /// `len(s)`.
    pub fn len(&self) -> Result<usize> {
        Ok(lock(&self.inner).len())
    }

    /// `len(s) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(lock(&self.inner).is_empty())
    }

    /// `s.pop()`: any item; `None` when empty.
    pub fn pop(&self) -> Result<Option<T>> {
        let mut s = lock(&self.inner);
        let any = s.iter().next().cloned();
        Ok(any.inspect(|v| {
            s.remove(v);
        }))
    }

    /// `s.clear()`.
    pub fn clear(&self) -> Result<()> {
        lock(&self.inner).clear();
        Ok(())
    }

    /// `list(s)`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(lock(&self.inner).iter().cloned().collect())
    }

    /// `s.copy()`.
    pub fn copy(&self) -> Result<HashSet<T>> {
        Ok(lock(&self.inner).clone())
    }

    /// `s.update(items)` (`s |= items`).
    pub fn update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        lock(&self.inner).extend(items);
        Ok(())
    }

    /// `s.intersection_update(items)` (`s &= items`).
    pub fn intersection_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let keep: HashSet<T> = items.into_iter().collect();
        lock(&self.inner).retain(|v| keep.contains(v));
        Ok(())
    }

    /// `s.difference_update(items)` (`s -= items`).
    pub fn difference_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let mut s = lock(&self.inner);
        for v in items {
            s.remove(&v);
        }
        Ok(())
    }

    /// `s.symmetric_difference_update(items)` (`s ^= items`).
    pub fn symmetric_difference_update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let theirs: HashSet<T> = items.into_iter().collect();
        let mut s = lock(&self.inner);
        for v in theirs {
            if !s.remove(&v) {
                s.insert(v);
            }
        }
        Ok(())
    }

    /// `s | items`, a plain `HashSet`.
    pub fn union(&self, items: impl IntoIterator<Item = T>) -> Result<HashSet<T>> {
        let mut all = self.copy()?;
        all.extend(items);
        Ok(all)
    }

    /// `s & items`, a plain `HashSet`.
    pub fn intersection(&self, items: impl IntoIterator<Item = T>) -> Result<HashSet<T>> {
        let mut mine = self.copy()?;
        Ok(items.into_iter().filter_map(|v| mine.take(&v)).collect())
    }

    /// `s - items`, a plain `HashSet`.
    pub fn difference(&self, items: impl IntoIterator<Item = T>) -> Result<HashSet<T>> {
        let mut mine = self.copy()?;
        for v in items {
            mine.remove(&v);
        }
        Ok(mine)
    }

    /// `s ^ items`, a plain `HashSet`.
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

    /// `s.isdisjoint(items)`.
    pub fn isdisjoint(&self, items: impl IntoIterator<Item = T>) -> Result<bool> {
        let s = lock(&self.inner);
        Ok(!items.into_iter().any(|v| s.contains(&v)))
    }

    /// `s.issubset(items)` (`s <= items`).
    pub fn issubset(&self, items: impl IntoIterator<Item = T>) -> Result<bool> {
        let theirs: HashSet<T> = items.into_iter().collect();
        Ok(lock(&self.inner).is_subset(&theirs))
    }

    /// `s.issuperset(items)` (`s >= items`).
    pub fn issuperset(&self, items: impl IntoIterator<Item = T>) -> Result<bool> {
        let s = lock(&self.inner);
        Ok(items.into_iter().all(|v| s.contains(&v)))
    }
}
