//! Crash isolation, proven: a task that segfaults, aborts, exits or
//! overflows its stack fails only itself with `Error::WorkerDied` naming the
//! signal or the exit code, and the pool goes on with as many workers as
//! before, under every start method. No zombie, no leaked descriptor (the
//! guard checks both).

use std::collections::HashSet;

use mp_pool::{Error, Pool};
use mp_proc::StartMethod;
use mp_testkit::{exists, guard};
use serde::{Deserialize, Serialize};

use crate::tasks::{gated, square};

mp_testkit::for_each_method!(
    a_crashing_task_fails_alone_in_apply,
    a_crashing_item_fails_alone_in_imap_and_map_async,
);

/// How a task crashes its worker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
enum Crash {
    /// `SIGSEGV`.
    Segfault,
    /// `std::process::abort` (`SIGABRT`).
    Abort,
    /// `std::process::exit(3)`, skipping the worker's own exit path.
    Exit,
    /// Unbounded recursion.
    StackOverflow,
}

const CRASHES: [Crash; 4] = [
    Crash::Segfault,
    Crash::Abort,
    Crash::Exit,
    Crash::StackOverflow,
];

impl Crash {
    /// Whether `exitcode` is the one this crash gives.
    fn check(self, exitcode: i32) {
        match self {
            Crash::Segfault => assert_eq!(exitcode, -libc::SIGSEGV, "{self:?}"),
            Crash::Abort => assert_eq!(exitcode, -libc::SIGABRT, "{self:?}"),
            Crash::Exit => assert_eq!(exitcode, 3, "{self:?}"),
            // Rust's guard-page handler reports the overflow and aborts;
            // whatever the signal, it is a death by signal.
            Crash::StackOverflow => assert!(exitcode < 0, "{self:?}: exit code {exitcode}"),
        }
    }
}

/// Recurses for ever; `black_box` keeps each frame's array alive, so the
/// optimiser can neither drop the frames nor make a loop of the calls.
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    if std::hint::black_box(n == u64::MAX) {
        return n;
    }
    recurse(frame[1].wrapping_add(1)).wrapping_add(frame[63])
}

fn crash(how: Crash) -> u64 {
    match how {
        Crash::Segfault => {
            use nix::sys::signal::{Signal, raise};
            // Rust's own SIGSEGV handler (for stack overflows) takes the
            // first one: seeing no overflow it restores the default action
            // and returns, so the second one kills (raise delivers before
            // it returns). No unsafe, no undefined behaviour.
            for _ in 0..2 {
                let _ = raise(Signal::SIGSEGV);
            }
            unreachable!("SIGSEGV's default action ends the process")
        }
        Crash::Abort => std::process::abort(),
        Crash::Exit => std::process::exit(3),
        Crash::StackOverflow => recurse(0),
    }
}

/// `x * x`, or the crash for item 5.
fn square_or_crash((x, how): (u64, Crash)) -> u64 {
    if x == 5 {
        crash(how);
    }
    x * x
}

/// The pool has `n` live workers: `n` gated tasks start at once, each in
/// its own process.
fn has_live_workers(pool: &Pool, gate: &crate::tasks::Gate, n: usize) {
    gate.go.clear();
    let pending: Vec<_> = (0..n as u64).map(|i| pool.apply_async(gated, i)).collect();
    let pids: HashSet<u32> = (0..n).map(|_| gate.started.get().unwrap()).collect();
    assert_eq!(pids.len(), n, "{n} tasks ran at once in {pids:?}");
    assert!(pids.iter().all(|&p| exists(p)));
    gate.go.set();
    for (i, r) in pending.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), i as u64);
    }
}

fn a_crashing_task_fails_alone_in_apply(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    for how in CRASHES {
        // A task running when the crash comes is not disturbed. (It is not
        // waited for before the crash: the pool may have queued the crashing
        // task behind it on its worker.)
        gate.go.clear();
        let beside = pool.apply_async(gated, 7);
        gate.started.get().unwrap();
        let crashed = pool.apply_async(crash, how);
        gate.go.set();
        match crashed.get() {
            Err(Error::WorkerDied { pid, exitcode, .. }) => {
                how.check(exitcode);
                assert!(!exists(pid), "{how:?}: the dead worker {pid} was reaped");
            }
            other => panic!("{how:?}: expected WorkerDied, got {other:?}"),
        }
        assert_eq!(beside.get().unwrap(), 7);
        // Later calls succeed, and the worker was replaced.
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
        has_live_workers(&pool, &gate, 2);
    }
    pool.close();
    pool.join().unwrap();
}

fn a_crashing_item_fails_alone_in_imap_and_map_async(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    for how in CRASHES {
        let items = (0..20u64).map(move |x| (x, how));
        let outcomes: Vec<_> = pool
            .imap_chunked(square_or_crash, items.clone(), 1)
            .collect();
        assert_eq!(outcomes.len(), 20);
        for (i, r) in outcomes.into_iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(v, (i * i) as u64, "{how:?}"),
                Err(Error::WorkerDied { exitcode, .. }) if i == 5 => how.check(exitcode),
                Err(e) => panic!("{how:?}: item {i}: {e}"),
            }
        }
        // A map fails with the item's error, as CPython's fails with an
        // item's exception; the pool goes on.
        match pool.map_async_chunked(square_or_crash, items, 1).get() {
            Err(Error::WorkerDied { exitcode, .. }) => how.check(exitcode),
            other => panic!("{how:?}: expected WorkerDied, got {other:?}"),
        }
        assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
        has_live_workers(&pool, &gate, 2);
    }
    assert_eq!(pool.processes(), 2);
    pool.close();
    pool.join().unwrap();
}
