//! A map that keeps its keys' insertion order, as a Python `dict` does:
//! mp-dummy's `Dict` and mp-manager's served dict are both this map.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map that keeps its keys in the order they were first inserted (a new
/// value for a key keeps its place; a key removed and inserted again goes
/// last). Each key has a slot number, the next one when it is inserted, so
/// every operation is `O(log n)`.
///
/// ```
/// use mp_proc::plumbing::local::OrderedMap;
///
/// let mut d = OrderedMap::default();
/// d.insert("b", 1);
/// d.insert("a", 2);
/// d.insert("b", 3);
/// assert_eq!(d.iter().collect::<Vec<_>>(), [(&"b", &3), (&"a", &2)]);
/// assert_eq!(d.pop_last(), Some(("a", 2)));
/// ```
#[derive(Debug)]
pub struct OrderedMap<K, V> {
    slots: HashMap<K, u64>,
    entries: BTreeMap<u64, (K, V)>,
    next: u64,
}

impl<K, V> Default for OrderedMap<K, V> {
    fn default() -> Self {
        OrderedMap {
            slots: HashMap::new(),
            entries: BTreeMap::new(),
            next: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V> OrderedMap<K, V> {
    /// The value under `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        let slot = self.slots.get(k)?;
        self.entries.get(slot).map(|(_, v)| v)
    }

    /// The value of `k`, to change in place (its order stays).
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let slot = self.slots.get(k)?;
        self.entries.get_mut(slot).map(|(_, v)| v)
    }

    /// Whether `k` is in the map.
    pub fn contains_key(&self, k: &K) -> bool {
        self.slots.contains_key(k)
    }

    /// Inserts `v` under `k`; the value it replaced (which keeps its place).
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if let Some((_, old)) = self.slots.get(&k).and_then(|s| self.entries.get_mut(s)) {
            return Some(std::mem::replace(old, v));
        }
        if self.next == u64::MAX {
            self.renumber();
        }
        let slot = self.next;
        self.next += 1;
        self.slots.insert(k.clone(), slot);
        self.entries.insert(slot, (k, v));
        None
    }

    /// Numbers the slots from 0 again, in order (once every 2^64 inserts).
    fn renumber(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        for (slot, (k, v)) in (0..).zip(entries.into_values()) {
            self.slots.insert(k.clone(), slot);
            self.entries.insert(slot, (k, v));
        }
        self.next = self.entries.len() as u64;
    }

    /// Takes out the value under `k`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let slot = self.slots.remove(k)?;
        self.entries.remove(&slot).map(|(_, v)| v)
    }

    /// Takes out the pair inserted last (Python's `popitem()`).
    pub fn pop_last(&mut self) -> Option<(K, V)> {
        let (_, (k, v)) = self.entries.pop_last()?;
        self.slots.remove(&k);
        Some((k, v))
    }

    /// How many keys it has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pairs, in insertion order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.entries.values().map(|(k, v)| (k, v))
    }

    /// Takes out every pair, in insertion order.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + use<K, V> {
        self.slots.clear();
        std::mem::take(&mut self.entries).into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::OrderedMap;

    #[test]
    fn the_order_survives_renumbering() {
        let mut d = OrderedMap::default();
        d.insert(1, "a");
        d.insert(2, "b");
        d.next = u64::MAX;
        d.insert(3, "c");
        d.remove(&1);
        d.insert(1, "d");
        let keys: Vec<_> = d.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [2, 3, 1]);
        assert_eq!(d.next, 4);
    }
}
