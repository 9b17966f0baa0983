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
