//! `SetProxy` (CPython 3.14's `Manager().set()`): CPython's
//! `TestSyncManagerTypes.test_set` and `test_set_init`, the set made in
//! the parent and used by a child through the manager.

use std::collections::HashSet;

use mp_manager::{Error, SetProxy, SyncManager};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(set_methods_in_a_child, set_init);

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn items(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// CPython's `_test_set_operator_symbols`: the operators as their methods
/// (`|` is `union`, `|=` is `update`, and so on).
fn operator_symbols(obj: SetProxy<String>) {
    obj.update(items(&["a", "b", "c"])).unwrap();
    assert_eq!(obj.len().unwrap(), 3);
    assert!(obj.contains(&"a".into()).unwrap());
    assert!(!obj.contains(&"d".into()).unwrap());
    // obj | {'d', 'e'}, and {'d', 'e'} | obj
    assert_eq!(
        obj.union(items(&["d", "e"])).unwrap(),
        set(&["a", "b", "c", "d", "e"])
    );
    obj.update(items(&["d", "e"])).unwrap();
    assert_eq!(obj.copy().unwrap(), set(&["a", "b", "c", "d", "e"]));

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    // {'a', 'b', 'd'} - obj
    let mut result = set(&["a", "b", "d"]);
    result.retain(|v| !obj.contains(v).unwrap());
    assert_eq!(result, set(&["d"]));
    assert_eq!(obj.difference(items(&["a", "b"])).unwrap(), set(&["c"]));
    obj.difference_update(items(&["a", "b"])).unwrap();
    assert_eq!(obj.copy().unwrap(), set(&["c"]));

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    let sym = obj.symmetric_difference(items(&["b", "c", "d"])).unwrap();
    assert_eq!(sym, set(&["a", "d"]));
    obj.symmetric_difference_update(items(&["b", "c", "d"]))
        .unwrap();
    assert_eq!(obj.copy().unwrap(), set(&["a", "d"]));

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    let and = obj.intersection(items(&["b", "c", "d"])).unwrap();
    assert_eq!(and, set(&["b", "c"]));
    obj.intersection_update(items(&["b", "c", "d"])).unwrap();
    assert_eq!(obj.copy().unwrap(), set(&["b", "c"]));

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    assert_eq!(
        obj.to_vec().unwrap().into_iter().collect::<HashSet<_>>(),
        set(&["a", "b", "c"])
    );
}

/// CPython's `_test_set_operator_methods`.
fn operator_methods(obj: SetProxy<String>) {
    obj.add("d".into()).unwrap();
    assert!(obj.contains(&"d".into()).unwrap());

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    let copy_obj = obj.copy().unwrap();
    assert_eq!(copy_obj, obj.copy().unwrap());
    obj.remove(&"a".into()).unwrap();
    assert!(!obj.contains(&"a".into()).unwrap());
    // KeyError
    assert!(matches!(
        obj.remove(&"a".into()),
        Err(Error::Invalid {
            what: "set.remove",
            ..
        })
    ));

    obj.clear().unwrap();
    obj.update(items(&["a"])).unwrap();
    obj.discard(&"a".into()).unwrap();
    assert!(!obj.contains(&"a".into()).unwrap());
    obj.discard(&"a".into()).unwrap();
    assert!(!obj.contains(&"a".into()).unwrap());
    obj.update(items(&["a"])).unwrap();
    let popped = obj.pop().unwrap().unwrap();
    assert!(!obj.contains(&popped).unwrap());

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    let result = obj.intersection(items(&["b", "c", "d"])).unwrap();
    assert_eq!(result, set(&["b", "c"]));
    obj.intersection_update(items(&["b", "c", "d"])).unwrap();
    assert_eq!(obj.copy().unwrap(), set(&["b", "c"]));

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    assert_eq!(obj.difference(items(&["a", "b"])).unwrap(), set(&["c"]));
    obj.difference_update(items(&["a", "b"])).unwrap();
    assert_eq!(obj.copy().unwrap(), set(&["c"]));

    obj.clear().unwrap();
    obj.update(items(&["a", "b", "c"])).unwrap();
    let result = obj.symmetric_difference(items(&["b", "c", "d"])).unwrap();
    assert_eq!(result, set(&["a", "d"]));
    obj.symmetric_difference_update(items(&["b", "c", "d"]))
        .unwrap();
    assert_eq!(obj.copy().unwrap(), set(&["a", "d"]));
}

/// CPython's `_test_set_comparisons` (`<` is `issubset` with a smaller
/// `len`, `>` `issuperset` with a greater one).
fn comparisons(obj: SetProxy<String>) {
    obj.update(items(&["a", "b", "c"])).unwrap();
    let result = obj.union(items(&["d", "e"])).unwrap();
    assert_eq!(result, set(&["a", "b", "c", "d", "e"]));
    assert!(obj.isdisjoint(items(&["d", "e"])).unwrap());
    assert!(!obj.isdisjoint(items(&["a", "d"])).unwrap());

    assert!(obj.issubset(items(&["a", "b", "c", "d"])).unwrap());
    assert!(!obj.issubset(items(&["a", "b"])).unwrap());
    // obj < {'a', 'b', 'c', 'd'}; obj <= {'a', 'b', 'c'}
    assert!(obj.issubset(items(&["a", "b", "c", "d"])).unwrap() && obj.len().unwrap() < 4);
    assert!(obj.issubset(items(&["a", "b", "c"])).unwrap());

    assert!(obj.issuperset(items(&["a", "b"])).unwrap());
    assert!(!obj.issuperset(items(&["a", "b", "d"])).unwrap());
    // obj > {'a'}; obj >= {'a', 'b'}
    assert!(obj.issuperset(items(&["a"])).unwrap() && obj.len().unwrap() > 1);
    assert!(obj.issuperset(items(&["a", "b"])).unwrap());
}

fn run_worker(method: StartMethod, worker: fn(SetProxy<String>), obj: SetProxy<String>) {
    let mut p = Process::new(worker, obj).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0, "the worker failed");
}

/// CPython's `TestSyncManagerTypes.test_set` (3.14).
fn set_methods_in_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.set::<String>().unwrap();
    run_worker(method, operator_symbols, o.clone());
    assert_eq!(
        o.copy().unwrap(),
        set(&["a", "b", "c"]),
        "what the child left"
    );
    let o = m.set::<String>().unwrap();
    run_worker(method, operator_methods, o.clone());
    assert_eq!(o.copy().unwrap(), set(&["a", "d"]));
    let o = m.set::<String>().unwrap();
    run_worker(method, comparisons, o);
    m.shutdown().unwrap();
}

/// CPython's `TestSyncManagerTypes.test_set_init` (3.14): from a set, a
/// list (repeats once), a dict's keys. (`set(1234)`, a `RemoteError` in
/// Python, does not type-check in Rust.)
fn set_init(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.set_from(set(&["a", "b", "c"])).unwrap();
    assert_eq!(o.copy().unwrap(), set(&["a", "b", "c"]));
    let o = m.set_from(items(&["a", "b", "c", "a"])).unwrap();
    assert_eq!(o.copy().unwrap(), set(&["a", "b", "c"]));
    assert_eq!(o.len().unwrap(), 3);
    let d: std::collections::HashMap<String, i32> =
        [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)].into();
    let o = m.set_from(d.into_keys()).unwrap();
    assert_eq!(o.copy().unwrap(), set(&["a", "b", "c"]));
    m.shutdown().unwrap();
}

#[test]
fn set_methods_at_their_edges() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let s = m.set::<u32>().unwrap();
    assert!(s.is_empty().unwrap());
    // pop of an empty set: Python's KeyError.
    assert_eq!(s.pop().unwrap(), None);
    assert!(s.add(1).unwrap(), "new");
    assert!(!s.add(1).unwrap(), "already there");
    assert!(s.discard(&1).unwrap());
    assert!(!s.discard(&1).unwrap());
    // Repeats in the argument count once (Python makes a set of it).
    s.update([1, 2]).unwrap();
    s.symmetric_difference_update([2, 2, 3, 3]).unwrap();
    assert_eq!(s.copy().unwrap(), [1, 3].into());
    assert_eq!(s.symmetric_difference([3, 3, 4]).unwrap(), [1, 4].into());
    s.intersection_update([]).unwrap();
    assert!(s.is_empty().unwrap());
    s.update(0..100).unwrap();
    let mut seen = HashSet::new();
    while let Some(v) = s.pop().unwrap() {
        assert!(seen.insert(v), "{v} popped twice");
    }
    assert_eq!(seen, (0..100).collect());
    assert_eq!(m.number_of_objects().unwrap(), 1);
    drop(s);
    assert_eq!(m.number_of_objects().unwrap(), 0);
    m.shutdown().unwrap();
}
