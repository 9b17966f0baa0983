//! Issue 16's synchronisation bullets on threads: CPython's
//! `_TestBarrier.test_action` (and what `threading.Barrier` does when the
//! action raises), and `Value`/`Array` with `lock=` and `get_lock()`
//! (`_TestValue.test_getobj_getlock`, without `get_obj`: see names.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_dummy::{AnyLock, Array, Barrier, Error, Lock, RLock, Value};
use mp_testkit::guard;

/// CPython's `_TestBarrier.N`.
const N: usize = 5;
/// A wait that a bug turns into an error instead of a hang.
const LONG: Duration = Duration::from_secs(30);

/// `_TestBarrier.test_action` (`_test_action_f` waiting twice): the action
/// runs in exactly one thread each time the barrier trips, before any
/// thread goes through.
#[test]
fn test_action() {
    let _g = guard();
    let results = Value::new(0u32).unwrap();
    let appended = results.clone();
    let barrier = Barrier::with_action(
        N,
        move || {
            *appended.lock().unwrap() += 1;
        },
        Some(LONG),
    )
    .unwrap();
    let party = || {
        barrier.wait().unwrap();
        assert_eq!(
            results.get(),
            1,
            "the action ran once, before this party passed"
        );
        barrier.wait().unwrap();
        assert_eq!(results.get(), 2, "and once more at the second trip");
    };
    std::thread::scope(|s| {
        for _ in 1..N {
            s.spawn(party);
        }
        party();
    });
    assert_eq!(results.get(), 2);
    assert!(!barrier.broken());
}

fn boom() {
    panic!("boom");
}

/// As `threading.Barrier` when its action raises: the thread that ran it
/// gets the action's error, every other `BrokenBarrierError`, and the
/// barrier stays broken; `fn()` as mp-proc's takes.
#[test]
fn an_action_that_panics_breaks_the_barrier() {
    let _g = guard();
    let barrier = Barrier::with_action(3, boom as fn(), Some(LONG)).unwrap();
    let tally: [AtomicUsize; 4] = Default::default();
    let party = || {
        let slot = match barrier.wait() {
            Ok(_) => 0,
            Err(Error::BrokenBarrier) => 1,
            Err(Error::ActionPanicked {
                what: "Barrier",
                message,
            }) if message == "boom" => 2,
            Err(_) => 3,
        };
        tally[slot].fetch_add(1, Ordering::SeqCst);
    };
    std::thread::scope(|s| {
        for _ in 1..3 {
            s.spawn(party);
        }
        party();
    });
    let tally = tally.map(|t| t.into_inner());
    assert_eq!(tally, [0, 2, 1, 0]);
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}

/// `_TestValue.test_getobj_getlock` and `_TestArray.test_getobj_getlock_obj`
/// on threads (`get_obj` is processes' only).
#[test]
fn test_getobj_getlock() {
    let _g = guard();
    let val1 = Value::new(5i32).unwrap();
    let lock1 = val1.get_lock().unwrap();
    assert!(lock1.is_reentrant());
    assert_eq!(lock1, val1.get_lock().unwrap());

    let lock = Lock::new().unwrap();
    let val3 = Value::with_lock(5i32, lock.clone()).unwrap();
    assert_eq!(val3.get_lock().unwrap(), AnyLock::from(lock.clone()));
    assert_ne!(val3.get_lock().unwrap(), lock1);

    let arr3 = Array::with_lock(&[0i32, 1, 2], lock.clone()).unwrap();
    assert_eq!(arr3.get_lock().unwrap(), AnyLock::from(lock));
    assert!(
        Array::from_slice(&[1])
            .unwrap()
            .get_lock()
            .unwrap()
            .is_reentrant()
    );
}

/// A value's `get_lock()` is the lock that the guards of every value made
/// with it take: while a thread holds the guard of another value made with
/// `counter.get_lock()`, that lock is held, and the counter's own guard
/// holds it too. For a value's own lock (an RLock), a `Lock` and an `RLock`.
#[test]
fn get_lock_excludes_lock_guards_of_every_value_behind_it() {
    let _g = guard();
    let counters = [
        Value::new(0u64).unwrap(),
        Value::with_lock(0u64, Lock::new().unwrap()).unwrap(),
        Value::with_lock(0u64, RLock::new().unwrap()).unwrap(),
    ];
    let taken_elsewhere = |lock: &AnyLock| {
        std::thread::scope(|s| {
            let free = s.spawn(|| lock.try_acquire().unwrap().is_some());
            !free.join().unwrap()
        })
    };
    for counter in counters {
        let lock = counter.get_lock().unwrap();
        let other = Value::with_lock(0u64, lock.clone()).unwrap();
        assert_eq!(other.get_lock().unwrap(), lock);
        {
            let _g = other.lock().unwrap();
            assert!(lock.locked() && taken_elsewhere(&lock), "{lock:?}");
        }
        assert!(!lock.locked());
        let mut g = counter.lock().unwrap();
        *g += 1;
        assert!(lock.locked() && taken_elsewhere(&lock), "{lock:?}");
        drop(g);
        assert_eq!(counter.get(), 1);
        assert!(!lock.locked() && !taken_elsewhere(&lock));
    }
}
