//! `DictProxy`: the dict lives in the manager; proxies in any process see
//! it, and the server frees it when the last proxy anywhere is gone.

use mp_manager::{DictProxy, SyncManager};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    a_proxy_passed_to_a_child_shares_the_dict,
    the_last_proxy_anywhere_frees_the_object,
    a_killed_child_gives_its_references_back,
    list_namespace_and_value_are_shared_with_a_child,
);

#[test]
fn dict_methods_behave_as_pythons() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let d = m.dict::<String, u32>().unwrap();
    assert!(d.is_empty().unwrap());
    assert_eq!(d.insert("a".into(), 1).unwrap(), None);
    assert_eq!(d.insert("a".into(), 2).unwrap(), Some(1));
    d.update([("b".into(), 3), ("c".into(), 4)]).unwrap();
    assert_eq!(d.len().unwrap(), 3);
    assert!(d.contains_key(&"b".into()).unwrap());
    assert_eq!(d.get(&"zz".into()).unwrap(), None);
    assert_eq!(d.remove(&"b".into()).unwrap(), Some(3));
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "c"]);
    let mut values = d.values().unwrap();
    values.sort();
    assert_eq!(values, [2, 4]);
    let mut items = d.items().unwrap();
    items.sort();
    assert_eq!(items, [("a".into(), 2), ("c".into(), 4)]);
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    m.shutdown().unwrap();
}

#[test]
fn a_proxy_of_a_manager_that_shut_down_fails() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    m.shutdown().unwrap();
    assert!(d.insert(1, 1).is_err());
    assert!(d.len().is_err());
}

fn fill(d: DictProxy<u32, String>) {
    for i in 0..10 {
        d.insert(i, format!("child {i}")).unwrap();
    }
}

fn a_proxy_passed_to_a_child_shares_the_dict(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let d = m.dict::<u32, String>().unwrap();
    let mut p = Process::new(fill, d.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(d.len().unwrap(), 10);
    assert_eq!(d.get(&7).unwrap().as_deref(), Some("child 7"));
    m.shutdown().unwrap();
}

fn the_last_proxy_anywhere_frees_the_object(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let d = m.dict::<u32, String>().unwrap();
    let d2 = d.clone();
    assert_eq!(m.number_of_objects().unwrap(), 1);
    let mut p = Process::new(fill, d2).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    // The child's references went with it; ours keep the object.
    assert_eq!(m.number_of_objects().unwrap(), 1);
    drop(p);
    drop(d);
    assert_eq!(m.number_of_objects().unwrap(), 0);
    m.shutdown().unwrap();
}

fn hold_forever((d, ready): (DictProxy<u32, String>, mp_proc::Event)) {
    let _keep = d.clone();
    ready.set();
    loop {
        std::thread::park();
    }
}

fn a_killed_child_gives_its_references_back(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let ready = mp_proc::Event::new().unwrap();
    // The only proxy goes to the child: the object outlives the parent's
    // copy (lent on sending, adopted on receiving).
    let d = m.dict::<u32, String>().unwrap();
    let mut p = Process::new(hold_forever, (d, ready.clone())).start_method(method);
    p.start().unwrap();
    assert!(
        ready
            .wait(Some(std::time::Duration::from_secs(60)))
            .unwrap(),
        "the child never held it"
    );
    assert_eq!(m.number_of_objects().unwrap(), 1);
    p.kill().unwrap();
    p.join().unwrap();
    drop(p);
    // The server drops the killed child's references when it sees its
    // connection end: the object is freed.
    let mut n = m.number_of_objects().unwrap();
    while n != 0 {
        std::thread::yield_now();
        n = m.number_of_objects().unwrap();
    }
    m.shutdown().unwrap();
}

fn touch_all(
    (l, ns, v): (
        mp_manager::ListProxy<u32>,
        mp_manager::NamespaceProxy,
        mp_manager::ValueProxy<f64>,
    ),
) {
    l.extend([1, 2, 3]).unwrap();
    ns.set("who", "child").unwrap();
    v.set(v.get().unwrap() * 2.0).unwrap();
}

fn list_namespace_and_value_are_shared_with_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let l = m.list::<u32>().unwrap();
    let ns = m.namespace().unwrap();
    let v = m.value(1.25f64).unwrap();
    let mut p = Process::new(touch_all, (l.clone(), ns.clone(), v.clone())).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);
    assert_eq!(l.get(1).unwrap(), 2);
    assert!(l.get(3).is_err(), "IndexError");
    assert_eq!(ns.get::<String>("who").unwrap(), "child");
    assert_eq!(v.get().unwrap(), 2.5);
    m.shutdown().unwrap();
}
/// SIGTERM (`terminate()`, a test runner ending the group) ends the server
/// through its normal path: socket and directory removed; its mode is 0700.
#[test]
fn a_terminated_manager_cleans_up() {
    use std::os::unix::fs::PermissionsExt;
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let socket = std::path::PathBuf::from(m.address().to_string());
    let dir = socket.parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let pid = mp_proc::active_children()[0].pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let d = m.dict::<u32, u32>();
    // Waits for the server process to end (the shutdown request may find it
    // gone already).
    let _ = m.shutdown();
    // Our connection ended with the server.
    assert!(d.is_err() || d.unwrap().len().is_err());
    assert!(!socket.exists(), "the socket is left behind");
    assert!(!dir.exists(), "the directory is left behind");
}
