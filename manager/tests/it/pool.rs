//! `Manager().Pool()`: a pool in the manager's server process, used through
//! its proxy, under every start method of the server. Ports CPython's
//! `_TestPool` as its `ManagerMixin` runs it (`TYPE == 'manager'`) and
//! `TestSyncManagerTypes.test_pool`.

use std::time::Duration;

use mp_manager::{EventProxy, PoolProxy, SyncManager};
use mp_pool::Error;
use mp_proc::{Process, StartMethod};
use mp_testkit::{Undecodable, Unserializable, guard};

mp_testkit::for_each_method!(
    apply_map_and_starmap_give_the_results,
    async_results_are_collected_later,
    a_result_not_ready_times_out_and_comes_later,
    imap_and_imap_unordered_give_every_result,
    empty_inputs_give_empty_results,
    a_zero_pool_is_refused,
    a_panic_in_a_worker_is_the_calls_error,
    a_child_uses_the_pool_passed_in_its_args,
    terminate_stops_endless_work,
    close_then_join_finishes_the_work,
    the_workers_end_with_the_last_proxy,
    the_workers_end_with_the_manager,
    workers_of_every_start_method_run_the_calls,
    values_that_do_not_encode_or_decode_are_encoding_errors,
    a_client_killed_mid_call_leaves_the_pool_serving,
);

fn sqr(x: u64) -> u64 {
    x * x
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

/// `sqr` once `event` is set (CPython's `sqr(x, wait, event)`), or 0 if it
/// is not within a minute.
fn sqr_when_set((x, event): (u64, EventProxy)) -> u64 {
    match event.wait(Some(Duration::from_secs(60))) {
        Ok(true) => x * x,
        _ => 0,
    }
}

fn runtime_error(x: u64) -> u64 {
    panic!("RuntimeError({x})")
}

/// CPython's `raise_large_valuerror`: a panic with a 1 MiB message.
fn large_value_error(_: u64) -> u64 {
    panic!("ValueError({})", "x".repeat(1024 * 1024))
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(sqr).collect()
}

fn pool_of(method: StartMethod, processes: usize) -> (SyncManager, PoolProxy) {
    let m = SyncManager::start_with(method).unwrap();
    let pool = m.pool(Some(processes)).unwrap();
    (m, pool)
}

/// `test_apply`, `test_map`, `test_starmap` (and its chunked form).
fn apply_map_and_starmap_give_the_results(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 4);
    assert_eq!(pool.processes().unwrap(), 4);
    assert_eq!(pool.apply(sqr, 5).unwrap(), 25);
    assert_eq!(pool.map(sqr, 0..10).unwrap(), squares(10));
    assert_eq!(pool.map_chunked(sqr, 0..100, 20).unwrap(), squares(100));
    let f: fn(u64, u64) -> u64 = mul;
    let tuples: Vec<(u64, u64)> = (0..10).zip((0..10).rev()).collect();
    let expected: Vec<u64> = tuples.iter().map(|&(a, b)| a * b).collect();
    assert_eq!(pool.starmap(f, tuples).unwrap(), expected);
    let tuples: Vec<(u64, u64)> = (0..100).zip((0..100).rev()).collect();
    let expected: Vec<u64> = tuples.iter().map(|&(a, b)| a * b).collect();
    assert_eq!(pool.starmap_chunked(f, tuples, 20).unwrap(), expected);
    assert!(matches!(
        pool.map_chunked(sqr, 0..10, 0),
        Err(Error::InvalidArgument { .. })
    ));
    drop(pool);
    m.shutdown().unwrap();
}

/// `test_map_async`, `test_starmap_async` (chunked too), `test_async`.
fn async_results_are_collected_later(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 4);
    let a = pool.apply_async(sqr, 7);
    let b = pool.map_async(sqr, 0..10);
    let f: fn(u64, u64) -> u64 = mul;
    let tuples: Vec<(u64, u64)> = (0..100).zip((0..100).rev()).collect();
    let expected: Vec<u64> = tuples.iter().map(|&(a, b)| a * b).collect();
    let c = pool.starmap_async(f, tuples.clone());
    let d = pool.starmap_async_chunked(f, tuples, 20);
    let e = pool.map_async_chunked(sqr, 0..100, 7);
    assert!(b.wait(None).unwrap());
    assert!(b.ready().unwrap() && b.successful().unwrap());
    // Read again before it is taken.
    assert_eq!(b.get_timeout(Duration::from_secs(60)).unwrap(), squares(10));
    assert_eq!(b.get().unwrap(), squares(10));
    assert_eq!(a.get().unwrap(), 49);
    assert_eq!(c.get().unwrap(), expected);
    assert_eq!(d.get().unwrap(), expected);
    assert_eq!(e.get().unwrap(), squares(100));
    // A result dropped uncollected is forgotten by the server.
    drop(pool.map_async(sqr, 0..10));
    drop(pool);
    m.shutdown().unwrap();
}

/// `test_async_timeout`: `get(timeout)` of a task still running is
/// `TimeoutError`; the result still comes.
fn a_result_not_ready_times_out_and_comes_later(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 3);
    let event = m.event().unwrap();
    let r = pool.apply_async(sqr_when_set, (6, event.clone()));
    assert!(matches!(
        r.get_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(!r.ready().unwrap());
    assert!(matches!(r.successful(), Err(Error::NotReady)));
    event.set().unwrap();
    assert_eq!(r.get().unwrap(), 36);
    drop(pool);
    m.shutdown().unwrap();
}

/// `test_imap`, `test_imap_unordered`.
fn imap_and_imap_unordered_give_every_result(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 4);
    let all: Vec<u64> = pool.imap(sqr, 0..10).map(Result::unwrap).collect();
    assert_eq!(all, squares(10));
    let mut it = pool.imap(sqr, 0..10);
    for i in 0..10 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    assert!(it.next().is_none());
    // More items than a batch: several batches, in order.
    let mut it = pool.imap_chunked(sqr, 0..1000, 100);
    for i in 0..1000 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    assert!(it.next().is_none());
    let mut got: Vec<u64> = pool
        .imap_unordered(sqr, 0..10)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, squares(10));
    let mut got: Vec<u64> = pool
        .imap_unordered_chunked(sqr, 0..1000, 100)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, squares(1000));
    // An item's panic is its own error; the others' results come.
    let out: Vec<_> = pool.imap(runtime_error, [1]).collect();
    assert!(matches!(&out[..], [Err(Error::Panicked { .. })]));
    // The input's panic comes after the batches before it, then the end.
    let input = (0..600u64).map(|i| if i == 500 { panic!("SayWhenError") } else { i });
    let mut it = pool.imap(sqr, input);
    for i in 0..256 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    let rest: Vec<_> = it.collect();
    assert!(
        matches!(rest.last(), Some(Err(Error::InputPanicked { message })) if message.contains("SayWhenError")),
        "{:?}",
        rest.last()
    );
    drop(pool);
    m.shutdown().unwrap();
}

/// `test_empty_iterable`, `test_map_chunksize`.
fn empty_inputs_give_empty_results(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 1);
    assert_eq!(pool.map(sqr, []).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.imap(sqr, []).count(), 0);
    assert_eq!(pool.imap_unordered(sqr, []).count(), 0);
    assert_eq!(pool.map_async(sqr, []).get().unwrap(), Vec::<u64>::new());
    let r = pool.map_async_chunked(sqr, [], 1);
    assert_eq!(
        r.get_timeout(Duration::from_secs(60)).unwrap(),
        Vec::<u64>::new()
    );
    pool.close().unwrap();
    pool.join().unwrap();
    drop(pool);
    m.shutdown().unwrap();
}

/// `test_make_pool`: a manager's `Pool(0)` is an error (CPython's
/// `RemoteError`); the server goes on.
fn a_zero_pool_is_refused(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    assert!(matches!(
        m.pool(Some(0)),
        Err(mp_manager::Error::Invalid { what: "Pool", .. })
    ));
    assert_eq!(m.number_of_objects().unwrap(), 0);
    let pool = m.pool(Some(1)).unwrap();
    assert_eq!(pool.apply(sqr, 3).unwrap(), 9);
    drop(pool);
    m.shutdown().unwrap();
}

/// `test_wrapped_exception`, `test_traceback` (the message), and
/// `test_map_no_failfast`: a worker's panic is the call's error, the pool
/// goes on, and close + join after a failed map returns.
fn a_panic_in_a_worker_is_the_calls_error(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 2);
    match pool.apply(runtime_error, 123) {
        Err(Error::Panicked { message }) => assert!(message.contains("RuntimeError(123)")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pool.apply_async(runtime_error, 1).get(),
        Err(Error::Panicked { .. })
    ));
    let r = pool.map_async(runtime_error, [1, 2]);
    assert!(r.wait(None).unwrap());
    assert!(!r.successful().unwrap());
    assert_eq!(pool.apply(sqr, 4).unwrap(), 16);
    match pool.map(large_value_error, [0, 1]) {
        Err(Error::Panicked { message }) => assert!(message.starts_with("ValueError(xxx")),
        other => panic!("{:?}", other.map(|v| v.len())),
    }
    pool.close().unwrap();
    pool.join().unwrap();
    assert!(matches!(pool.apply(sqr, 1), Err(Error::NotRunning)));
    drop(pool);
    m.shutdown().unwrap();
}

fn use_then_terminate(pool: PoolProxy) {
    assert_eq!(pool.apply(sqr, 5).unwrap(), 25);
    assert_eq!(pool.map(sqr, 0..10).unwrap(), squares(10));
    // CPython's `with obj: pass` (its __exit__ terminates).
    pool.terminate().unwrap();
}

/// `TestSyncManagerTypes.test_pool`: a child gets the proxy in its args and
/// uses the one pool.
fn a_child_uses_the_pool_passed_in_its_args(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 4);
    let mut p = Process::new(use_then_terminate, pool.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    // The child terminated the shared pool.
    pool.join().unwrap();
    assert!(matches!(pool.map(sqr, 0..3), Err(Error::NotRunning)));
    drop(pool);
    m.shutdown().unwrap();
}

/// `test_terminate`: work that would take forever is stopped; its result
/// is `Terminated`.
fn terminate_stops_endless_work(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 3);
    let never = m.event().unwrap();
    let args: Vec<(u64, EventProxy)> = (0..30).map(|i| (i, never.clone())).collect();
    let r = pool.map_async_chunked(sqr_when_set, args, 1);
    pool.terminate().unwrap();
    pool.join().unwrap();
    assert!(matches!(r.get(), Err(Error::Terminated)));
    drop(pool);
    m.shutdown().unwrap();
}

/// Python's `close()` then `join()`: the work submitted is done first;
/// `join` before either is `StillRunning`.
fn close_then_join_finishes_the_work(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 2);
    assert!(matches!(pool.join(), Err(Error::StillRunning)));
    let r = pool.map_async_chunked(sqr, 0..50, 1);
    pool.close().unwrap();
    pool.join().unwrap();
    assert!(r.ready().unwrap());
    assert_eq!(r.get().unwrap(), squares(50));
    drop(pool);
    m.shutdown().unwrap();
}

/// The pids of (some of) the pool's workers.
fn worker_pids(pool: &PoolProxy) -> Vec<u32> {
    let mut pids = pool.map_chunked(pid, 0..64, 1).unwrap();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether `pid`'s parent, or its parent's, ..., is `ancestor`.
fn descends_from(pid: u32, ancestor: u32) -> bool {
    let processes = mp_testkit::processes();
    let parent = |p: u32| processes.iter().find(|e| e.0 == p).map(|e| e.1);
    let mut at = pid;
    while let Some(up) = parent(at) {
        if up == ancestor {
            return true;
        }
        if up <= 1 {
            return false;
        }
        at = up;
    }
    false
}

/// The workers are the server's descendants (its children, or its fork
/// server's under forkserver), and end (joined: no zombie)
/// when the pool's last proxy is dropped.
fn the_workers_end_with_the_last_proxy(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 2);
    let server = mp_proc::active_children()[0].pid();
    let pids = worker_pids(&pool);
    assert!(!pids.is_empty() && !pids.contains(&std::process::id()));
    for &w in &pids {
        assert!(
            descends_from(w, server),
            "worker {w} is not a descendant of the server {server}"
        );
    }
    let copy = pool.clone();
    drop(pool);
    // One proxy left: the pool still runs.
    assert_eq!(copy.apply(sqr, 2).unwrap(), 4);
    drop(copy);
    for w in pids {
        assert!(!mp_testkit::exists(w), "worker {w} outlived its pool");
    }
    assert_eq!(m.number_of_objects().unwrap(), 0);
    m.shutdown().unwrap();
}

/// No worker outlives the manager, even with a proxy still held.
fn the_workers_end_with_the_manager(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 2);
    let pids = worker_pids(&pool);
    m.shutdown().unwrap();
    for w in pids {
        assert!(!mp_testkit::exists(w), "worker {w} outlived the manager");
    }
    // The proxy left says the manager is gone.
    assert!(matches!(pool.apply(sqr, 1), Err(Error::Proc(_))));
}

fn use_pool(pool: PoolProxy) {
    assert_eq!(pool.apply(sqr, 5).unwrap(), 25);
    assert_eq!(pool.map(sqr, 0..10).unwrap(), squares(10));
}

/// The workers' own start method (`pool_with`) under each server start
/// method: the calls run, from this process and from a child, and the
/// workers end with the pool.
fn workers_of_every_start_method_run_the_calls(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let server = mp_proc::active_children()[0].pid();
    for workers in StartMethod::ALL {
        let pool = m.pool_with(Some(2), workers).unwrap();
        let pids = worker_pids(&pool);
        assert!(pids.iter().all(|&w| descends_from(w, server)), "{workers}");
        let mut p = Process::new(use_pool, pool.clone()).start_method(method);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0, "{workers}");
        let f: fn(u64, u64) -> u64 = mul;
        assert_eq!(pool.starmap(f, [(2, 3), (4, 5)]).unwrap(), [6, 20]);
        drop(pool);
        for w in pids {
            assert!(
                !mp_testkit::exists(w),
                "{workers} worker {w} outlived its pool"
            );
        }
    }
    m.shutdown().unwrap();
}

fn take(_: Unserializable) -> u64 {
    0
}

fn give(_: u64) -> Undecodable {
    Undecodable
}

/// `test_map_unplicklable` (an argument that does not encode fails the
/// call, without a hang), and a result that does not decode here.
fn values_that_do_not_encode_or_decode_are_encoding_errors(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 2);
    let items: Vec<Unserializable> = (0..10).map(|_| Unserializable).collect();
    assert!(matches!(pool.map(take, items), Err(Error::Encoding { .. })));
    assert!(matches!(
        pool.apply_async(take, Unserializable).get(),
        Err(Error::Encoding { .. })
    ));
    match pool.apply(give, 1) {
        Err(Error::Encoding { message }) => assert!(message.contains("Undecodable"), "{message}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(pool.apply(sqr, 3).unwrap(), 9);
    drop(pool);
    m.shutdown().unwrap();
}

/// Sets `running`, then blocks until `release` is set (at most a minute).
fn block((running, release): (EventProxy, EventProxy)) -> u64 {
    running.set().unwrap();
    u64::from(release.wait(Some(Duration::from_secs(60))).unwrap_or(false))
}

fn call_and_block(args: (PoolProxy, EventProxy, EventProxy)) {
    let (pool, running, release) = args;
    let _ = pool.apply(block, (running, release));
}

/// A client killed while its call runs: the server gives up waiting for it
/// (its reply has nowhere to go), and the pool serves the others.
fn a_client_killed_mid_call_leaves_the_pool_serving(method: StartMethod) {
    let _g = guard();
    let (m, pool) = pool_of(method, 2);
    let running = m.event().unwrap();
    let release = m.event().unwrap();
    let args = (pool.clone(), running.clone(), release.clone());
    let mut p = Process::new(call_and_block, args).start_method(method);
    p.start().unwrap();
    assert!(running.wait(Some(Duration::from_secs(60))).unwrap());
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
    // One worker is still in the killed client's task: the other serves.
    assert_eq!(pool.apply(sqr, 3).unwrap(), 9);
    assert_eq!(pool.map(sqr, 0..10).unwrap(), squares(10));
    release.set().unwrap();
    let r = pool.apply_async(block, (running.clone(), release.clone()));
    assert_eq!(r.get().unwrap(), 1);
    drop((pool, running, release));
    // The killed client's call ended when released: its handler then lets
    // go of that client's references, on its own thread.
    assert!(
        mp_testkit::wait_until(Duration::from_secs(60), || m
            .number_of_objects()
            .is_ok_and(|n| n == 0)),
        "objects left: {:?}",
        m.number_of_objects()
    );
    m.shutdown().unwrap();
}
