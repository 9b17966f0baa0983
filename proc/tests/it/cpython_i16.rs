//! Issue 16's ports of CPython's `_test_multiprocessing` (3.14's additions
//! included), under fork, spawn and forkserver.

use mp_proc::{Error, Event, Lock, Process, RLock, StartMethod};

use mp_testkit::guard;

mp_testkit::for_each_method!(
    an_rlock_held_elsewhere_is_locked,
    a_dead_holders_lock_is_free_and_its_death_still_reported,
);

/// `_TestLock.test_lock` (3.14, with `locked()`).
#[test]
fn test_lock() {
    let _g = guard();
    let lock = Lock::new().unwrap();
    std::mem::forget(lock.acquire().unwrap());
    assert!(lock.locked());
    assert!(lock.try_acquire().unwrap().is_none());
    lock.release().unwrap();
    assert!(!lock.locked());
    assert!(matches!(
        lock.release(),
        Err(Error::NotHeld { what: "Lock" })
    ));
}

/// `_TestLock.test_rlock` (3.14, with `locked()`).
#[test]
fn test_rlock() {
    let _g = guard();
    let lock = RLock::new().unwrap();
    std::mem::forget(lock.acquire().unwrap());
    assert!(lock.locked());
    std::mem::forget(lock.acquire().unwrap());
    std::mem::forget(lock.acquire().unwrap());
    lock.release().unwrap();
    assert!(lock.locked());
    lock.release().unwrap();
    lock.release().unwrap();
    assert!(!lock.locked());
    assert!(matches!(
        lock.release(),
        Err(Error::NotHeld { what: "RLock" })
    ));
}

fn hold_rlock_until_told((lock, held, release): (RLock, Event, Event)) {
    let _a = lock.acquire().unwrap();
    let _b = lock.acquire().unwrap();
    held.set();
    release.wait(None).unwrap();
}

fn an_rlock_held_elsewhere_is_locked(method: StartMethod) {
    let _g = guard();
    let lock = RLock::new().unwrap();
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(
        hold_rlock_until_told,
        (lock.clone(), held.clone(), release.clone()),
    )
    .start_method(method);
    p.start().unwrap();
    held.wait(None).unwrap();
    assert!(lock.locked());
    assert!(lock.try_acquire().unwrap().is_none());
    release.set();
    assert_eq!(p.join().unwrap(), 0);
    assert!(!lock.locked());
}

fn hold_and_die((lock, held): (Lock, Event)) {
    std::mem::forget(lock.acquire().unwrap());
    held.set();
    std::process::abort();
}

/// `locked()` only looks: the holder's death is reported by the next
/// `acquire`, not swallowed by `locked()`.
fn a_dead_holders_lock_is_free_and_its_death_still_reported(method: StartMethod) {
    let _g = guard();
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let mut p = Process::new(hold_and_die, (lock.clone(), held.clone())).start_method(method);
    p.start().unwrap();
    assert!(held.wait(None).unwrap());
    assert_eq!(p.join().unwrap(), -libc::SIGABRT);
    assert!(!lock.locked(), "its holder is dead");
    assert!(matches!(
        lock.acquire(),
        Err(Error::OwnerDied { what: "Lock" })
    ));
    assert!(!lock.locked());
}
