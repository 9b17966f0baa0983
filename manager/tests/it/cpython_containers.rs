//! CPython's `_TestContainers` tests of a manager's list and dict (3.11's
//! `test_list`, `test_list_iter`, `test_list_proxy_in_list`, `test_dict`),
//! with the same inputs and assertions where the proxies have the operation.
//! CPython runs them in the manager's client, not in a child: so do these.
//! Python's slices and `+` are taken of `to_vec()`, a copy, as CPython's
//! `a[:]` is; `b *= 2` is `b.extend(b.to_vec())`.

use mp_manager::{ListProxy, SyncManager};
use mp_testkit::guard;

/// CPython: `_TestContainers.test_list`. Its `a.append('hello')` appends
/// 10 here: a list's items have one type.
#[test]
fn test_list() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let range = |n: i32| (0..n).collect::<Vec<_>>();
    let a = m.list::<i32>().unwrap();
    a.extend(range(10)).unwrap();
    assert_eq!(a.to_vec().unwrap(), range(10));

    let b = m.list::<i32>().unwrap();
    assert_eq!(b.to_vec().unwrap(), [] as [i32; 0]);
    b.extend(range(5)).unwrap();
    assert_eq!(b.to_vec().unwrap(), range(5));
    assert_eq!(b.get(2).unwrap(), 2);
    // b[2:10]: a slice past the end stops at the end.
    let v = b.to_vec().unwrap();
    assert_eq!(v[2..10.min(v.len())], [2, 3, 4]);

    // b *= 2
    b.extend(b.to_vec().unwrap()).unwrap();
    assert_eq!(b.to_vec().unwrap(), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    // b + [5, 6]: a new list, b unchanged.
    let sum = [b.to_vec().unwrap(), vec![5, 6]].concat();
    assert_eq!(sum, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(b.len().unwrap(), 10);
    assert_eq!(a.to_vec().unwrap(), range(10));

    // e = self.list([a, b]): a list of proxies.
    let e = m.list::<ListProxy<i32>>().unwrap();
    e.extend([a.clone(), b.clone()]).unwrap();
    let elements: Vec<Vec<i32>> = e
        .to_vec()
        .unwrap()
        .iter()
        .map(|l| l.to_vec().unwrap())
        .collect();
    assert_eq!(elements, [range(10), vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]);

    // f = self.list([a]); a.append(...): f[0] is a, not a copy.
    let f = m.list::<ListProxy<i32>>().unwrap();
    f.push(a.clone()).unwrap();
    a.push(10).unwrap();
    assert_eq!(f.get(0).unwrap().to_vec().unwrap(), range(11));
    drop((a, b, e, f));
    m.shutdown().unwrap();
}

/// CPython: `_TestContainers.test_list_iter`. A proxy has no iterator
/// kept in the server: `to_vec()` is the list at one moment, read whole,
/// and reading it again is not "exhausted" (so CPython's second half, an
/// item changed after `iter(a)` and seen by `next(it)`, has no mp form: a
/// change after `to_vec()` is not in it, as it would not be in `list(a)`).
#[test]
fn test_list_iter() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let a = m.list::<i32>().unwrap();
    a.extend(0..10).unwrap();
    let it: Vec<i32> = a.to_vec().unwrap();
    assert_eq!(it, (0..10).collect::<Vec<_>>());
    let before = a.to_vec().unwrap();
    a.set(0, 100).unwrap();
    assert_eq!(before[0], 0, "a copy");
    assert_eq!(a.to_vec().unwrap()[0], 100);
    drop(a);
    m.shutdown().unwrap();
}

/// CPython: `_TestContainers.test_list_proxy_in_list`. Its last lines (a
/// list appended to itself, then dropped) have no Rust form: a list's item
/// type cannot be the list's own type.
#[test]
fn test_list_proxy_in_list() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let a = m.list::<ListProxy<i32>>().unwrap();
    for _ in 0..3 {
        let inner = m.list::<i32>().unwrap();
        inner.extend(0..3).unwrap();
        a.push(inner).unwrap();
    }
    let inner = |i: usize| a.get(i).unwrap();
    let all: Vec<Vec<i32>> = (0..3).map(|i| inner(i).to_vec().unwrap()).collect();
    assert_eq!(all, vec![vec![0, 1, 2]; 3]);

    // a[0][-1] = 55
    let first = inner(0);
    first.set(first.len().unwrap() - 1, 55).unwrap();
    assert_eq!(inner(0).to_vec().unwrap(), [0, 1, 55]);
    for i in 1..3 {
        assert_eq!(inner(i).to_vec().unwrap(), [0, 1, 2]);
    }

    assert_eq!(inner(1).pop().unwrap(), Some(2));
    assert_eq!(inner(1).len().unwrap(), 2);
    for i in [0, 2] {
        assert_eq!(inner(i).len().unwrap(), 3);
    }
    // del a: the inner lists go with it.
    drop((first, a));
    assert_eq!(m.number_of_objects().unwrap(), 0);
    m.shutdown().unwrap();
}

/// CPython: `_TestContainers.test_dict`.
#[test]
fn test_dict() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let d = m.dict::<u32, char>().unwrap();
    let indices: Vec<u32> = (65..70).collect();
    let chr = |i: u32| char::from_u32(i).unwrap();
    for &i in &indices {
        d.insert(i, chr(i)).unwrap();
    }
    let copy = d.copy().unwrap();
    assert_eq!(copy, indices.iter().map(|&i| (i, chr(i))).collect());
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, indices);
    let mut values = d.values().unwrap();
    values.sort();
    assert_eq!(values, indices.iter().map(|&i| chr(i)).collect::<Vec<_>>());
    let mut items = d.items().unwrap();
    items.sort();
    assert_eq!(
        items,
        indices.iter().map(|&i| (i, chr(i))).collect::<Vec<_>>()
    );
    drop(d);
    m.shutdown().unwrap();
}
