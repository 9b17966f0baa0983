//! Issue 16's ports of CPython's `_test_multiprocessing` (3.14's additions
//! included), under fork, spawn and forkserver.

use std::time::Duration;

use mp_proc::{Error, Event, Lock, Process, RLock, StartMethod, active_children};

use mp_testkit::guard;

mp_testkit::for_each_method!(
    an_rlock_held_elsewhere_is_locked,
    a_dead_holders_lock_is_free_and_its_death_still_reported,
    test_interrupt_no_handler,
    test_interrupt,
    interrupting_an_ended_process_is_already_exited,
    test_level,
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

/// CPython's `_sleep_some_event`: says it is ready, then waits for ever (on
/// an event nobody sets).
fn sleep_some_event((ready, never): (Event, Event)) {
    ready.set();
    never.wait(None).unwrap();
}

extern "C" fn exit_as_keyboard_interrupt(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(1) }
}

/// A child with a SIGINT handler: it ends with 1, as CPython's child that
/// raises an uncaught `KeyboardInterrupt`.
fn sleep_with_int_handler(events: (Event, Event)) {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: the handler only calls _exit, which is async-signal-safe.
    unsafe {
        signal(
            Signal::SIGINT,
            SigHandler::Handler(exit_as_keyboard_interrupt),
        )
    }
    .unwrap();
    sleep_some_event(events);
}

/// CPython's `_kill_process(meth)`: the checks around a signal sent to a
/// running child; returns its exit code.
fn kill_process(method: StartMethod, target: fn((Event, Event))) -> i32 {
    let (ready, never) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(target, (ready.clone(), never.clone()))
        .daemon(true)
        .start_method(method);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert!(p.is_alive());
    assert!(active_children().iter().any(|c| c.pid() == pid));
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert!(p.is_alive());
    assert!(
        ready.wait(Some(Duration::from_secs(300))).unwrap(),
        "the child never got ready"
    );
    p.interrupt().unwrap();
    let code = p.join().unwrap();
    assert!(!p.is_alive());
    assert!(!active_children().iter().any(|c| c.pid() == pid));
    code
}

/// `_TestProcess.test_interrupt_no_handler` (3.14): the default action.
fn test_interrupt_no_handler(method: StartMethod) {
    let _g = guard();
    assert_eq!(kill_process(method, sleep_some_event), -libc::SIGINT);
}

/// `_TestProcess.test_interrupt` (3.14): CPython's child turns SIGINT into
/// `KeyboardInterrupt` and exit code 1; here the child's handler does.
fn test_interrupt(method: StartMethod) {
    let _g = guard();
    assert_eq!(kill_process(method, sleep_with_int_handler), 1);
}

fn interrupting_an_ended_process_is_already_exited(method: StartMethod) {
    let _g = guard();
    let mut p = Process::new(|_: ()| {}, ()).start_method(method);
    assert!(matches!(p.interrupt(), Err(Error::NotStarted { .. })));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(matches!(
        p.interrupt(),
        Err(Error::AlreadyExited { exitcode: 0, .. })
    ));
}

/// CPython's `_test_level`: the child's logger's effective level.
fn send_level(conn: mp_proc::Connection) {
    conn.send(&(mp_logging::get_logger().effective_level() as u8))
        .unwrap();
}

/// `_TestLogging.test_level`. CPython's levels 32 and 37 are not among
/// mp-logging's named levels: `ERROR` and `CRITICAL` stand for them.
fn test_level(method: StartMethod) {
    use mp_logging::{Level, get_logger, root_level, set_root_level};
    let _g = guard();
    let (level1, level2) = (Level::Error, Level::Critical);
    let logger = get_logger();
    let (old_level, old_root) = (logger.level(), root_level());
    let child_level = || {
        let (reader, writer) = mp_proc::pipe(false).unwrap();
        let mut p = Process::new(send_level, writer).start_method(method);
        p.start().unwrap();
        let got: u8 = reader.recv().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        got
    };

    logger.set_level(level1);
    let got1 = child_level();
    logger.set_level(Level::NotSet);
    set_root_level(level2);
    let got2 = child_level();
    set_root_level(old_root);
    logger.set_level(old_level);
    assert_eq!(got1, level1 as u8);
    assert_eq!(got2, level2 as u8);
}
