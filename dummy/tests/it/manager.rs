//! `Manager`'s objects on threads: the proxies' full method sets, ported
//! from CPython's `TestSyncManagerTypes` (3.14) and `_TestContainers` as
//! mp-manager's tests run them, with a thread as the worker.

use mp_dummy::{Manager, Process};
use mp_proc::Error;
use mp_testkit::guard;

/// Runs `worker(obj)` on a thread; it must not panic.
fn run_worker<A: Send + 'static>(worker: fn(A), obj: A) {
    let mut p = Process::new(worker, obj);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0, "the worker failed");
}

/// CPython's `TestSyncManagerTypes.test_list` (3.14).
#[test]
fn list_methods_in_a_worker() {
    let _g = guard();
    let o = Manager::new().list::<i32>().unwrap();
    o.push(5).unwrap();
    run_worker(
        |obj: mp_dummy::List<i32>| {
            assert_eq!(obj.get(0).unwrap(), 5);
            assert_eq!(obj.count(&5).unwrap(), 1);
            assert_eq!(obj.index(&5).unwrap(), 0);
            obj.extend([7]).unwrap();
            obj.extend(obj.to_vec().unwrap()).unwrap();
            assert_eq!(obj.to_vec().unwrap(), [5, 7, 5, 7]);
            let double_obj = [obj.to_vec().unwrap(), obj.to_vec().unwrap()].concat();
            let copied_obj = obj.copy().unwrap();
            assert_eq!(copied_obj, [5, 7, 5, 7]);
            obj.extend([double_obj, copied_obj].concat()).unwrap();
            obj.sort().unwrap();
            obj.reverse().unwrap();
            assert_eq!(obj.len().unwrap(), 16);
            assert_eq!(obj.pop_at(0).unwrap(), 7);
            obj.clear().unwrap();
            assert_eq!(obj.len().unwrap(), 0);
        },
        o.clone(),
    );
    assert_eq!(o.len().unwrap(), 0);
}

#[test]
fn list_methods_behave_as_pythons() {
    let _g = guard();
    let l = Manager::new().list::<&str>().unwrap();
    l.extend(["b", "a", "c", "a"]).unwrap();
    assert_eq!(l.count(&"a").unwrap(), 2);
    assert_eq!(l.index(&"a").unwrap(), 1);
    assert!(matches!(
        l.index(&"z"),
        Err(Error::Invalid {
            what: "list.index",
            ..
        })
    ));
    l.remove(&"a").unwrap();
    assert_eq!(l.to_vec().unwrap(), ["b", "c", "a"]);
    assert!(matches!(
        l.remove(&"z"),
        Err(Error::Invalid {
            what: "list.remove",
            ..
        })
    ));
    l.insert(1, "x").unwrap();
    l.insert(usize::MAX, "end").unwrap();
    l.insert(0, "start").unwrap();
    assert_eq!(l.to_vec().unwrap(), ["start", "b", "x", "c", "a", "end"]);
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
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
}

/// CPython's `TestSyncManagerTypes.test_dict` (3.14).
#[test]
fn dict_methods_in_a_worker() {
    use std::collections::HashMap;
    let _g = guard();
    let m = Manager::new();
    let o = m.dict::<&str, i32>().unwrap();
    o.insert("foo", 5).unwrap();
    run_worker(
        |obj: mp_dummy::Dict<&str, i32>| {
            let map = |p: &[(&'static str, i32)]| p.iter().copied().collect::<HashMap<_, _>>();
            assert_eq!(obj.len().unwrap(), 1);
            assert_eq!(obj.get(&"foo").unwrap(), Some(5));
            assert_eq!(obj.items().unwrap(), [("foo", 5)]);
            assert_eq!(obj.keys().unwrap(), ["foo"]);
            assert_eq!(obj.values().unwrap(), [5]);
            assert_eq!(obj.copy().unwrap(), map(&[("foo", 5)]));
            obj.update([("bar", 6)]).unwrap();
            assert_eq!(obj.copy().unwrap(), map(&[("foo", 5), ("bar", 6)]));
            let x: Vec<&str> = obj.keys().unwrap().into_iter().rev().collect();
            assert_eq!(x, ["bar", "foo"]);
            let mut x = map(&[("bar", 7), ("baz", 7)]);
            x.extend(obj.items().unwrap());
            assert_eq!(x, map(&[("foo", 5), ("bar", 6), ("baz", 7)]));
            let x = obj.union([("bar", 7), ("baz", 7)]).unwrap();
            assert_eq!(x, map(&[("foo", 5), ("bar", 7), ("baz", 7)]));
            assert_eq!(obj.popitem().unwrap(), Some(("bar", 6)));
            obj.setdefault("bar", 0).unwrap();
            obj.update([("bar", 7)]).unwrap();
            assert_eq!(obj.remove(&"bar").unwrap(), Some(7));
            obj.clear().unwrap();
            assert_eq!(obj.len().unwrap(), 0);
        },
        o.clone(),
    );
    assert_eq!(o.len().unwrap(), 0);
    let x = m.dict_fromkeys(["bar"], 6).unwrap();
    assert_eq!(x.items().unwrap(), [("bar", 6)]);
}

/// Insertion order, as mp-manager's dict keeps it.
#[test]
fn dict_keeps_insertion_order() {
    let _g = guard();
    let d = Manager::new().dict::<u32, char>().unwrap();
    let many: Vec<u32> = (0..200).map(|i| (i * 7919) % 1000).collect();
    d.update(many.iter().map(|&k| (k, 'x'))).unwrap();
    assert_eq!(d.keys().unwrap(), many);
    d.clear().unwrap();
    for i in 65..70 {
        d.insert(i, char::from_u32(i).unwrap()).unwrap();
    }
    d.insert(66, 'b').unwrap();
    d.remove(&65).unwrap();
    d.insert(65, 'a').unwrap();
    assert_eq!(d.keys().unwrap(), [66, 67, 68, 69, 65]);
    assert_eq!(d.popitem().unwrap(), Some((65, 'a')));
    assert_eq!(d.setdefault(66, 'x').unwrap(), 'b');
    assert_eq!(d.setdefault(1, 'x').unwrap(), 'x');
    assert_eq!(d.keys().unwrap(), [66, 67, 68, 69, 1]);
    assert_eq!(d.pop_or(&67, '?').unwrap(), 'C');
    assert_eq!(d.pop_or(&67, '?').unwrap(), '?');
    d.clear().unwrap();
    assert_eq!(d.popitem().unwrap(), None);
}

/// CPython's `_TestContainers.test_namespace`.
#[test]
fn namespace_deletes_and_shows_its_attributes() {
    let _g = guard();
    let n = Manager::new().namespace().unwrap();
    n.set("name", &"Bob").unwrap();
    n.set("job", &"Builder").unwrap();
    n.set("_hidden", &"hidden").unwrap();
    assert_eq!(
        (
            n.get::<&str>("name").unwrap(),
            n.get::<&str>("job").unwrap()
        ),
        ("Bob", "Builder")
    );
    n.remove("job").unwrap();
    assert_eq!(n.to_string(), "Namespace(name=…)");
    assert!(n.get::<&str>("name").is_ok());
    assert!(matches!(n.get::<&str>("job"), Err(Error::Attribute { .. })));
    assert!(matches!(n.remove("job"), Err(Error::Attribute { .. })));
    assert_eq!(n.names().unwrap(), ["_hidden", "name"]);
}

/// CPython's `TestSyncManagerTypes.test_joinable_queue`: `JoinableQueue(2)`.
#[test]
fn bounded_joinable_queue_in_a_worker() {
    let _g = guard();
    let o = Manager::new()
        .joinable_queue_with_maxsize::<i32>(2)
        .unwrap();
    o.put(5).unwrap();
    o.put(6).unwrap();
    assert!(matches!(o.try_put(7), Err(Error::Full)));
    run_worker(
        |obj: mp_dummy::JoinableQueue<i32>| {
            assert_eq!(obj.qsize(), 2);
            assert!(obj.full());
            assert!(!obj.empty());
            assert_eq!(obj.get().unwrap(), 5);
            assert!(!obj.empty());
            assert_eq!(obj.get().unwrap(), 6);
            assert!(obj.empty());
            obj.task_done().unwrap();
            obj.task_done().unwrap();
        },
        o.clone(),
    );
    assert!(o.empty());
    assert!(!o.full());
    o.join().unwrap();
}

/// CPython's `TestSyncManagerTypes.test_set` and `test_set_init` (3.14),
/// condensed: each method once, in a worker.
#[test]
fn set_methods_in_a_worker() {
    use std::collections::HashSet;
    let _g = guard();
    let m = Manager::new();
    let o = m.set::<&str>().unwrap();
    run_worker(
        |obj: mp_dummy::Set<&str>| {
            let set = |i: &[&'static str]| i.iter().copied().collect::<HashSet<_>>();
            obj.update(["a", "b", "c"]).unwrap();
            assert_eq!(obj.len().unwrap(), 3);
            assert!(obj.contains(&"a").unwrap() && !obj.contains(&"d").unwrap());
            assert_eq!(
                obj.union(["d", "e"]).unwrap(),
                set(&["a", "b", "c", "d", "e"])
            );
            assert_eq!(obj.difference(["a", "b"]).unwrap(), set(&["c"]));
            assert_eq!(obj.intersection(["b", "c", "d"]).unwrap(), set(&["b", "c"]));
            let sym = obj.symmetric_difference(["b", "c", "d"]).unwrap();
            assert_eq!(sym, set(&["a", "d"]));
            assert!(obj.isdisjoint(["d", "e"]).unwrap());
            assert!(!obj.isdisjoint(["a", "d"]).unwrap());
            assert!(obj.issubset(["a", "b", "c", "d"]).unwrap());
            assert!(!obj.issubset(["a", "b"]).unwrap());
            assert!(obj.issuperset(["a", "b"]).unwrap());
            assert!(!obj.issuperset(["a", "b", "d"]).unwrap());
            obj.remove(&"a").unwrap();
            assert!(matches!(
                obj.remove(&"a"),
                Err(Error::Invalid {
                    what: "set.remove",
                    ..
                })
            ));
            assert!(!obj.discard(&"a").unwrap());
            obj.symmetric_difference_update(["b", "c", "d"]).unwrap();
            assert_eq!(obj.copy().unwrap(), set(&["d"]));
            obj.update(["a", "b", "c"]).unwrap();
            obj.intersection_update(["b", "c", "d"]).unwrap();
            obj.difference_update(["b"]).unwrap();
            assert_eq!(obj.copy().unwrap(), set(&["c", "d"]));
            let popped = obj.pop().unwrap().unwrap();
            assert!(!obj.contains(&popped).unwrap());
            assert!(obj.add("z").unwrap());
            assert_eq!(obj.to_vec().unwrap().len(), 2);
        },
        o.clone(),
    );
    assert_eq!(o.len().unwrap(), 2);
    o.clear().unwrap();
    assert_eq!(o.pop().unwrap(), None);
    let o = m.set_from(["a", "b", "c", "a"]).unwrap();
    assert_eq!(o.len().unwrap(), 3);
}
