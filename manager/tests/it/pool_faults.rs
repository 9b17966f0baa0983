//! A manager's pool against clients that fail it: a client that dies while
//! it joins, under every start method of the server.

use std::time::Duration;

use mp_manager::{EventProxy, PoolProxy};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(a_client_killed_mid_join_frees_its_references);

/// Reports that it runs, then waits for `release` (a minute at most).
fn block((running, release): (EventProxy, EventProxy)) -> u64 {
    running.set().unwrap();
    u64::from(release.wait(Some(Duration::from_secs(60))).unwrap_or(false))
}

/// Says it is about to join, then joins (the pool's worker is blocked).
fn join_blocked((pool, joining): (PoolProxy, EventProxy)) {
    joining.set().unwrap();
    let _ = pool.join();
}

/// A client killed while its `join` waits for a worker that runs on: the
/// server notices the hang-up (as its other waiting calls do), ends the
/// call and drops the client's references, here the last one to the pool,
/// without waiting for the pool's work to end.
fn a_client_killed_mid_join_frees_its_references(method: StartMethod) {
    let _g = guard();
    let m = mp_manager::SyncManager::start_with(method).unwrap();
    let pool = m.pool(Some(1)).unwrap();
    let running = m.event().unwrap();
    let release = m.event().unwrap();
    let r = pool.apply_async(block, (running.clone(), release.clone()));
    assert!(running.wait(Some(Duration::from_secs(60))).unwrap());
    pool.close().unwrap();
    let joining = m.event().unwrap();
    let mut p = Process::new(join_blocked, (pool.clone(), joining.clone())).start_method(method);
    p.start().unwrap();
    assert!(joining.wait(Some(Duration::from_secs(60))).unwrap());
    // Give the child its turn to send the join (no timing: a child killed
    // before its join reaches the server proves nothing, it does not fail
    // the test).
    for _ in 0..20 {
        assert_eq!(m.number_of_objects().unwrap(), 4);
    }
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
    drop((r, pool));
    // Left: the three events. The pool goes when the server drops the
    // killed client's references, which it does when its call ends. (The
    // deadline only turns the bug into a failure: the worker still waits.)
    let mut n = 0;
    let settled = mp_testkit::wait_until(Duration::from_secs(30), || {
        n = m.number_of_objects().unwrap();
        n == 3
    });
    assert!(
        settled,
        "the killed client's join still holds the pool ({n} objects)"
    );
    release.set().unwrap();
    drop((running, release, joining));
    m.shutdown().unwrap();
}
