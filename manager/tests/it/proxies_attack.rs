//! An attacker's review of issue 16's managed proxies: references that a
//! list, dict or set operation takes and never gives back (an object that
//! outlives every proxy and every container), or gives back while a
//! container still stores the proxy (an object freed while stored), seen
//! through `number_of_objects`, under every start method.

use std::hash::{Hash, Hasher};

use mp_manager::{ListProxy, QueueProxy, SyncManager};
use mp_proc::StartMethod;
use mp_proc::codec::{decode, encode};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    a_proxy_compared_in_a_list_is_not_kept,
    a_proxy_in_a_dict_key_lives_while_stored_and_no_longer,
    a_dict_key_proxy_is_counted_once_through_every_op,
    an_array_read_as_a_list_does_not_change_length,
    a_proxy_in_a_set_item_lives_while_stored_and_no_longer,
    a_set_item_proxy_is_counted_once_through_every_op,
);

/// A set's item is sent as plain bytes: a proxy in it lent a reference on
/// each `add`, `contains` and `discard` that nobody adopted, and reading
/// the items back adopted those, so the object was freed while the set
/// still stored its proxy. The set keeps it while the item is stored, a
/// lookup by it keeps nothing, and it is freed once the item is removed.
fn a_proxy_in_a_set_item_lives_while_stored_and_no_longer(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let objects = || m.number_of_objects().unwrap();
    let s = m.set::<Named>().unwrap();
    let item = Named {
        name: 1,
        queue: m.queue().unwrap(),
    };
    assert!(s.add(item.clone()).unwrap());
    drop(item);
    for _ in 0..2 {
        drop(s.copy().unwrap());
        assert_eq!(objects(), 2, "the set's item keeps its queue");
    }
    let item = s.copy().unwrap().into_iter().next().unwrap();
    assert!(s.contains(&item).unwrap());
    assert!(s.discard(&item).unwrap());
    drop(item);
    assert_eq!(objects(), 1, "the queue outlived its item and its proxies");
}

/// An item that holds a proxy but is compared by its name: a set's item
/// or a dict's key may hold a proxy this way.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
struct Named {
    name: u32,
    queue: QueueProxy<u32>,
}

impl PartialEq for Named {
    fn eq(&self, other: &Named) -> bool {
        self.name == other.name
    }
}

impl Eq for Named {}

impl Hash for Named {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h);
    }
}

/// `count`, `index` and `remove` send the value they compare, which for a
/// proxy lent a reference that nobody adopted: each call kept the object
/// alive until the manager ended. Once the list no longer stores the
/// proxy and its last proxy is dropped, the object is freed.
fn a_proxy_compared_in_a_list_is_not_kept(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let objects = || m.number_of_objects().unwrap();
    let l = m.list::<QueueProxy<u32>>().unwrap();
    let q = m.queue::<u32>().unwrap();
    l.push(q.clone()).unwrap();
    assert_eq!(l.count(&q).unwrap(), 1);
    assert_eq!(l.index(&q).unwrap(), 0);
    l.remove(&q).unwrap();
    assert!(l.remove(&q).is_err(), "removed once");
    assert_eq!(objects(), 2);
    drop(q);
    assert_eq!(objects(), 1, "the queue outlived its last proxy");
}

/// A dict's key is sent as plain bytes: a proxy in it lent a reference
/// that the dict did not keep, so reading the keys back (each adopting
/// the lent reference) and dropping them freed the object while the dict
/// still stored its proxy. The dict keeps it while the key is stored, a
/// lookup by it keeps nothing, and it is freed once the key is removed.
fn a_proxy_in_a_dict_key_lives_while_stored_and_no_longer(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let objects = || m.number_of_objects().unwrap();
    let d = m.dict::<Named, u32>().unwrap();
    let key = Named {
        name: 1,
        queue: m.queue().unwrap(),
    };
    key.queue.put(5).unwrap();
    assert_eq!(d.insert(key.clone(), 10).unwrap(), None);
    drop(key);
    for _ in 0..2 {
        let keys = d.keys().unwrap();
        assert_eq!(keys.len(), 1);
        drop(keys);
        assert_eq!(objects(), 2, "the dict's key keeps its queue");
    }
    let key = d.keys().unwrap().pop().unwrap();
    assert_eq!(key.queue.get().unwrap(), 5);
    assert_eq!(d.get(&key).unwrap(), Some(10));
    assert!(d.contains_key(&key).unwrap());
    assert_eq!(d.remove(&key).unwrap(), Some(10));
    assert_eq!(objects(), 2);
    drop(key);
    assert_eq!(objects(), 1, "the queue outlived its key and its proxies");
}

/// A key holding a proxy through every op that stores, replaces or takes
/// out keys: a key stored again (`insert`, `update`, `setdefault` of a key
/// already there) keeps one reference, `popitem` hands its key's reference
/// to the caller, `clear` gives them back. No reference is lost or kept.
fn a_dict_key_proxy_is_counted_once_through_every_op(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let objects = || m.number_of_objects().unwrap();
    let d = m.dict::<Named, u32>().unwrap();
    let key = |name| Named {
        name,
        queue: m.queue().unwrap(),
    };
    let (a, b) = (key(1), key(2));
    d.insert(a.clone(), 1).unwrap();
    assert_eq!(d.insert(a.clone(), 2).unwrap(), Some(1));
    d.update([(a.clone(), 3), (b.clone(), 4)]).unwrap();
    assert_eq!(d.setdefault(a.clone(), 5).unwrap(), 3);
    assert_eq!(d.setdefault(b.clone(), 6).unwrap(), 4);
    drop((a, b));
    assert_eq!(objects(), 3, "the dict keeps its two keys' queues");
    drop(d.items().unwrap());
    assert_eq!(objects(), 3);
    let (popped, v) = d.popitem().unwrap().unwrap();
    assert_eq!((popped.name, v), (2, 4));
    popped.queue.put(1).unwrap();
    assert_eq!(objects(), 3);
    drop(popped);
    assert_eq!(
        objects(),
        2,
        "the popped key's queue is freed with its proxy"
    );
    d.clear().unwrap();
    assert_eq!(objects(), 1, "cleared: the last key's queue is freed");
}

/// Every set op that stores, looks up or takes out an item holding a
/// proxy: the set holds one reference per item it stores (the first of
/// equal items), none for an item only compared, and gives it back (or
/// lends it to `pop`'s caller) when the item leaves.
fn a_set_item_proxy_is_counted_once_through_every_op(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let objects = || m.number_of_objects().unwrap();
    let s = m.set::<Named>().unwrap();
    let item = |name| Named {
        name,
        queue: m.queue().unwrap(),
    };
    let (a, b, c, d) = (item(1), item(2), item(3), item(4));
    assert!(s.add(a.clone()).unwrap());
    assert!(!s.add(a.clone()).unwrap(), "already there");
    s.update([a.clone(), b.clone(), b.clone(), c.clone(), d.clone()])
        .unwrap();
    assert!(s.contains(&a).unwrap());
    s.remove(&d).unwrap();
    assert!(!s.discard(&d).unwrap());
    s.difference_update([d.clone()]).unwrap();
    // {a, b, c} ^ {d, a} = {b, c, d}
    s.symmetric_difference_update([d.clone(), d.clone(), a.clone()])
        .unwrap();
    // {b, c, d} & {a, b, c} = {b, c}
    s.intersection_update([a.clone(), b.clone(), c.clone()])
        .unwrap();
    drop((a, b, c, d));
    assert_eq!(s.len().unwrap(), 2);
    assert_eq!(objects(), 3, "the set keeps its two items' queues, no more");
    drop(s.copy().unwrap());
    assert_eq!(objects(), 3);
    let popped = s.pop().unwrap().unwrap();
    popped.queue.put(1).unwrap();
    assert_eq!(objects(), 3);
    drop(popped);
    assert_eq!(
        objects(),
        2,
        "the popped item's queue is freed with its proxy"
    );
    s.clear().unwrap();
    assert_eq!(objects(), 1, "cleared: the last item's queue is freed");
}

/// A proxy's bytes do not say its kind: an `ArrayProxy` decoded as a
/// `ListProxy` reaches the same array, which must keep its length
/// (`Manager().Array` has no `append`, `pop`, `insert`, `remove`,
/// `extend` or `clear`): each is refused, and the items stay as they were.
fn an_array_read_as_a_list_does_not_change_length(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let a = m.array(&[1i32, 2, 3]).unwrap();
    let l: ListProxy<i32> = decode(&encode(&a).unwrap()).unwrap();
    assert!(l.push(4).is_err());
    assert!(l.extend([4, 5]).is_err());
    assert!(l.insert(0, 4).is_err());
    assert!(l.pop().is_err());
    assert!(l.pop_at(0).is_err());
    assert!(l.remove(&2).is_err());
    assert!(l.clear().is_err());
    assert_eq!(a.to_vec().unwrap(), [1, 2, 3]);
    // What an array has still works through either proxy.
    l.set(0, 7).unwrap();
    l.reverse().unwrap();
    assert_eq!(a.to_vec().unwrap(), [3, 2, 7]);
}
