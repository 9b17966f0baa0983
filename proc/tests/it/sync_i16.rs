//! Issue 16's synchronisation bullets: CPython's `_TestBarrier.test_action`
//! (and what `threading.Barrier` does when the action raises), and
//! `Value`/`Array` with `lock=`, `get_lock()` and `get_obj()`
//! (`_TestValue.test_getobj_getlock`, `_TestArray.test_getobj_getlock_obj`),
//! under fork, spawn and forkserver.

use std::sync::Mutex;
use std::time::Duration;

use mp_proc::codec::{decode, encode};
use mp_proc::{
    AnyLock, Array, Barrier, Connection, Error, Event, FnPointer, Lock, Process, Queue, RLock,
    RawArray, RawValue, StartMethod, Value, pipe,
};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    test_action,
    an_action_that_panics_breaks_the_barrier,
    get_lock_excludes_lock_guards_of_every_value_behind_it,
    a_shared_lock_whose_holder_died_is_reported_once,
    a_value_sent_after_start_keeps_its_lock,
);

/// CPython's `_TestBarrier.N`: the parties of a barrier test (the caller
/// and `N - 1` others).
const N: usize = 5;
/// A wait that a bug turns into an error instead of a hang
/// (`_TestBarrier.defaultTimeout`).
const LONG: Duration = Duration::from_secs(30);

/// What the action of this process appends to (`AppendTrue(results)`):
/// set by each party from its args before it waits (tests run one at a time).
static RESULTS: Mutex<Option<Value<u32>>> = Mutex::new(None);

fn append_true() {
    if let Some(results) = &*RESULTS.lock().unwrap() {
        *results.lock().unwrap() += 1;
    }
}

/// `_TestBarrier._test_action_f`, waiting twice: after each trip the action
/// ran exactly once more, before anyone went through.
fn action_party((barrier, results): (Barrier, Value<u32>)) {
    *RESULTS.lock().unwrap() = Some(results.clone());
    barrier.wait().unwrap();
    assert_eq!(
        results.get(),
        1,
        "the action ran once, before this party passed"
    );
    barrier.wait().unwrap();
    assert_eq!(results.get(), 2, "and once more at the second trip");
}

/// `_TestBarrier.test_action`: the action runs in exactly one party each
/// time the barrier trips.
fn test_action(method: StartMethod) {
    let _g = guard();
    let results = Value::new(0u32).unwrap();
    let barrier = Barrier::with_action(N, append_true, Some(LONG)).unwrap();
    let mut ps: Vec<Process> = (1..N)
        .map(|_| {
            Process::new(action_party, (barrier.clone(), results.clone())).start_method(method)
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    action_party((barrier.clone(), results.clone()));
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(results.get(), 2);
    assert!(!barrier.broken());
    *RESULTS.lock().unwrap() = None;
}

fn boom() {
    panic!("boom");
}

/// Counts one outcome of a `wait` in `tally`: [passed, broken, the action
/// panicked with "boom", anything else].
fn tally_wait((barrier, tally): (Barrier, Array<u32>)) {
    let slot = match barrier.wait() {
        Ok(_) => 0,
        Err(Error::BrokenBarrier) => 1,
        Err(Error::ActionPanicked {
            what: "Barrier",
            message,
        }) if message == "boom" => 2,
        Err(_) => 3,
    };
    tally.lock().unwrap()[slot] += 1;
}

/// As `threading.Barrier` when its action raises: the party that ran it
/// gets the action's error, every other party `BrokenBarrierError`, and the
/// barrier stays broken.
fn an_action_that_panics_breaks_the_barrier(method: StartMethod) {
    let _g = guard();
    let tally = Array::<u32>::new(4).unwrap();
    let barrier = Barrier::with_action(3, boom, Some(LONG)).unwrap();
    let mut ps: Vec<Process> = (1..3)
        .map(|_| Process::new(tally_wait, (barrier.clone(), tally.clone())).start_method(method))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    tally_wait((barrier.clone(), tally.clone()));
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(tally.to_vec(), [0, 2, 1, 0]);
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}

fn other_action() {}

/// A barrier's bytes (here a ticket: they went neither into a child's args
/// nor with a socket's message) with the action of another barrier, or an
/// action added, do not decode: the descriptor's tag covers the action.
#[test]
fn a_barrier_does_not_decode_with_another_action() {
    let _g = guard();
    let a = Barrier::with_action(2, append_true, None).unwrap();
    let plain = Barrier::new(2, None).unwrap();
    let mine = encode(&Some(FnPointer::new(append_true as fn()))).unwrap();
    let theirs = encode(&Some(FnPointer::new(other_action as fn()))).unwrap();

    // Each ticket is redeemed in the end by its unedited bytes (or the
    // sharer would hold its descriptor until it expires).
    let bytes = encode(&a).unwrap();
    assert!(bytes.ends_with(&mine));
    let mut swapped = bytes[..bytes.len() - mine.len()].to_vec();
    swapped.extend_from_slice(&theirs);
    assert!(matches!(decode::<Barrier>(&swapped), Err(Error::Decode(_))));
    let back: Barrier = decode(&bytes).unwrap();
    assert_eq!(back.parties(), 2, "the bytes as made decode");

    let bytes = encode(&plain).unwrap();
    assert_eq!(bytes.last(), Some(&0), "no action: `None`");
    let mut added = bytes[..bytes.len() - 1].to_vec();
    added.extend_from_slice(&theirs);
    assert!(matches!(decode::<Barrier>(&added), Err(Error::Decode(_))));
    decode::<Barrier>(&bytes).unwrap();
}

/// `_TestValue.test_getobj_getlock`. CPython's `lock=False` is
/// [`RawValue`], which has no `get_lock`/`get_obj` (`hasattr` is false: here
/// they do not compile), and `lock='navalue'` (`AttributeError`) does not
/// compile either: `with_lock` takes a `Lock` or an `RLock`.
#[test]
fn test_getobj_getlock() {
    let _g = guard();
    // lock=True (and None): a lock of its own, an RLock as CPython's.
    let val1 = Value::new(5i32).unwrap();
    let lock1 = val1.get_lock().unwrap();
    // SAFETY: no `lock()` guard of these values is ever taken in this test.
    let obj1: RawValue<i32> = unsafe { val1.get_obj() }.unwrap();
    assert!(lock1.is_reentrant());
    assert_eq!(obj1.get(), 5);
    assert_eq!(lock1, val1.get_lock().unwrap(), "the same lock every time");

    let lock = Lock::new().unwrap();
    let val3 = Value::with_lock(5i32, lock.clone()).unwrap();
    let lock3 = val3.get_lock().unwrap();
    // SAFETY: as above.
    let obj3 = unsafe { val3.get_obj() }.unwrap();
    assert_eq!(AnyLock::from(lock.clone()), lock3);
    assert_ne!(lock1, lock3);
    obj3.set(6);
    assert_eq!(val3.get(), 6, "the raw object is the same memory");

    let _arr4 = RawValue::new(5i32).unwrap();
}

/// `_TestArray.test_getobj_getlock_obj`, as [`test_getobj_getlock`].
#[test]
fn test_getobj_getlock_obj() {
    let _g = guard();
    let items: Vec<i32> = (0..10).collect();
    let arr1 = Array::from_slice(&items).unwrap();
    let lock1 = arr1.get_lock().unwrap();
    // SAFETY: no `lock()` guard of these arrays is ever taken in this test.
    let obj1: RawArray<i32> = unsafe { arr1.get_obj() }.unwrap();
    assert!(lock1.is_reentrant());
    assert_eq!(obj1.to_vec(), items);

    let lock = Lock::new().unwrap();
    let arr3 = Array::with_lock(&items, lock.clone()).unwrap();
    let lock3 = arr3.get_lock().unwrap();
    // SAFETY: as above.
    let obj3 = unsafe { arr3.get_obj() }.unwrap();
    assert_eq!(AnyLock::from(lock), lock3);
    obj3.set(9, 90).unwrap();
    assert_eq!(arr3.get(9), Some(90));

    let _arr5 = RawArray::from_slice(&items).unwrap();
}

/// Holds `v`'s guard until told.
fn hold_guard((v, held, release): (Value<u64>, Event, Event)) {
    let _g = v.lock().unwrap();
    held.set();
    release.wait(Some(LONG)).unwrap();
}

/// A value's `get_lock()` is the lock that the guards of every value made
/// with it take, in any process: while a child holds the guard of another
/// value made with `counter.get_lock()`, that lock is held here; and the
/// counter's own guard holds it too. For a value's own lock (an RLock), a
/// `Lock` and an `RLock`.
fn get_lock_excludes_lock_guards_of_every_value_behind_it(method: StartMethod) {
    let _g = guard();
    let counters = [
        Value::new(0u64).unwrap(),
        Value::with_lock(0u64, Lock::new().unwrap()).unwrap(),
        Value::with_lock(0u64, RLock::new().unwrap()).unwrap(),
    ];
    for counter in counters {
        let lock = counter.get_lock().unwrap();
        let other = Value::with_lock(0u64, lock.clone()).unwrap();
        assert_eq!(other.get_lock().unwrap(), lock);
        let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
        let mut p = Process::new(hold_guard, (other.clone(), held.clone(), release.clone()))
            .start_method(method);
        p.start().unwrap();
        assert!(held.wait(Some(LONG)).unwrap());
        assert!(
            lock.locked(),
            "{lock:?}: held by the child's guard of the other value"
        );
        assert!(lock.try_acquire().unwrap().is_none());
        release.set();
        assert_eq!(p.join().unwrap(), 0);
        assert!(!lock.locked());
        // The counter's own guard is that lock too: held, for other threads.
        let mut g = counter.lock().unwrap();
        *g += 1;
        assert!(lock.locked());
        std::thread::scope(|s| {
            let free = s.spawn(|| lock.try_acquire().unwrap().is_some());
            assert!(!free.join().unwrap());
        });
        drop(g);
        assert_eq!(counter.get(), 1);
        assert!(!lock.locked());
    }
}

fn hold_and_die((v, held): (Value<u64>, Event)) {
    let mut guard = v.lock().unwrap();
    *guard = 7;
    held.set();
    std::mem::forget(guard);
    std::process::abort();
}

/// The mixed case: a process that holds one value's guard dies. The next
/// taker of the lock that two values share, through either value or the
/// lock, learns of the death (`Error::OwnerDied`, once) and the lock is
/// free again, as mp's `Lock` (CPython's stays held forever).
fn a_shared_lock_whose_holder_died_is_reported_once(method: StartMethod) {
    let _g = guard();
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(0u64, lock.clone()).unwrap();
    let b = Value::with_lock(0u64, lock.clone()).unwrap();
    let held = Event::new().unwrap();
    let mut p = Process::new(hold_and_die, (a.clone(), held.clone())).start_method(method);
    p.start().unwrap();
    assert!(held.wait(Some(LONG)).unwrap());
    assert_eq!(p.join().unwrap(), -libc::SIGABRT);
    // As mp's `Lock`: free once its holder died, the death reported once.
    assert!(!lock.locked());
    match b.lock() {
        Err(Error::OwnerDied { what: "Value" }) => {}
        other => panic!("{other:?}"),
    }
    assert!(!lock.locked());
    *b.lock().unwrap() += 1;
    assert_eq!((a.get(), b.get()), (7, 1));
    drop(lock.acquire().unwrap());
}

/// Takes a value from the socket, then one from the queue, and holds each
/// one's guard until told (on the socket).
fn hold_sent_values((conn, queue): (Connection, Queue<Value<u64>>)) {
    for from_queue in [false, true] {
        let v: Value<u64> = if from_queue {
            queue.get_timeout(LONG).unwrap()
        } else {
            conn.recv().unwrap()
        };
        let _g = v.lock().unwrap();
        conn.send(&1u8).unwrap();
        assert!(conn.poll(Some(LONG)).unwrap(), "told to let go");
        assert_eq!(conn.recv::<u8>().unwrap(), 2);
    }
}

/// A value made with a lock, sent after the start (with a socket's message,
/// then through a queue as a ticket), still takes that lock in the child.
fn a_value_sent_after_start_keeps_its_lock(method: StartMethod) {
    let _g = guard();
    let (mine, theirs) = pipe(true).unwrap();
    let queue = Queue::new().unwrap();
    let mut p = Process::new(hold_sent_values, (theirs, queue.clone())).start_method(method);
    p.start().unwrap();
    for from_queue in [false, true] {
        let lock = RLock::new().unwrap();
        let v = Value::with_lock(0u64, lock.clone()).unwrap();
        if from_queue {
            queue.put(v).unwrap();
        } else {
            mine.send(&v).unwrap();
        }
        assert!(mine.poll(Some(LONG)).unwrap(), "the child's answer came");
        assert_eq!(mine.recv::<u8>().unwrap(), 1);
        assert!(lock.locked(), "the child's guard holds this lock");
        assert!(lock.try_acquire().unwrap().is_none());
        mine.send(&2u8).unwrap();
    }
    assert_eq!(p.join().unwrap(), 0);
}
