//! A manager's initializer, run in its server process before it serves
//! (CPython's `BaseManager.start(initializer, initargs)`): CPython's
//! `TestInitializers.test_manager_initializer`, the same for a
//! `BaseManager`, and an initializer that panics or exits.

use std::sync::atomic::{AtomicU64, Ordering};

use mp_manager::{
    Args, BaseManager, BaseProxy, Error, NamespaceProxy, Served, SyncManager, no_such_method, reply,
};
use mp_proc::StartMethod;
use mp_testkit::guard;

mp_testkit::for_each_method!(
    test_manager_initializer,
    a_base_managers_initializer_runs_in_its_server_before_it_serves,
    a_panicking_initializer_fails_the_start_and_leaves_nothing,
    an_initializer_that_exits_fails_the_start_with_its_exit_code,
);

/// CPython's `initializer(ns)`: `ns.test += 1`.
fn initializer(ns: NamespaceProxy) {
    let test: i64 = ns.get("test").unwrap();
    ns.set("test", &(test + 1)).unwrap();
}

/// CPython: `TestInitializers.test_manager_initializer` (its setUp: a
/// manager with a namespace whose `test` is 0). CPython's
/// `assertRaises(TypeError, m.start, 1)` has no port: an initializer that is
/// not a function does not compile.
fn test_manager_initializer(method: StartMethod) {
    let _g = guard();
    let mgr = SyncManager::start_with(method).unwrap();
    let ns = mgr.namespace().unwrap();
    ns.set("test", &0i64).unwrap();
    let m = SyncManager::builder()
        .start_method(method)
        .initializer(initializer, ns.clone())
        .start()
        .unwrap();
    assert_eq!(ns.get::<i64>("test").unwrap(), 1);
    m.shutdown().unwrap();
    mgr.shutdown().unwrap();
}

/// Set by the initializer, in the process it runs in.
static SET_BY_INIT: AtomicU64 = AtomicU64::new(0);

fn set_static(v: u64) {
    SET_BY_INIT.store(v, Ordering::SeqCst);
}

/// Answers `get` with [`SET_BY_INIT`] of the process that serves it.
#[derive(Default)]
struct Probe;

impl Served for Probe {
    fn call_method(&mut self, method: &str, _: Args<'_>) -> mp_manager::Result<Vec<u8>> {
        match method {
            "get" => reply(&SET_BY_INIT.load(Ordering::SeqCst)),
            _ => Err(no_such_method("Probe", method)),
        }
    }
}

/// The initializer ran in the server process (not here), before the first
/// object was served: what it set is what the server's objects see.
fn a_base_managers_initializer_runs_in_its_server_before_it_serves(method: StartMethod) {
    let _g = guard();
    let m = BaseManager::builder()
        .start_method(method)
        .register("Probe", Probe::default)
        .initializer(set_static, 42)
        .start()
        .unwrap();
    let probe: BaseProxy = m.create("Probe").unwrap();
    assert_eq!(probe.call_method::<(), u64>("get", &()).unwrap(), 42);
    assert_eq!(SET_BY_INIT.load(Ordering::SeqCst), 0, "not run here");
    m.shutdown().unwrap();
}

fn panics(what: String) {
    panic!("{what}");
}

/// An initializer that panics: `start` is an error that says so (CPython's
/// owner gets an `EOFError`), and nothing is left behind (the guard: no
/// zombie, no descriptor; the server had not listened yet).
fn a_panicking_initializer_fails_the_start_and_leaves_nothing(method: StartMethod) {
    let _g = guard();
    let e = SyncManager::builder()
        .start_method(method)
        .initializer(panics, "the initializer fails".to_owned())
        .start()
        .unwrap_err();
    match e {
        Error::Panicked { name, message } => {
            assert!(name.starts_with("SyncManager-"), "{name}");
            assert_eq!(message, "the initializer fails");
        }
        e => panic!("not a panic: {e:?}"),
    }
    let e = BaseManager::builder()
        .start_method(method)
        .initializer(panics, "so does this one".to_owned())
        .start()
        .unwrap_err();
    assert!(
        matches!(&e, Error::Panicked { name, message }
            if name.starts_with("BaseManager-") && message == "so does this one"),
        "{e:?}"
    );
}

fn exits(code: i32) {
    mp_proc::exit(code);
}

/// An initializer that ends its process (`mp_proc::exit`): `start` is an
/// error with that exit code.
fn an_initializer_that_exits_fails_the_start_with_its_exit_code(method: StartMethod) {
    let _g = guard();
    let e = SyncManager::builder()
        .start_method(method)
        .initializer(exits, 3)
        .start()
        .unwrap_err();
    assert!(matches!(&e, Error::NoResult { exitcode: 3, .. }), "{e:?}");
}
