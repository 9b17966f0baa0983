//! CPython's pool tests (Lib/test/_test_multiprocessing.py of 3.11) that
//! had no port, under fork, spawn and forkserver.

use std::sync::OnceLock;

use mp_pool::Error;
use mp_proc::{StartMethod, Value};
use mp_testkit::guard;

mp_testkit::for_each_method!(test_map_no_failfast);

/// How many tasks have run, shared by the workers (given by the initializer).
static RAN: OnceLock<Value<u32>> = OnceLock::new();

fn count_runs(ran: Value<u32>) {
    let _ = RAN.set(ran);
}

/// CPython's `raise_large_valuerror`: fails with a message of a megabyte.
fn raise_large_valuerror(_wait: u32) -> u32 {
    *RAN.get().expect("the initializer ran").lock().unwrap() += 1;
    panic!("{}", "x".repeat(1024 * 1024));
}

/// CPython: `_TestPool.test_map_no_failfast` (issue #23992): a `map` whose
/// tasks fail with large errors is an error, and `close` then `join` waits
/// for every job instead of deadlocking. CPython checks that the join took
/// as long as the slow job; here, that every job ran.
fn test_map_no_failfast(method: StartMethod) {
    let _g = guard();
    let ran = Value::new(0u32).unwrap();
    let p = crate::builder(method, 2)
        .initializer(count_runs, ran.clone())
        .build()
        .unwrap();
    let r = p.map(raise_large_valuerror, [0, 1]);
    match r {
        Err(Error::Panicked { message }) => assert_eq!(message.len(), 1024 * 1024),
        other => panic!("expected the task's panic, got {other:?}"),
    }
    p.close();
    p.join().unwrap();
    assert_eq!(ran.get(), 2, "join waited for all jobs");
}
