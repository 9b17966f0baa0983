//! The list, dict and namespace proxies' full method sets, ported from
//! CPython's `TestSyncManagerTypes` (3.14) and `_TestContainers`: the
//! object is made in the parent, a child uses it through the manager, and
//! the parent sees what the child did.

use std::collections::HashMap;

use mp_manager::{DictProxy, Error, ListProxy, NamespaceProxy, QueueProxy, SyncManager};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    list_methods_in_a_child,
    a_sort_loses_nothing_a_child_pushes_meanwhile,
    dict_methods_in_a_child,
    namespace_attributes_in_a_child,
    bounded_queue_in_a_child,
    bounded_joinable_queue_in_a_child,
);

/// Runs `worker(obj)` in a child started by `method`; it must exit 0
/// (CPython's `TestSyncManagerTypes.run_worker`).
fn run_worker<A: mp_proc::Payload>(method: StartMethod, worker: fn(A), obj: A) {
    let mut p = Process::new(worker, obj).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0, "the worker failed");
}

/// CPython's `TestSyncManagerTypes._test_list` (3.14), in the child.
fn list_worker(obj: ListProxy<i32>) {
    assert_eq!(obj.get(0).unwrap(), 5);
    assert_eq!(obj.count(&5).unwrap(), 1);
    assert_eq!(obj.index(&5).unwrap(), 0);
    // obj += [7]
    obj.extend([7]).unwrap();
    assert_eq!(obj.to_vec().unwrap(), [5, 7]);
    // obj *= 2
    obj.extend(obj.to_vec().unwrap()).unwrap();
    assert_eq!(obj.to_vec().unwrap(), [5, 7, 5, 7]);
    // double_obj = obj * 2: a plain list
    let double_obj = [obj.to_vec().unwrap(), obj.to_vec().unwrap()].concat();
    assert_eq!(double_obj, [5, 7, 5, 7, 5, 7, 5, 7]);
    let copied_obj: Vec<i32> = obj.copy().unwrap();
    assert_eq!(copied_obj, [5, 7, 5, 7]);
    obj.extend([double_obj, copied_obj].concat()).unwrap();
    obj.sort().unwrap();
    obj.reverse().unwrap();
    assert_eq!(obj.len().unwrap(), 16);
    assert_eq!(obj.pop_at(0).unwrap(), 7);
    obj.clear().unwrap();
    assert_eq!(obj.len().unwrap(), 0);
}

/// CPython's `TestSyncManagerTypes.test_list` (3.14).
fn list_methods_in_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.list::<i32>().unwrap();
    o.push(5).unwrap();
    run_worker(method, list_worker, o.clone());
    assert_eq!(o.len().unwrap(), 0);
    m.shutdown().unwrap();
}

#[test]
fn list_methods_behave_as_pythons() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let l = m.list::<String>().unwrap();
    l.extend(["b", "a", "c", "a"].map(String::from)).unwrap();
    assert_eq!(l.count(&"a".into()).unwrap(), 2);
    assert_eq!(l.count(&"z".into()).unwrap(), 0);
    assert_eq!(l.index(&"a".into()).unwrap(), 1);
    // ValueError: 'z' is not in list
    assert!(matches!(
        l.index(&"z".into()),
        Err(Error::Invalid {
            what: "list.index",
            ..
        })
    ));
    // remove takes the first equal item only.
    l.remove(&"a".into()).unwrap();
    assert_eq!(l.to_vec().unwrap(), ["b", "c", "a"]);
    assert!(matches!(
        l.remove(&"z".into()),
        Err(Error::Invalid {
            what: "list.remove",
            ..
        })
    ));
    // insert: before the index; past the end appends; 0 prepends.
    l.insert(1, "x".into()).unwrap();
    l.insert(usize::MAX, "end".into()).unwrap();
    l.insert(0, "start".into()).unwrap();
    assert_eq!(l.to_vec().unwrap(), ["start", "b", "x", "c", "a", "end"]);
    // pop(i), and IndexError past the end.
    assert_eq!(l.pop_at(2).unwrap(), "x");
    assert!(matches!(
        l.pop_at(5),
        Err(Error::Index {
            what: "list",
            index: 5,
            len: 5
        })
    ));
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), ["a", "b", "c", "end", "start"]);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), ["start", "end", "c", "b", "a"]);
    assert_eq!(l.copy().unwrap(), l.to_vec().unwrap());
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    // Sorting or reversing an empty list is nothing.
    l.sort().unwrap();
    l.reverse().unwrap();
    assert!(matches!(l.pop_at(0), Err(Error::Index { len: 0, .. })));
    m.shutdown().unwrap();
}

/// Python's sort is stable: items that compare equal keep their order.
#[test]
fn list_sort_is_stable() {
    /// Ordered by its number only.
    #[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
    struct Keyed(u8, String);
    impl Ord for Keyed {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.cmp(&other.0)
        }
    }
    impl PartialOrd for Keyed {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let l = m.list::<Keyed>().unwrap();
    let items = [(2, "b"), (1, "one"), (2, "a"), (0, "zero"), (2, "c")];
    l.extend(items.map(|(k, v)| Keyed(k, v.to_owned())))
        .unwrap();
    l.sort().unwrap();
    let sorted: Vec<(u8, String)> = l
        .to_vec()
        .unwrap()
        .into_iter()
        .map(|k| (k.0, k.1))
        .collect();
    let expected = [(0, "zero"), (1, "one"), (2, "b"), (2, "a"), (2, "c")];
    assert_eq!(sorted, expected.map(|(k, v)| (k, v.to_owned())));
    m.shutdown().unwrap();
}

fn push_scrambled(l: ListProxy<u32>) {
    for i in 0..50 {
        l.push((i * 37) % 50).unwrap();
    }
}

/// `sort` is atomic with respect to other clients: sorts racing with a
/// child's pushes lose and duplicate nothing (a sort that read the list
/// before a push reads it again). At most 50 pushes can make a sort read
/// again, fewer than the attempts a sort makes, so no sort gives up.
fn a_sort_loses_nothing_a_child_pushes_meanwhile(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let l = m.list::<u32>().unwrap();
    l.extend((50..60).rev()).unwrap();
    let mut p = Process::new(push_scrambled, l.clone()).start_method(method);
    p.start().unwrap();
    for _ in 0..20 {
        l.sort().unwrap();
    }
    assert_eq!(p.join().unwrap(), 0);
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), (0..60).collect::<Vec<_>>());
    m.shutdown().unwrap();
}

fn map<const N: usize>(pairs: [(&str, i32); N]) -> HashMap<String, i32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// CPython's `TestSyncManagerTypes._test_dict` (3.14), in the child.
fn dict_worker(obj: DictProxy<String, i32>) {
    let (key_foo, key_bar) = (|| "foo".to_string(), || "bar".to_string());
    assert_eq!(obj.len().unwrap(), 1);
    assert_eq!(obj.get(&key_foo()).unwrap(), Some(5));
    assert_eq!(obj.items().unwrap(), [(key_foo(), 5)]);
    assert_eq!(obj.keys().unwrap(), [key_foo()]);
    assert_eq!(obj.values().unwrap(), [5]);
    assert_eq!(obj.copy().unwrap(), map([("foo", 5)]));
    // obj |= {'bar': 6}
    obj.update([(key_bar(), 6)]).unwrap();
    assert_eq!(obj.copy().unwrap(), map([("foo", 5), ("bar", 6)]));
    // reversed(obj)
    let x: Vec<String> = obj.keys().unwrap().into_iter().rev().collect();
    assert_eq!(x, [key_bar(), key_foo()]);
    // {'bar': 7, 'baz': 7} | obj
    let mut x = map([("bar", 7), ("baz", 7)]);
    x.extend(obj.items().unwrap());
    assert_eq!(x, map([("foo", 5), ("bar", 6), ("baz", 7)]));
    // obj | {'bar': 7, 'baz': 7}
    let x = obj.union(map([("bar", 7), ("baz", 7)])).unwrap();
    assert_eq!(x, map([("foo", 5), ("bar", 7), ("baz", 7)]));
    // (obj.fromkeys(['bar'], 6) is `SyncManager::dict_fromkeys`, tested
    // in the parent: a child holds no manager.)
    assert_eq!(obj.popitem().unwrap(), Some((key_bar(), 6)));
    obj.setdefault(key_bar(), 0).unwrap();
    obj.update([(key_bar(), 7)]).unwrap();
    assert_eq!(obj.remove(&key_bar()).unwrap(), Some(7));
    obj.clear().unwrap();
    assert_eq!(obj.len().unwrap(), 0);
}

/// CPython's `TestSyncManagerTypes.test_dict` (3.14).
fn dict_methods_in_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.dict::<String, i32>().unwrap();
    o.insert("foo".into(), 5).unwrap();
    run_worker(method, dict_worker, o.clone());
    assert_eq!(o.len().unwrap(), 0);
    // x = obj.fromkeys(['bar'], 6)
    let x = m.dict_fromkeys(["bar".to_string()], 6).unwrap();
    assert_eq!(x.copy().unwrap(), map([("bar", 6)]));
    m.shutdown().unwrap();
}

/// A managed dict keeps its keys in insertion order, as a Python dict: a
/// new value keeps the key's place, a key removed and inserted again goes
/// last, and `popitem` takes the last (`_TestContainers.test_dict_iter`'s
/// order, and `popitem`'s LIFO).
#[test]
fn dict_keeps_insertion_order() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let d = m.dict::<u32, char>().unwrap();
    // CPython's test_dict_iter: keys 65..70 come back in that order.
    let indices: Vec<u32> = (65..70).collect();
    for &i in &indices {
        d.insert(i, char::from_u32(i).unwrap()).unwrap();
    }
    assert_eq!(d.keys().unwrap(), indices);
    assert_eq!(d.values().unwrap(), ['A', 'B', 'C', 'D', 'E']);
    // Many keys, in an order no hash keeps.
    let many: Vec<u32> = (0..200).map(|i| (i * 7919) % 1000).collect();
    let big = m.dict::<u32, u32>().unwrap();
    big.update(many.iter().map(|&k| (k, k))).unwrap();
    assert_eq!(big.keys().unwrap(), many);
    // A new value keeps its key's place.
    d.insert(66, 'b').unwrap();
    assert_eq!(d.keys().unwrap(), indices);
    // Removed and inserted again: last.
    d.remove(&65).unwrap();
    d.insert(65, 'a').unwrap();
    assert_eq!(d.keys().unwrap(), [66, 67, 68, 69, 65]);
    assert_eq!(d.items().unwrap()[0], (66, 'b'));
    assert_eq!(d.popitem().unwrap(), Some((65, 'a')));
    assert_eq!(d.popitem().unwrap(), Some((69, 'E')));
    // setdefault: an existing key keeps its value and place.
    assert_eq!(d.setdefault(66, 'x').unwrap(), 'b');
    assert_eq!(d.setdefault(1, 'x').unwrap(), 'x');
    assert_eq!(d.keys().unwrap(), [66, 67, 68, 1]);
    // pop(k, default)
    assert_eq!(d.pop_or(&67, '?').unwrap(), 'C');
    assert_eq!(d.pop_or(&67, '?').unwrap(), '?');
    d.clear().unwrap();
    assert_eq!(d.popitem().unwrap(), None);
    d.insert(3, 'c').unwrap();
    assert_eq!(d.keys().unwrap(), [3]);
    m.shutdown().unwrap();
}

/// A proxy stored by `setdefault` keeps its object alive while the dict
/// keeps it, as one stored by `insert` does.
#[test]
fn a_proxy_stored_by_setdefault_keeps_its_object() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let d = m.dict::<u32, ListProxy<u32>>().unwrap();
    let l = m.list::<u32>().unwrap();
    l.push(1).unwrap();
    let back = d.setdefault(0, l).unwrap();
    drop(back);
    assert_eq!(m.number_of_objects().unwrap(), 2);
    let again = d.get(&0).unwrap().unwrap();
    assert_eq!(again.to_vec().unwrap(), [1]);
    drop(again);
    assert_eq!(
        d.pop_or(&0, m.list().unwrap()).unwrap().to_vec().unwrap(),
        [1]
    );
    assert_eq!(m.number_of_objects().unwrap(), 1);
    m.shutdown().unwrap();
}

/// CPython's `_TestContainers.test_namespace`.
#[test]
fn namespace_deletes_and_shows_its_attributes() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let n = m.namespace().unwrap();
    n.set("name", "Bob").unwrap();
    n.set("job", "Builder").unwrap();
    n.set("_hidden", "hidden").unwrap();
    let get = |a: &str| n.get::<String>(a);
    assert_eq!(
        (get("name").unwrap(), get("job").unwrap()),
        ("Bob".into(), "Builder".into())
    );
    // del n.job
    n.remove("job").unwrap();
    // str(n) == "Namespace(name='Bob')": the values are opaque to the
    // manager, so mp shows each as `…`.
    assert_eq!(n.to_string(), "Namespace(name=…)");
    assert!(get("name").is_ok());
    assert!(
        matches!(get("job"), Err(Error::Attribute { object: "Namespace", name }) if name == "job")
    );
    // del of a missing attribute: AttributeError.
    assert!(matches!(n.remove("job"), Err(Error::Attribute { .. })));
    assert_eq!(n.names().unwrap(), ["_hidden", "name"]);
    n.set("age", &3u8).unwrap();
    assert_eq!(n.to_string(), "Namespace(age=…, name=…)");
    n.remove("name").unwrap();
    n.remove("age").unwrap();
    assert_eq!(n.to_string(), "Namespace()");
    // A manager gone: shown as such, not a panic in `to_string`.
    m.shutdown().unwrap();
    assert!(n.to_string().starts_with("Namespace(<unreachable: "), "{n}");
}

/// CPython's `TestSyncManagerTypes._test_namespace`, and an attribute the
/// child deletes.
fn namespace_worker(obj: NamespaceProxy) {
    assert_eq!(obj.get::<i32>("x").unwrap(), 0);
    assert_eq!(obj.get::<i32>("y").unwrap(), 1);
    obj.remove("x").unwrap();
}

/// CPython's `TestSyncManagerTypes.test_namespace`.
fn namespace_attributes_in_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.namespace().unwrap();
    o.set("x", &0i32).unwrap();
    o.set("y", &1i32).unwrap();
    run_worker(method, namespace_worker, o.clone());
    assert!(matches!(o.get::<i32>("x"), Err(Error::Attribute { .. })));
    assert_eq!(o.to_string(), "Namespace(y=…)");
    m.shutdown().unwrap();
}

/// CPython's `TestSyncManagerTypes._test_queue`, in the child.
fn queue_worker(obj: QueueProxy<i32>) {
    assert_eq!(obj.qsize().unwrap(), 2);
    assert!(obj.full().unwrap());
    assert!(!obj.empty().unwrap());
    assert_eq!(obj.get().unwrap(), 5);
    assert!(!obj.empty().unwrap());
    assert_eq!(obj.get().unwrap(), 6);
    assert!(obj.empty().unwrap());
}

/// CPython's `TestSyncManagerTypes.test_queue`.
fn bounded_queue_in_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.queue_with_maxsize::<i32>(2).unwrap();
    o.put(5).unwrap();
    o.put(6).unwrap();
    run_worker(method, queue_worker, o.clone());
    assert!(o.empty().unwrap());
    assert!(!o.full().unwrap());
    m.shutdown().unwrap();
}

/// CPython's `TestSyncManagerTypes._test_queue` on a `JoinableQueue`, and
/// the items marked done.
fn joinable_queue_worker(obj: mp_manager::JoinableQueueProxy<i32>) {
    queue_worker((*obj).clone());
    assert!(matches!(obj.try_put(7), Ok(())));
    obj.task_done().unwrap();
    obj.task_done().unwrap();
}

/// CPython's `TestSyncManagerTypes.test_joinable_queue`: `JoinableQueue(2)`.
fn bounded_joinable_queue_in_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.joinable_queue_with_maxsize::<i32>(2).unwrap();
    o.put(5).unwrap();
    o.put(6).unwrap();
    // Full at 2: Python's queue.Full.
    assert!(matches!(o.try_put(7), Err(Error::Full)));
    run_worker(method, joinable_queue_worker, o.clone());
    assert!(!o.empty().unwrap());
    assert_eq!(o.get().unwrap(), 7);
    assert!(o.empty().unwrap());
    assert!(!o.full().unwrap());
    // 5 and 6 are done; 7 is not yet.
    assert!(matches!(
        o.join_timeout(std::time::Duration::ZERO),
        Err(Error::Timeout)
    ));
    o.task_done().unwrap();
    o.join().unwrap();
    m.shutdown().unwrap();
}
