//! Locks, semaphores, events, conditions, barriers and shared values across
//! processes of every start method.

use std::time::Duration;

use mp_proc::{
    Array, Condition, Error, Event, Lock, Process, RLock, RawArray, RawValue, Semaphore,
    StartMethod, Value,
};

use mp_testkit::guard;

// The behaviours shared with the thread backend (lock exclusion, conditions,
// semaphores, events, barriers) are in the conformance suite; these are the others.
mp_testkit::for_each_method!(
    a_lock_whose_owner_died_reports_it,
    a_lock_held_elsewhere_is_locked,
    values_and_arrays_are_shared,
);

fn hold_and_die((lock, held): (Lock, Event)) {
    let guard = lock.acquire().unwrap();
    held.set();
    std::mem::forget(guard);
    std::process::abort();
}

fn a_lock_whose_owner_died_reports_it(method: StartMethod) {
    let _g = guard();
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let mut p = Process::new(hold_and_die, (lock.clone(), held.clone())).start_method(method);
    p.start().unwrap();
    assert!(held.wait(None).unwrap());
    assert_eq!(p.join().unwrap(), -libc::SIGABRT);
    match lock.acquire() {
        Err(Error::OwnerDied { what: "Lock" }) => {}
        other => panic!("{other:?}"),
    }
    // Reported once; the lock works again.
    let g = lock.acquire().unwrap();
    drop(g);
    assert!(!lock.locked());
}

fn hold_until_told((lock, held, release): (Lock, Event, Event)) {
    let _guard = lock.acquire().unwrap();
    held.set();
    release.wait(None).unwrap();
}

fn a_lock_held_elsewhere_is_locked(method: StartMethod) {
    let _g = guard();
    let lock = Lock::new().unwrap();
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(
        hold_until_told,
        (lock.clone(), held.clone(), release.clone()),
    )
    .start_method(method);
    p.start().unwrap();
    held.wait(None).unwrap();
    assert!(lock.locked());
    assert!(lock.try_acquire().unwrap().is_none());
    assert!(
        lock.acquire_timeout(Duration::from_millis(20))
            .unwrap()
            .is_none()
    );
    assert!(
        matches!(lock.release(), Err(Error::NotHeld { what: "Lock" })),
        "not ours to release"
    );
    release.set();
    let g = lock
        .acquire_timeout(Duration::from_secs(300))
        .unwrap()
        .expect("released by the child");
    drop(g);
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn lock_and_rlock_rules_in_one_thread() {
    let _g = guard();
    let lock = Lock::new().unwrap();
    assert!(!lock.locked());
    let g = lock.acquire().unwrap();
    assert!(lock.locked());
    assert!(matches!(lock.acquire(), Err(Error::WouldDeadlock)));
    drop(g);
    assert!(
        matches!(lock.release(), Err(Error::NotHeld { .. })),
        "releasing a free lock"
    );
    std::mem::forget(lock.acquire().unwrap());
    lock.release().unwrap();
    assert!(!lock.locked());

    let r = RLock::new().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    let c = r.try_acquire().unwrap().unwrap();
    drop((c, b, a));
    assert!(matches!(r.release(), Err(Error::NotHeld { what: "RLock" })));
}

#[test]
fn zero_and_huge_timeouts_work() {
    let _g = guard();
    let sem = Semaphore::new(0).unwrap();
    assert!(!sem.acquire_timeout(Duration::ZERO).unwrap());
    sem.release().unwrap();
    assert!(sem.acquire_timeout(Duration::MAX).unwrap());
    let e = Event::new().unwrap();
    assert!(!e.wait(Some(Duration::ZERO)).unwrap());
    e.set();
    assert!(e.wait(Some(Duration::MAX)).unwrap());
    let lock = Lock::new().unwrap();
    assert!(lock.acquire_timeout(Duration::MAX).unwrap().is_some());
}

#[test]
fn a_condition_refuses_the_guard_of_another_lock() {
    let _g = guard();
    let cond = Condition::new(None).unwrap();
    let other = Lock::new().unwrap();
    assert!(matches!(
        cond.wait(other.acquire().unwrap()),
        Err(Error::NotHeld { .. })
    ));
}

fn write_values((v, raw, a, ra): (Value<f64>, RawValue<i64>, Array<u32>, RawArray<u8>)) {
    v.set(2.5);
    raw.set(-1 << 40);
    a.set(2, 7).unwrap();
    ra.set(0, 255).unwrap();
}

fn values_and_arrays_are_shared(method: StartMethod) {
    let _g = guard();
    let v = Value::new(1.0f64).unwrap();
    let raw = RawValue::new(0i64).unwrap();
    let a = Array::<u32>::new(4).unwrap();
    assert_eq!(a.to_vec(), [0, 0, 0, 0], "zero-filled");
    let ra = RawArray::from_slice(&[1u8, 2]).unwrap();
    let mut p = Process::new(
        write_values,
        (v.clone(), raw.clone(), a.clone(), ra.clone()),
    )
    .start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(v.get(), 2.5);
    assert_eq!(raw.get(), -1 << 40);
    assert_eq!(a.to_vec(), [0, 0, 7, 0]);
    assert_eq!(a.get(4), None);
    assert!(a.set(4, 1).is_err());
    assert_eq!(ra.to_vec(), [255, 2]);
    assert_eq!(a.len(), 4);
}

/// `notify(n)` for a huge `n` (a caller's "everyone") returns at once; it
/// used to signal once per unit, for ever.
#[test]
fn notify_of_a_huge_count_returns() {
    let _g = mp_testkit::guard();
    let c = Condition::new(None).unwrap();
    c.notify(usize::MAX).unwrap();
    c.notify(1025).unwrap();
    c.notify(3).unwrap();
}
