//! Proxies stored in a managed dict, list, namespace or value, or put on a
//! managed queue: the stored value keeps its object alive (each read-back
//! is a new reference), and the object is freed once it is out of every
//! container and every proxy is dropped.
//! CPython's `_TestContainers.test_dict_proxy_nested` and
//! `test_nested_queue`, under every start method.

use mp_manager::{DictProxy, ListProxy, QueueProxy, SyncManager};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    test_dict_proxy_nested,
    test_nested_queue,
    a_stored_proxy_is_freed_once_removed_and_dropped,
    a_child_uses_a_queue_it_reads_from_a_dict,
    a_proxy_in_a_namespace_or_a_value_keeps_its_object,
    a_proxy_on_a_queue_keeps_its_object,
);

type Inner = DictProxy<String, u32>;

fn dict_of(m: &SyncManager, pairs: &[(&str, u32)]) -> Inner {
    let d = m.dict().unwrap();
    d.update(pairs.iter().map(|&(k, v)| (k.to_string(), v)))
        .unwrap();
    d
}

fn get(d: &Inner, k: &str) -> u32 {
    d.get(&k.to_string()).unwrap().unwrap()
}

fn at(d: &DictProxy<String, Inner>, k: &str) -> Inner {
    d.get(&k.to_string()).unwrap().unwrap()
}

/// CPython's `_TestContainers.test_dict_proxy_nested`.
fn test_dict_proxy_nested(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let pets = dict_of(&m, &[("ferrets", 2), ("hamsters", 4)]);
    let supplies = dict_of(&m, &[("water", 10), ("feed", 3)]);
    let d = m.dict::<String, Inner>().unwrap();
    d.update([
        ("pets".to_string(), pets.clone()),
        ("supplies".to_string(), supplies.clone()),
    ])
    .unwrap();

    assert_eq!(get(&supplies, "water"), 10);
    assert_eq!(get(&at(&d, "supplies"), "water"), 10);

    at(&d, "supplies").insert("blankets".into(), 5).unwrap();
    assert_eq!(get(&supplies, "blankets"), 5);
    assert_eq!(get(&at(&d, "supplies"), "blankets"), 5);

    at(&d, "supplies").insert("water".into(), 7).unwrap();
    assert_eq!(get(&supplies, "water"), 7);
    assert_eq!(get(&at(&d, "supplies"), "water"), 7);

    drop(pets);
    drop(supplies);
    assert_eq!(get(&at(&d, "pets"), "ferrets"), 2);
    at(&d, "supplies").insert("blankets".into(), 11).unwrap();
    assert_eq!(get(&at(&d, "supplies"), "blankets"), 11);

    let pets = at(&d, "pets");
    let supplies = at(&d, "supplies");
    supplies.insert("water".into(), 7).unwrap();
    assert_eq!(get(&supplies, "water"), 7);
    assert_eq!(get(&at(&d, "supplies"), "water"), 7);

    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    assert_eq!(get(&supplies, "water"), 7);
    assert_eq!(get(&pets, "hamsters"), 4);

    let l = m.list::<Inner>().unwrap();
    l.extend([pets.clone(), supplies.clone()]).unwrap();
    l.get(0).unwrap().insert("marmots".into(), 1).unwrap();
    assert_eq!(get(&pets, "marmots"), 1);
    assert_eq!(get(&l.get(0).unwrap(), "marmots"), 1);

    drop(pets);
    drop(supplies);
    assert_eq!(get(&l.get(0).unwrap(), "marmots"), 1);
    m.shutdown().unwrap();
}

/// CPython's `_TestContainers.test_nested_queue`.
fn test_nested_queue(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let a = m.list::<QueueProxy<u32>>().unwrap(); // a queue inside a list
    a.push(m.queue().unwrap()).unwrap();
    a.get(0).unwrap().put(123).unwrap();
    assert_eq!(a.get(0).unwrap().get().unwrap(), 123);
    let b = m.dict::<u32, QueueProxy<u32>>().unwrap(); // a queue inside a dict
    b.insert(0, m.queue().unwrap()).unwrap();
    b.get(&0).unwrap().unwrap().put(456).unwrap();
    assert_eq!(b.get(&0).unwrap().unwrap().get().unwrap(), 456);
    m.shutdown().unwrap();
}

/// The server counts a stored proxy's reference while it is stored and
/// gives it back when the value leaves the container (removed, popped,
/// overwritten, cleared, or its container freed): nothing leaks.
fn a_stored_proxy_is_freed_once_removed_and_dropped(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let objects = || m.number_of_objects().unwrap();
    let d = m.dict::<u32, QueueProxy<u32>>().unwrap();
    let l = m.list::<QueueProxy<u32>>().unwrap();
    assert_eq!(objects(), 2);

    // Removed: the proxy it returns is the last reference.
    d.insert(0, m.queue().unwrap()).unwrap();
    let read = d.get(&0).unwrap().unwrap();
    drop(read);
    assert_eq!(objects(), 3, "the stored proxy keeps its queue");
    let removed = d.remove(&0).unwrap().unwrap();
    removed.put(1).unwrap();
    assert_eq!(objects(), 3);
    drop(removed);
    assert_eq!(objects(), 2);

    // Overwritten (the old value returned and dropped), then cleared.
    d.insert(0, m.queue().unwrap()).unwrap();
    let old = d.insert(0, m.queue().unwrap()).unwrap();
    drop(old);
    assert_eq!(objects(), 3);
    d.clear().unwrap();
    assert_eq!(objects(), 2);

    // A list: popped, set over, extended.
    l.push(m.queue().unwrap()).unwrap();
    drop(l.pop().unwrap());
    assert_eq!(objects(), 2);
    l.push(m.queue().unwrap()).unwrap();
    l.set(0, m.queue().unwrap()).unwrap();
    assert_eq!(objects(), 3);
    l.extend([m.queue().unwrap(), m.queue().unwrap()]).unwrap();
    assert_eq!(objects(), 5);

    // The containers freed: what they stored goes with them.
    d.insert(7, l.get(1).unwrap()).unwrap();
    drop(l);
    assert_eq!(objects(), 2, "the dict keeps the one it stores");
    drop(d);
    assert_eq!(objects(), 0);
    m.shutdown().unwrap();
}

fn put_through_stored((d, l): (DictProxy<u32, QueueProxy<u32>>, ListProxy<QueueProxy<u32>>)) {
    d.get(&0).unwrap().unwrap().put(7).unwrap();
    d.get(&0).unwrap().unwrap().put(8).unwrap();
    l.get(0).unwrap().put(9).unwrap();
}

/// A child reads the stored proxies (each read a reference of its own)
/// and uses them; they still work in the parent after the child is gone.
fn a_child_uses_a_queue_it_reads_from_a_dict(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let d = m.dict::<u32, QueueProxy<u32>>().unwrap();
    let l = m.list::<QueueProxy<u32>>().unwrap();
    d.insert(0, m.queue().unwrap()).unwrap();
    l.push(m.queue().unwrap()).unwrap();
    let mut p = Process::new(put_through_stored, (d.clone(), l.clone())).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let q = d.get(&0).unwrap().unwrap();
    assert_eq!((q.get().unwrap(), q.get().unwrap()), (7, 8));
    assert_eq!(l.get(0).unwrap().get().unwrap(), 9);
    drop((p, q));
    assert_eq!(m.number_of_objects().unwrap(), 4);
    m.shutdown().unwrap();
}

/// A proxy stored in a managed namespace or value keeps its object alive
/// while stored, as one in a dict or a list does: read back and dropped
/// any number of times, it still works; replaced or removed, and dropped,
/// its object is freed (`_TestContainers.test_nested_queue`'s shape, on a
/// namespace and a value).
fn a_proxy_in_a_namespace_or_a_value_keeps_its_object(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let ns = m.namespace().unwrap();
    ns.set("q", &m.queue::<u32>().unwrap()).unwrap();
    let v = m.value(m.queue::<u32>().unwrap()).unwrap();
    v.set(m.queue::<u32>().unwrap()).unwrap();
    // The namespace, the value, and the queues each holds (the value's
    // first queue is still lent: a value made with a proxy in it keeps
    // that proxy's object until the manager ends).
    assert_eq!(m.number_of_objects().unwrap(), 5);
    for i in 0..3 {
        let q = ns.get::<QueueProxy<u32>>("q").unwrap();
        q.put(i).unwrap();
        drop(q);
        assert_eq!(ns.get::<QueueProxy<u32>>("q").unwrap().get().unwrap(), i);
        v.get().unwrap().put(i).unwrap();
        assert_eq!(v.get().unwrap().get().unwrap(), i);
    }
    // A child reads them too.
    let mut p =
        Process::new(through_namespace_and_value, (ns.clone(), v.clone())).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(ns.get::<QueueProxy<u32>>("q").unwrap().get().unwrap(), 7);
    assert_eq!(v.get().unwrap().get().unwrap(), 8);
    assert_eq!(m.number_of_objects().unwrap(), 5);
    // Removed, replaced: given back.
    ns.remove("q").unwrap();
    assert_eq!(m.number_of_objects().unwrap(), 4);
    ns.set("q", &1u8).unwrap();
    v.set(m.queue::<u32>().unwrap()).unwrap();
    assert_eq!(m.number_of_objects().unwrap(), 4);
    drop(v);
    assert_eq!(m.number_of_objects().unwrap(), 2);
    m.shutdown().unwrap();
}

fn through_namespace_and_value(
    (ns, v): (
        mp_manager::NamespaceProxy,
        mp_manager::ValueProxy<QueueProxy<u32>>,
    ),
) {
    ns.get::<QueueProxy<u32>>("q").unwrap().put(7).unwrap();
    v.get().unwrap().put(8).unwrap();
}

fn take_and_push(q: QueueProxy<ListProxy<u32>>) {
    let l = q.get().unwrap();
    l.push(2).unwrap();
}

/// A proxy put on a managed queue keeps its object alive while it waits
/// there, though the putter dropped its own: the getter (here, a child)
/// takes over the reference the item holds, and the object is freed once
/// the getter's proxy is gone too.
fn a_proxy_on_a_queue_keeps_its_object(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let q = m.queue::<ListProxy<u32>>().unwrap();
    let l = m.list::<u32>().unwrap();
    l.push(1).unwrap();
    let watch = m.list::<ListProxy<u32>>().unwrap();
    q.put(l).unwrap();
    // q, watch, and the list, held by the item alone.
    assert_eq!(m.number_of_objects().unwrap(), 3);
    let mut p = Process::new(take_and_push, q.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    // The child's reference went with it: the list is freed.
    assert_eq!(m.number_of_objects().unwrap(), 2);
    // Put, got back here, used.
    let l = m.list::<u32>().unwrap();
    q.put(l.clone()).unwrap();
    drop(l);
    let back = q.get().unwrap();
    back.push(3).unwrap();
    watch.push(back).unwrap();
    assert_eq!(watch.get(0).unwrap().to_vec().unwrap(), [3]);
    assert_eq!(m.number_of_objects().unwrap(), 3);
    m.shutdown().unwrap();
}
