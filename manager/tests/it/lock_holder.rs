//! A manager lock whose holder ended: mp releases it (CPython keeps it held,
//! and anyone may release it), and the release is settled before the
//! holder's `join()` returns, so the parent sees one state, every run.
//! CPython's `TestSyncManagerTypes.test_lock` and `test_rlock`, under every
//! start method.

use mp_manager::{Error, LockProxy, SyncManager};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(test_lock, test_rlock);

/// `obj.acquire()`, never released (the guard forgotten).
fn acquire_and_keep(lock: LockProxy) {
    std::mem::forget(lock.acquire().unwrap());
}

/// CPython's `TestSyncManagerTypes.test_lock`: the child acquires and ends
/// holding the lock. CPython then releases it once (and a second release is
/// `RuntimeError`); in mp the lock went with its holder, so it is free when
/// `join()` returns and the first release is already `NotHeld` (a
/// deliberate difference: a dead process's locks never block the others).
fn test_lock(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.lock().unwrap();
    let mut p = Process::new(acquire_and_keep, o.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(
        matches!(o.release(), Err(Error::NotHeld { .. })),
        "released before join() returned"
    );
    assert!(!o.locked().unwrap());
    let _mine = o.try_acquire().unwrap().expect("free");
    m.shutdown().unwrap();
}

fn acquire_and_release(lock: LockProxy) {
    lock.acquire().unwrap().release().unwrap();
}

/// CPython's `TestSyncManagerTypes.test_rlock` (which, as CPython's, uses a
/// `Lock`): the child acquires and releases; it exits with 0.
fn test_rlock(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let o = m.lock().unwrap();
    let mut p = Process::new(acquire_and_release, o.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(!o.locked().unwrap());
    m.shutdown().unwrap();
}
