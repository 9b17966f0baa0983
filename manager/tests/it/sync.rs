//! The queue and synchronization proxies, used across processes under
//! every start method.

use std::time::Duration;

use mp_manager::{
    ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, Error, EventProxy, JoinableQueueProxy,
    ListProxy, LockProxy, NamespaceProxy, QueueProxy, SemaphoreProxy, SyncManager, ValueProxy,
};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    queue_items_flow_from_a_child_in_order,
    a_joinable_queue_joins_when_a_child_has_done_every_item,
    a_child_killed_while_getting_loses_no_item,
    a_lock_excludes_across_processes,
    a_lock_held_by_a_killed_process_is_released,
    a_condition_wakes_a_waiter_in_another_process,
    an_event_set_in_a_child_wakes_the_parent,
    a_barrier_lets_every_party_through_together,
    a_semaphore_released_by_a_child_wakes_the_parent,
    an_array_is_shared_with_a_child,
);

fn spawn<A: mp_proc::Payload>(method: StartMethod, target: fn(A), args: A) -> Process {
    let mut p = Process::new(target, args).start_method(method);
    p.start().unwrap();
    p
}

fn produce(q: QueueProxy<u32>) {
    for i in 0..100 {
        q.put(i).unwrap();
    }
}

fn queue_items_flow_from_a_child_in_order(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let q = m.queue::<u32>().unwrap();
    let mut p = spawn(method, produce, q.clone());
    let got: Vec<u32> = (0..100).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(p.join().unwrap(), 0);
    assert!(matches!(q.try_get(), Err(Error::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(1)),
        Err(Error::Empty)
    ));
    m.shutdown().unwrap();
}

fn consume((q, seen): (JoinableQueueProxy<u32>, ListProxy<u32>)) {
    for _ in 0..50 {
        let v = q.get().unwrap();
        seen.push(v).unwrap();
        q.task_done().unwrap();
    }
}

fn a_joinable_queue_joins_when_a_child_has_done_every_item(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let q = m.joinable_queue::<u32>().unwrap();
    let seen = m.list::<u32>().unwrap();
    for i in 0..50 {
        q.put(i).unwrap();
    }
    let mut p = spawn(method, consume, (q.clone(), seen.clone()));
    q.join().unwrap();
    // join returned: every item was taken and marked done.
    assert_eq!(seen.len().unwrap(), 50);
    assert_eq!(q.qsize().unwrap(), 0);
    assert_eq!(p.join().unwrap(), 0);
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooManyTimes)));
    q.join_timeout(Duration::ZERO).unwrap();
    m.shutdown().unwrap();
}

fn get_forever((q, ready): (QueueProxy<u32>, EventProxy)) {
    ready.set().unwrap();
    let v = q.get().unwrap();
    panic!("the child got {v}, but it should have been killed first");
}

/// A consumer killed while it waits in `get` (or just before) takes no
/// item with it: the server puts back what it could not deliver.
fn a_child_killed_while_getting_loses_no_item(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let q = m.queue::<u32>().unwrap();
    let ready = m.event().unwrap();
    let mut p = spawn(method, get_forever, (q.clone(), ready.clone()));
    assert!(ready.wait(None).unwrap());
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
    q.put(7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
    m.shutdown().unwrap();
}

fn add_under_lock((lock, v): (LockProxy, ValueProxy<u64>)) {
    for _ in 0..100 {
        let _held = lock.acquire().unwrap();
        let n = v.get().unwrap();
        v.set(n + 1).unwrap();
    }
}

fn a_lock_excludes_across_processes(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let lock = m.lock().unwrap();
    let v = m.value(0u64).unwrap();
    let mut children: Vec<Process> = (0..3)
        .map(|_| spawn(method, add_under_lock, (lock.clone(), v.clone())))
        .collect();
    add_under_lock((lock.clone(), v.clone()));
    for p in &mut children {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(v.get().unwrap(), 400, "no increment was lost");
    assert!(!lock.locked().unwrap());
    m.shutdown().unwrap();
}

fn hold_lock_forever((lock, held, never): (LockProxy, EventProxy, EventProxy)) {
    let _g = lock.acquire().unwrap();
    held.set().unwrap();
    never.wait(None).unwrap();
}

/// CPython's manager keeps such a lock held forever.
fn a_lock_held_by_a_killed_process_is_released(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let lock = m.lock().unwrap();
    let (held, never) = (m.event().unwrap(), m.event().unwrap());
    let mut p = spawn(
        method,
        hold_lock_forever,
        (lock.clone(), held.clone(), never.clone()),
    );
    assert!(held.wait(None).unwrap());
    assert!(lock.locked().unwrap());
    p.kill().unwrap();
    p.join().unwrap();
    let _mine = lock.acquire().unwrap();
    assert!(lock.locked().unwrap());
    m.shutdown().unwrap();
}

fn wait_for_go((c, ns): (ConditionProxy, NamespaceProxy)) {
    let g = c.acquire().unwrap();
    let (g, ok) = c
        .wait_for(g, || ns.get::<bool>("go").unwrap_or(false), None)
        .unwrap();
    assert!(ok);
    ns.set("seen", &true).unwrap();
    drop(g);
}

fn a_condition_wakes_a_waiter_in_another_process(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let c = m.condition().unwrap();
    let ns = m.namespace().unwrap();
    let mut p = spawn(method, wait_for_go, (c.clone(), ns.clone()));
    {
        let _held = c.acquire().unwrap();
        ns.set("go", &true).unwrap();
        c.notify_all().unwrap();
    }
    assert_eq!(p.join().unwrap(), 0);
    assert!(ns.get::<bool>("seen").unwrap());
    // Notifying without the lock is an error, as in Python.
    assert!(matches!(c.notify(1), Err(Error::NotHeld { .. })));
    m.shutdown().unwrap();
}

fn set_event(e: EventProxy) {
    e.set().unwrap();
}

fn an_event_set_in_a_child_wakes_the_parent(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let e = m.event().unwrap();
    let mut p = spawn(method, set_event, e.clone());
    assert!(e.wait(None).unwrap());
    assert_eq!(p.join().unwrap(), 0);
    e.clear().unwrap();
    assert!(!e.is_set().unwrap());
    assert!(!e.wait(Some(Duration::from_millis(1))).unwrap());
    m.shutdown().unwrap();
}

fn pass_barrier((b, d, who): (BarrierProxy, DictProxy<u32, usize>, u32)) {
    let index = b.wait().unwrap();
    d.insert(who, index).unwrap();
}

fn a_barrier_lets_every_party_through_together(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let b = m.barrier(3, None).unwrap();
    let d = m.dict::<u32, usize>().unwrap();
    let mut children: Vec<Process> = (1..3)
        .map(|who| spawn(method, pass_barrier, (b.clone(), d.clone(), who)))
        .collect();
    pass_barrier((b.clone(), d.clone(), 0));
    for p in &mut children {
        assert_eq!(p.join().unwrap(), 0);
    }
    let mut indices = d.values().unwrap();
    indices.sort();
    assert_eq!(indices, [0, 1, 2], "each party got its own index");
    assert_eq!(b.parties().unwrap(), 3);
    assert_eq!(b.n_waiting().unwrap(), 0);
    // A waiter that times out breaks the barrier; reset mends it.
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(1)),
        Err(Error::BrokenBarrier)
    ));
    assert!(b.broken().unwrap());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    m.shutdown().unwrap();
}

fn release_once(s: SemaphoreProxy) {
    s.release().unwrap();
}

fn a_semaphore_released_by_a_child_wakes_the_parent(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let s = m.semaphore(0).unwrap();
    assert!(!s.try_acquire().unwrap());
    let mut p = spawn(method, release_once, s.clone());
    s.acquire().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(s.value().unwrap(), 0);
    assert!(!s.acquire_timeout(Duration::from_millis(1)).unwrap());
    let b = m.bounded_semaphore(2).unwrap();
    assert!(b.try_acquire().unwrap());
    b.release().unwrap();
    assert!(matches!(
        b.release(),
        Err(Error::TooManyReleases { bound: 2 })
    ));
    m.shutdown().unwrap();
}

fn double_all(a: ArrayProxy<i64>) {
    for i in 0..a.len().unwrap() {
        a.set(i, a.get(i).unwrap() * 2).unwrap();
    }
}

fn an_array_is_shared_with_a_child(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let a = m.array(&[1i64, 2, 3]).unwrap();
    let mut p = spawn(method, double_all, a.clone());
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(a.to_vec().unwrap(), [2, 4, 6]);
    assert!(a.set(3, 0).is_err(), "an array does not grow");
    m.shutdown().unwrap();
}

/// One process's threads share its session; a thread blocked in `get`
/// holds its own connection, so another thread's `put` is not stuck behind
/// it (with one shared connection, this would deadlock).
#[test]
fn a_get_blocked_in_one_thread_does_not_hold_up_a_put_from_another() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let q = m.queue::<u32>().unwrap();
    let started = m.event().unwrap();
    let getter = {
        let (q, started) = (q.clone(), started.clone());
        std::thread::spawn(move || {
            started.set().unwrap();
            q.get().unwrap()
        })
    };
    assert!(started.wait(None).unwrap());
    q.put(42).unwrap();
    assert_eq!(getter.join().unwrap(), 42);
    m.shutdown().unwrap();
}

#[test]
fn a_bounded_queue_reports_full() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let q = m.queue_with_maxsize::<u32>(1).unwrap();
    assert!(!q.full().unwrap());
    q.put(1).unwrap();
    assert!(q.full().unwrap());
    assert!(matches!(q.try_put(2), Err(Error::Full)));
    assert!(matches!(
        q.put_timeout(2, Duration::from_millis(1)),
        Err(Error::Full)
    ));
    assert_eq!(q.get().unwrap(), 1);
    q.try_put(2).unwrap();
    m.shutdown().unwrap();
}

#[test]
fn an_rlock_belongs_to_its_thread() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let r = m.rlock().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    let other = {
        let r = r.clone();
        std::thread::spawn(move || {
            let got = r.try_acquire().unwrap().is_some();
            let released = r.release();
            (got, matches!(released, Err(Error::NotHeld { .. })))
        })
    };
    assert_eq!(other.join().unwrap(), (false, true));
    drop(b);
    drop(a);
    assert!(r.try_acquire().unwrap().is_some());
    // A plain Lock taken twice by one thread would wait forever: an error.
    let l = m.lock().unwrap();
    let _held = l.acquire().unwrap();
    assert!(matches!(l.acquire(), Err(Error::WouldDeadlock)));
    m.shutdown().unwrap();
}

/// A non-blocking acquire cannot deadlock: on a `Lock` this thread holds,
/// `try_acquire` and `acquire_timeout` give `None` (CPython's
/// `acquire(False)` returns False), and the lock stays held.
#[test]
fn try_acquire_of_a_lock_this_thread_holds_is_none() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let l = m.lock().unwrap();
    let held = l.acquire().unwrap();
    assert!(l.try_acquire().unwrap().is_none());
    assert!(
        l.acquire_timeout(Duration::from_millis(1))
            .unwrap()
            .is_none()
    );
    assert!(l.locked().unwrap(), "still held");
    drop(held);
    assert!(!l.locked().unwrap());
    assert!(l.try_acquire().unwrap().is_some());
    m.shutdown().unwrap();
}
