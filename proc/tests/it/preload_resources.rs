//! CPython's `TestStartMethod.test_preload_resources`: a forkserver preload
//! that makes a resource (CPython's `mp_preload` module makes a `Lock` when
//! imported), then a forkserver child, which runs clean: it prints `ok`,
//! and nothing is written to stderr (no warning, no leaked resource). It
//! needs a process whose fork server has not started: a fresh run of this
//! binary, selected by [`RUN`].

use std::sync::Mutex;

use mp_logging::Level;
use mp_proc::{Connection, Lock, Process, StartMethod, pipe, set_forkserver_preload};
use mp_testkit::guard;

/// The env var that makes a re-run of this binary run [`preloaded`].
const RUN: &str = "MP_TEST_PRELOAD_RESOURCES";

/// The lock the preload made, kept as a module's global keeps it.
static LOCK: Mutex<Option<Lock>> = Mutex::new(None);

/// `mp_preload`'s import: `multiprocessing.Lock()`.
fn make_a_lock() {
    let lock = Lock::new().unwrap();
    drop(lock.acquire().unwrap());
    *LOCK.lock().unwrap() = Some(lock);
}

/// `mp_preload.f`, which prints `ok` (here: sends it to the parent); the
/// lock the server made is there, and works.
fn f(out: Connection) {
    let lock = LOCK.lock().unwrap().clone().expect("the preload ran");
    drop(lock.acquire().unwrap());
    out.send("ok").unwrap();
}

/// Not a test of its own: `mp_preload.py`'s main, in a re-run with [`RUN`].
#[test]
fn preloaded() {
    if std::env::var_os(RUN).is_none() {
        return;
    }
    mp_logging::log_to_stderr(Some(Level::Warning));
    set_forkserver_preload(&[make_a_lock]).unwrap();
    let (here, there) = pipe(false).unwrap();
    let mut p = Process::new(f, there).start_method(StartMethod::Forkserver);
    p.start().unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "ok");
    assert_eq!(p.join().unwrap(), 0);
    assert!(
        LOCK.lock().unwrap().is_none(),
        "the preload ran in the server only"
    );
}

/// CPython: `TestStartMethod.test_preload_resources`.
#[test]
fn test_preload_resources() {
    let _g = guard();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "preload_resources::preloaded",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RUN, "1")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stderr, "", "failed spawning forkserver or grandchild");
}
