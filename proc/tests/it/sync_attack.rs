//! An attacker's review of issue 16's shared values: what safe code can do
//! to a `Value` or an `Array` that its guard's `&mut` promises cannot
//! happen (within one thread), and that refusing it does not refuse a
//! child (every start method).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mp_proc::{Array, Barrier, Error, Event, Process, RLock, StartMethod, Value};
use mp_testkit::guard;

mp_testkit::for_each_method!(a_child_started_while_a_guard_is_held_waits_for_it);

fn add_one(v: Value<u64>) {
    *v.lock().unwrap() += 1;
}

/// A guard held while a child starts: the child (under fork, a copy of
/// this very thread) is another holder, which waits for the lock and then
/// takes it, rather than being refused as if it held the guard.
fn a_child_started_while_a_guard_is_held_waits_for_it(method: StartMethod) {
    let _g = guard();
    let v = Value::new(1u64).unwrap();
    let held = v.lock().unwrap();
    let mut p = Process::new(add_one, v.clone()).start_method(method);
    p.start().unwrap();
    drop(held);
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(v.get(), 2);
}

/// A value's own lock is an `RLock` (CPython's default), so the thread that
/// holds a guard may take the lock again: a second guard of the same memory
/// would be a second `&mut T` to it while the first lives (undefined
/// behaviour from safe code). The second guard is refused, the first still
/// works, and once it is dropped the value can be locked again.
#[test]
fn a_second_guard_of_one_value_in_one_thread_is_refused() {
    let _g = guard();
    let v = Value::new(1u64).unwrap();
    let mut first = v.lock().unwrap();
    assert!(matches!(v.lock(), Err(Error::Invalid { .. })));
    // Another handle of the same memory: a clone, and a copy that went
    // through the codec (another mapping, another address).
    let clone = v.clone();
    assert!(matches!(clone.lock(), Err(Error::Invalid { .. })));
    *first += 1;
    drop(first);
    assert_eq!(*v.lock().unwrap(), 2);
    // The refusal did not leave the lock held: another thread takes it.
    std::thread::scope(|s| {
        s.spawn(|| *clone.lock().unwrap() += 1).join().unwrap();
    });
    assert_eq!(v.get(), 3);
}

/// The same with a lock given (`Value::with_lock` with an `RLock`), and an
/// array: the refusal is by memory, not by lock, so two values behind one
/// `RLock` may still be guarded at once (`Value::with_lock`'s example).
#[test]
fn a_second_guard_behind_a_shared_rlock_is_refused_but_other_memory_is_not() {
    let _g = guard();
    let lock = RLock::new().unwrap();
    let a = Value::with_lock(1u32, lock.clone()).unwrap();
    let b = Value::with_lock(2u32, lock.clone()).unwrap();
    let arr = Array::with_lock(&[1u8, 2, 3], lock.clone()).unwrap();
    let _held = lock.acquire().unwrap();
    let mut ga = a.lock().unwrap();
    let mut gb = b.lock().unwrap(); // other memory: allowed
    let mut garr = arr.lock().unwrap();
    assert!(matches!(a.lock(), Err(Error::Invalid { .. })));
    assert!(matches!(arr.clone().lock(), Err(Error::Invalid { .. })));
    *ga += 10;
    *gb += 10;
    garr[0] = 9;
    drop((ga, gb, garr));
    assert_eq!((a.get(), b.get(), arr.to_vec()), (11, 12, vec![9, 2, 3]));
}

/// A guard of a value decoded in this process (another mapping of the same
/// memory) is refused while a guard of the original lives.
#[test]
fn a_guard_of_a_decoded_copy_is_refused_while_the_original_is_guarded() {
    let _g = guard();
    let v = Value::new(7i32).unwrap();
    let bytes = mp_proc::codec::encode(&v).unwrap();
    let copy: Value<i32> = mp_proc::codec::decode(&bytes).unwrap();
    let g = v.lock().unwrap();
    assert!(matches!(copy.lock(), Err(Error::Invalid { .. })));
    drop(g);
    *copy.lock().unwrap() += 1;
    assert_eq!(v.get(), 8);
}

/// A wait that a bug turns into a failure instead of a hang.
const LONG: Duration = Duration::from_secs(30);

/// Set in the child party of the barrier tests: its action dies there only.
static IN_CHILD: AtomicBool = AtomicBool::new(false);

/// A barrier action that kills its process (a crash, an `exit`, a kill
/// while it runs), in the child only.
fn die_in_child() {
    if IN_CHILD.load(Ordering::SeqCst) {
        std::process::abort();
    }
}

fn last_party((barrier, go): (Barrier, Event)) {
    IN_CHILD.store(true, Ordering::SeqCst);
    assert!(go.wait(Some(LONG)).unwrap());
    let _ = barrier.wait();
}

/// A party that waits with no timeout while the last party's action kills
/// its process (the action runs with the barrier's lock held) learns that
/// the barrier is broken (`BrokenBarrier` or `OwnerDied`), as a waiter of
/// a lock whose holder died does, instead of waiting for ever: nobody is
/// left to wake it.
fn a_party_whose_action_dies_breaks_the_barrier(method: StartMethod) {
    let _g = guard();
    let barrier = Barrier::with_action(2, die_in_child, None).unwrap();
    let go = Event::new().unwrap();
    let mut p = Process::new(last_party, (barrier.clone(), go.clone())).start_method(method);
    p.start().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = barrier.clone();
    let waiting = std::thread::spawn(move || {
        let _ = tx.send(waiter.wait());
    });
    // The child is last: this process's party waits first.
    assert!(
        mp_testkit::wait_until(LONG, || barrier.n_waiting() == 1),
        "the waiter never arrived"
    );
    go.set();
    assert_eq!(p.join().unwrap(), -libc::SIGABRT);
    match rx.recv_timeout(LONG) {
        Ok(Err(Error::BrokenBarrier | Error::OwnerDied { .. })) => {}
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the other party still waits, {LONG:?} after the action's process died"),
    }
    // Its clone of the barrier (a descriptor) is gone before the guard counts.
    waiting.join().unwrap();
}

#[test]
fn fork_a_party_whose_action_dies_breaks_the_barrier() {
    a_party_whose_action_dies_breaks_the_barrier(StartMethod::Fork);
}

#[test]
fn spawn_a_party_whose_action_dies_breaks_the_barrier() {
    a_party_whose_action_dies_breaks_the_barrier(StartMethod::Spawn);
}

#[test]
fn forkserver_a_party_whose_action_dies_breaks_the_barrier() {
    a_party_whose_action_dies_breaks_the_barrier(StartMethod::Forkserver);
}

/// The panic of `f`, as a string (it must panic).
fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .expect_err("the call must panic, not reach memory beside a live guard");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

/// `get`/`set` of a value (through any handle of it) in the thread that
/// holds its guard would read or write the memory the guard's `&mut`
/// covers: like `RefCell`, they panic instead, and take no lock, so the
/// guard still works and the value is usable once it is dropped.
#[test]
fn get_and_set_beside_a_live_guard_panic_instead_of_aliasing() {
    let _g = guard();
    let v = Value::new(1u64).unwrap();
    let other = v.clone();
    let mut g = v.lock().unwrap();
    assert!(
        panic_message(|| {
            let _ = other.get();
        })
        .contains("holds a guard")
    );
    assert!(panic_message(|| v.set(5)).contains("holds a guard"));
    *g += 1;
    drop(g);
    assert_eq!(v.get(), 2);
    v.set(3);
    assert_eq!(other.get(), 3);

    let a = Array::from_slice(&[1u8, 2]).unwrap();
    let g = a.lock().unwrap();
    assert!(panic_message(|| drop(a.to_vec())).contains("holds a guard"));
    assert!(panic_message(|| drop(a.set(0, 9))).contains("holds a guard"));
    drop(g);
    assert_eq!(a.to_vec(), [1, 2]);
}

/// A `get_obj` view beside its value's guard in the same thread panics too
/// (a guard in another thread or process cannot be seen: that is the
/// `# Safety` contract of `get_obj`).
#[test]
fn a_raw_view_beside_its_values_guard_panics() {
    let _g = guard();
    let v = Value::new(1u64).unwrap();
    // SAFETY: the view is used only beside this thread's guard, where it
    // panics before it reads or writes, and after the guard is dropped.
    let raw = unsafe { v.get_obj() }.unwrap();
    let g = v.lock().unwrap();
    assert!(
        panic_message(|| {
            let _ = raw.get();
        })
        .contains("holds a guard")
    );
    assert!(panic_message(|| raw.set(4)).contains("holds a guard"));
    drop(g);
    raw.set(4);
    assert_eq!(v.get(), 4);

    let a = Array::from_slice(&[1u8, 2]).unwrap();
    // SAFETY: as above.
    let raw = unsafe { a.get_obj() }.unwrap();
    let g = a.lock().unwrap();
    assert!(
        panic_message(|| {
            let _ = raw.get(0);
        })
        .contains("holds a guard")
    );
    drop(g);
    assert_eq!(raw.to_vec(), [1, 2]);
}
