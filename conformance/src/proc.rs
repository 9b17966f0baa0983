//! The behaviours every backend shares, written once, generic over
//! [`Context`]: lifecycle, queues, locks and the other primitives, shared
//! values. `mp-proc` runs them for fork, spawn and forkserver; `mp-dummy`
//! runs them for threads. Each check panics with a message when the backend
//! misbehaves; [`conformance_tests!`](crate::conformance_tests) makes a
//! `#[test]` of each.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use mp_proc::{
    BarrierLike, ConditionLike, ConnectionLike, Context, Error, EventLike, JoinableQueueLike,
    LockLike, ProcessLike, QueueLike, SemaphoreLike, ValueLike,
};

/// A generous bound that only keeps a broken backend from hanging a suite.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Generates one `#[test]` per conformance check for the context `$ctx`;
/// `$setup` (optional) is evaluated first and kept for the test's duration.
#[macro_export]
macro_rules! conformance_tests {
    ($ctx:expr) => {
        $crate::conformance_tests!($ctx, ());
    };
    ($ctx:expr, $setup:expr) => {
        $crate::served_conformance_tests!($ctx, $setup);
        // A barrier's action runs in the last party to arrive: it reads
        // that process's statics.
        $crate::conformance_tests!(@each $ctx, $setup; cpython_sync; test_barrier_action);
    };
    (@each $ctx:expr, $setup:expr; $module:ident; $($name:ident),*) => {
        $( #[test] fn $name() { let _setup = $setup; $crate::$module::$name(&$ctx) } )*
    };
}

/// As [`conformance_tests!`](crate::conformance_tests), for a backend
/// whose primitives a server serves (`mp_manager::ClusterContext`): every
/// check but `test_barrier_action`, which needs a barrier's action to run
/// in a party's process (a server runs it in its own, as CPython's
/// `Manager().Barrier(parties, action)` does).
#[macro_export]
macro_rules! served_conformance_tests {
    ($ctx:expr, $setup:expr) => {
        $crate::conformance_tests!(@each $ctx, $setup; proc;
            lifecycle_exit_codes, lifecycle_is_alive_and_join_timeout, queue_fifo_from_a_worker,
            queue_many_producers_and_consumers, queue_bounded_and_timeouts, joinable_queue_join,
            lock_excludes_workers, lock_held_elsewhere, lock_misuse, rlock_reentrant, condition_notifies_workers,
            semaphore_counts,
            event_wakes_workers, barrier_rounds, barrier_breaks, value_shared_updates,
            pipe_to_a_worker, handles_sent_after_start);
        // CPython's own tests of the same (Lib/test/_test_multiprocessing.py).
        $crate::conformance_tests!(@each $ctx, $setup; cpython_queue;
            test_queue_put, test_queue_get, test_queue_qsize, test_queue_timeout,
            test_queue_closed_queue_put_get_exceptions);
        $crate::conformance_tests!(@each $ctx, $setup; cpython_sync;
            test_semaphore_semaphore, test_semaphore_bounded_semaphore, test_semaphore_timeout,
            test_condition_notify_n, test_condition_waitfor, test_condition_waitfor_timeout,
            test_condition_wait_result, test_event_event, test_barrier_abort, test_barrier_reset,
            test_barrier_abort_and_reset, test_barrier_timeout, test_barrier_default_timeout,
            test_barrier_single_thread, test_barrier_thousand);
    };
}

fn start_all<P: ProcessLike>(ps: &mut [P]) {
    for p in ps.iter_mut() {
        p.start().unwrap();
    }
}

fn join_all<P: ProcessLike>(ps: &mut [P]) {
    for p in ps.iter_mut() {
        assert_eq!(p.join().unwrap(), 0, "{} failed", p.get_name());
    }
}

// ---------------------------------------------------------------- lifecycle

fn returns(_: ()) {}

fn panics(_: ()) {
    panic!("a deliberate panic in a conformance worker");
}

pub fn lifecycle_exit_codes<C: Context>(ctx: &C) {
    let mut ok = ctx.process(returns, ());
    assert!(!ok.is_alive());
    assert_eq!(ok.exitcode(), None);
    ok.start().unwrap();
    assert_eq!(ok.join().unwrap(), 0);
    assert_eq!(ok.exitcode(), Some(0));
    assert!(!ok.get_name().is_empty());
    let mut bad = ctx.process(panics, ());
    bad.start().unwrap();
    assert_eq!(bad.join().unwrap(), 1, "a panic is exit code 1");
}

fn wait_for<C: Context>(ev: C::Event) {
    ev.wait(None).unwrap();
}

pub fn lifecycle_is_alive_and_join_timeout<C: Context>(ctx: &C) {
    let ev = ctx.event().unwrap();
    let mut p = ctx.process(wait_for::<C>, ev.clone());
    p.start().unwrap();
    assert!(p.is_alive());
    assert_eq!(p.join_timeout(Duration::from_millis(10)).unwrap(), None);
    ev.set().unwrap();
    assert_eq!(p.join_timeout(HANG_GUARD).unwrap(), Some(0));
    assert!(!p.is_alive());
}

// ---------------------------------------------------------------- queues

fn produce<C: Context>((q, from, n): (C::Queue<(u32, u32)>, u32, u32)) {
    for i in 0..n {
        q.put((from, i)).unwrap();
    }
}

pub fn queue_fifo_from_a_worker<C: Context>(ctx: &C) {
    let q = ctx.queue().unwrap();
    q.put((9, 9)).unwrap();
    let mut p = ctx.process(produce::<C>, (q.clone(), 1, 100));
    p.start().unwrap();
    assert_eq!(q.get().unwrap(), (9, 9));
    for i in 0..100 {
        assert_eq!(q.get().unwrap(), (1, i));
    }
    assert_eq!(p.join().unwrap(), 0);
    assert!(q.empty().unwrap());
    assert!(matches!(q.try_get(), Err(Error::Empty)));
}

type Pairs = Vec<(u32, u32)>;

#[allow(clippy::type_complexity)] // a worker's arguments are one tuple
fn consume<C: Context>((q, out, n): (C::Queue<(u32, u32)>, C::Queue<Pairs>, u32)) {
    let got: Pairs = (0..n).map(|_| q.get().unwrap()).collect();
    out.put(got).unwrap();
}

pub fn queue_many_producers_and_consumers<C: Context>(ctx: &C) {
    let q = ctx.queue().unwrap();
    let out = ctx.queue().unwrap();
    let n = 3000;
    let mut ps: Vec<C::Process> = (0..2)
        .map(|id| ctx.process(produce::<C>, (q.clone(), id, n)))
        .chain((0..2).map(|_| ctx.process(consume::<C>, (q.clone(), out.clone(), n))))
        .collect();
    start_all(&mut ps);
    let mut all = out.get().unwrap();
    all.extend(out.get().unwrap());
    join_all(&mut ps);
    all.sort_unstable();
    let expected: Vec<(u32, u32)> = (0..2).flat_map(|id| (0..n).map(move |i| (id, i))).collect();
    assert_eq!(all, expected, "every item exactly once");
}

pub fn queue_bounded_and_timeouts<C: Context>(ctx: &C) {
    let q = ctx.queue_with_maxsize(6).unwrap();
    for i in 0..6u8 {
        q.put(i).unwrap();
    }
    assert!(q.full().unwrap());
    assert_eq!(q.qsize().unwrap(), 6);
    assert!(matches!(q.try_put(6), Err(Error::Full)));
    assert!(matches!(
        q.put_timeout(6, Duration::from_millis(10)),
        Err(Error::Full)
    ));
    for i in 0..6 {
        assert_eq!(q.get_timeout(Duration::MAX).unwrap(), i);
    }
    assert!(q.empty().unwrap() && !q.full().unwrap());
    assert!(matches!(
        q.get_timeout(Duration::from_millis(10)),
        Err(Error::Empty)
    ));
    assert!(matches!(q.get_timeout(Duration::ZERO), Err(Error::Empty)));
    q.close().unwrap();
    assert!(matches!(q.put(1), Err(Error::Closed)));
}

fn task_worker<C: Context>((q, n): (C::JoinableQueue<u32>, u32)) {
    for _ in 0..n {
        q.get().unwrap();
        q.task_done().unwrap();
    }
}

pub fn joinable_queue_join<C: Context>(ctx: &C) {
    let q = ctx.joinable_queue().unwrap();
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooManyTimes)));
    for i in 0..12 {
        q.put(i).unwrap();
    }
    let mut ps: Vec<C::Process> = (0..4)
        .map(|_| ctx.process(task_worker::<C>, (q.clone(), 3)))
        .collect();
    start_all(&mut ps);
    q.join().unwrap();
    assert!(q.empty().unwrap());
    join_all(&mut ps);
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooManyTimes)));
}

// ---------------------------------------------------------------- locks

fn add_many<C: Context>((lock, counter, n): (C::Lock, C::Value<u64>, u64)) {
    for _ in 0..n {
        let _held = lock.acquire().unwrap();
        // A read-modify-write that only the lock makes safe.
        let v = counter.get().unwrap();
        counter.set(v + 1).unwrap();
    }
}

pub fn lock_excludes_workers<C: Context>(ctx: &C) {
    let lock = ctx.lock().unwrap();
    let counter = ctx.value(0u64).unwrap();
    let mut ps: Vec<C::Process> = (0..3)
        .map(|_| ctx.process(add_many::<C>, (lock.clone(), counter.clone(), 2000)))
        .collect();
    start_all(&mut ps);
    add_many::<C>((lock.clone(), counter.clone(), 2000));
    join_all(&mut ps);
    assert_eq!(counter.get().unwrap(), 8000);
}

fn hold_until_told<C: Context>((lock, held, release): (C::Lock, C::Event, C::Event)) {
    let _guard = lock.acquire().unwrap();
    held.set().unwrap();
    release.wait(None).unwrap();
}

pub fn lock_held_elsewhere<C: Context>(ctx: &C) {
    let lock = ctx.lock().unwrap();
    let (held, release) = (ctx.event().unwrap(), ctx.event().unwrap());
    let mut p = ctx.process(
        hold_until_told::<C>,
        (lock.clone(), held.clone(), release.clone()),
    );
    p.start().unwrap();
    held.wait(None).unwrap();
    assert!(lock.try_acquire().unwrap().is_none());
    assert!(
        lock.acquire_timeout(Duration::from_millis(10))
            .unwrap()
            .is_none()
    );
    assert!(
        matches!(lock.release(), Err(Error::NotHeld { .. })),
        "not ours to release"
    );
    release.set().unwrap();
    assert!(lock.acquire_timeout(HANG_GUARD).unwrap().is_some());
    assert_eq!(p.join().unwrap(), 0);
}

pub fn lock_misuse<C: Context>(ctx: &C) {
    let lock = ctx.lock().unwrap();
    assert!(
        matches!(lock.release(), Err(Error::NotHeld { .. })),
        "releasing a free lock"
    );
    let g = lock.acquire().unwrap();
    assert!(matches!(lock.acquire(), Err(Error::WouldDeadlock)));
    // Not free now, as Python's `acquire(False)` is False: no error.
    assert!(
        lock.try_acquire().unwrap().is_none(),
        "try_acquire of a held lock"
    );
    drop(g);
    assert!(lock.acquire_timeout(Duration::MAX).unwrap().is_some());
}

pub fn rlock_reentrant<C: Context>(ctx: &C) {
    let r = ctx.rlock().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    let c = r.try_acquire().unwrap().expect("re-entrant");
    drop((c, b, a));
    assert!(matches!(r.release(), Err(Error::NotHeld { .. })));
}

/// Says it waits (on `ready`), waits on `cond`, says it woke (on `ready`).
#[allow(clippy::type_complexity)] // a worker's arguments are one tuple
fn cond_waiter<C: Context>(
    (cond, ready, waiting, woken): (C::Condition, C::Condition, C::Value<u32>, C::Value<u32>),
) {
    let g = cond.acquire().unwrap();
    waiting.update(|w| *w += 1).unwrap();
    ready.notify_all().unwrap();
    let g = cond.wait(g).unwrap();
    woken.update(|w| *w += 1).unwrap();
    ready.notify_all().unwrap();
    drop(g);
}

pub fn condition_notifies_workers<C: Context>(ctx: &C) {
    // Two conditions over one lock: workers wait on `cond`, report on `ready`.
    let cond = ctx.condition(None).unwrap();
    let ready = ctx.condition(Some(cond.lock().clone())).unwrap();
    let (waiting, woken) = (ctx.value(0u32).unwrap(), ctx.value(0u32).unwrap());
    let mut ps: Vec<C::Process> = (0..4)
        .map(|_| {
            ctx.process(
                cond_waiter::<C>,
                (cond.clone(), ready.clone(), waiting.clone(), woken.clone()),
            )
        })
        .collect();
    start_all(&mut ps);
    let g = cond.acquire().unwrap();
    let (g, all_waiting) = ready
        .wait_for(g, || waiting.get().unwrap() == 4, None)
        .unwrap();
    assert!(all_waiting);
    assert_eq!(woken.get().unwrap(), 0);
    cond.notify(2).unwrap();
    let (g, two) = ready
        .wait_for(g, || woken.get().unwrap() >= 2, None)
        .unwrap();
    assert!(two, "notify(2) wakes two waiters");
    cond.notify_all().unwrap();
    let (g, all) = ready
        .wait_for(g, || woken.get().unwrap() == 4, None)
        .unwrap();
    assert!(all, "notify_all wakes the rest");
    let (g, notified) = cond.wait_timeout(g, Duration::from_millis(10)).unwrap();
    assert!(!notified, "nothing more comes: the wait times out");
    let (g, never) = cond
        .wait_for(g, || false, Some(Duration::from_millis(10)))
        .unwrap();
    assert!(!never);
    drop(g);
    join_all(&mut ps);
}

fn release_twice<C: Context>(sem: C::Semaphore) {
    sem.release().unwrap();
    sem.release().unwrap();
}

pub fn semaphore_counts<C: Context>(ctx: &C) {
    let sem = ctx.semaphore(2).unwrap();
    sem.acquire().unwrap();
    assert!(sem.try_acquire().unwrap());
    assert!(!sem.try_acquire().unwrap());
    let t = std::time::Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(20)).unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(20),
        "gave up before the timeout"
    );
    assert_eq!(sem.value().unwrap(), 0);
    let mut p = ctx.process(release_twice::<C>, sem.clone());
    p.start().unwrap();
    sem.acquire().unwrap();
    sem.acquire().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    for _ in 0..3 {
        sem.release().unwrap(); // past the initial value: fine
    }
    assert_eq!(sem.value().unwrap(), 3);
    let bounded = ctx.bounded_semaphore(1).unwrap();
    assert!(matches!(
        bounded.release(),
        Err(Error::TooManyReleases { bound: 1 })
    ));
    bounded.acquire().unwrap();
    bounded.release().unwrap();
}

fn set_after<C: Context>((ready, ev): (C::Event, C::Event)) {
    ready.wait(None).unwrap();
    ev.set().unwrap();
}

pub fn event_wakes_workers<C: Context>(ctx: &C) {
    let (ready, ev) = (ctx.event().unwrap(), ctx.event().unwrap());
    assert!(!ev.wait(Some(Duration::ZERO)).unwrap());
    assert!(!ev.wait(Some(Duration::from_millis(5))).unwrap());
    let mut p = ctx.process(set_after::<C>, (ready.clone(), ev.clone()));
    p.start().unwrap();
    ready.set().unwrap();
    assert!(ev.wait(None).unwrap());
    ev.clear().unwrap();
    assert!(!ev.is_set().unwrap());
    assert_eq!(p.join().unwrap(), 0);
}

fn barrier_party<C: Context>((b, out): (C::Barrier, C::Queue<Vec<usize>>)) {
    let indices = (0..10).map(|_| b.wait().unwrap()).collect();
    out.put(indices).unwrap();
}

pub fn barrier_rounds<C: Context>(ctx: &C) {
    let b = ctx.barrier(3, None).unwrap();
    assert_eq!(b.parties(), 3);
    let out = ctx.queue().unwrap();
    let mut ps: Vec<C::Process> = (0..2)
        .map(|_| ctx.process(barrier_party::<C>, (b.clone(), out.clone())))
        .collect();
    start_all(&mut ps);
    let mine: Vec<usize> = (0..10).map(|_| b.wait().unwrap()).collect();
    let (x, y) = (out.get().unwrap(), out.get().unwrap());
    for round in 0..10 {
        let mut idx = [mine[round], x[round], y[round]];
        idx.sort_unstable();
        assert_eq!(idx, [0, 1, 2], "round {round}: each index once");
    }
    join_all(&mut ps);
    assert_eq!(b.n_waiting().unwrap(), 0);
    assert!(!b.broken().unwrap());
    assert_eq!(ctx.barrier(1, None).unwrap().wait().unwrap(), 0);
}

fn wait_broken<C: Context>((b, out): (C::Barrier, C::Queue<bool>)) {
    out.put(matches!(b.wait(), Err(Error::BrokenBarrier)))
        .unwrap();
}

pub fn barrier_breaks<C: Context>(ctx: &C) {
    let b = ctx.barrier(3, None).unwrap();
    let out = ctx.queue().unwrap();
    let mut p = ctx.process(wait_broken::<C>, (b.clone(), out.clone()));
    p.start().unwrap();
    while b.n_waiting().unwrap() < 1 {
        std::thread::yield_now();
    }
    b.abort().unwrap();
    assert!(out.get().unwrap(), "the waiting party got BrokenBarrier");
    assert!(b.broken().unwrap());
    assert!(
        matches!(b.wait(), Err(Error::BrokenBarrier)),
        "waiting on a broken barrier"
    );
    assert_eq!(p.join().unwrap(), 0);
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    let t = ctx.barrier(2, None).unwrap();
    assert!(matches!(
        t.wait_timeout(Duration::from_millis(10)),
        Err(Error::BrokenBarrier)
    ));
    assert!(t.broken().unwrap(), "a timeout breaks it for everyone");
}

fn bump<C: Context>((v, n): (C::Value<i64>, i64)) {
    for _ in 0..n {
        v.update(|x| *x += 1).unwrap();
    }
}

pub fn value_shared_updates<C: Context>(ctx: &C) {
    let v = ctx.value(-5i64).unwrap();
    let mut ps: Vec<C::Process> = (0..2)
        .map(|_| ctx.process(bump::<C>, (v.clone(), 1000)))
        .collect();
    start_all(&mut ps);
    join_all(&mut ps);
    assert_eq!(v.get().unwrap(), 1995);
    v.set(7).unwrap();
    assert_eq!(v.update(|x| *x *= 2).unwrap(), 14);
}

// ---------------------------------------------------------------- pipes

/// Answers each number with the next one until the pipe closes.
fn echo_next<C: Context>(end: C::Connection) {
    while let Ok(n) = end.recv::<u64>() {
        end.send(&(n + 1)).unwrap();
    }
}

pub fn pipe_to_a_worker<C: Context>(ctx: &C) {
    let (here, there) = ctx.pipe(true).unwrap();
    assert!(
        !here.poll(Some(Duration::ZERO)).unwrap(),
        "nothing sent yet"
    );
    let mut p = ctx.process(echo_next::<C>, there);
    p.start().unwrap();
    for n in [0u64, 41, u64::MAX - 1] {
        here.send(&n).unwrap();
        assert!(here.poll(Some(HANG_GUARD)).unwrap());
        assert_eq!(here.recv::<u64>().unwrap(), n + 1);
    }
    drop(here);
    assert_eq!(p.join().unwrap(), 0, "the worker saw the pipe close");
    let (reader, writer) = ctx.pipe(false).unwrap();
    writer.send("one way").unwrap();
    assert_eq!(reader.recv::<String>().unwrap(), "one way");
    assert!(
        writer.recv::<String>().is_err(),
        "the sending end cannot receive"
    );
}

/// The worker: a queue and an event that did not exist when it started,
/// received on its connection; it puts on the one and sets the other.
fn use_received<C: Context>(end: C::Connection) {
    let (q, ev): (C::Queue<u64>, C::Event) = end.recv().unwrap();
    q.put(7).unwrap();
    ev.set().unwrap();
}

/// Handles made after the worker started reach it through its connection
/// (issue 15) and work there: the same generic body on every backend.
pub fn handles_sent_after_start<C: Context>(ctx: &C) {
    let (here, there) = ctx.pipe(true).unwrap();
    let mut p = ctx.process(use_received::<C>, there);
    p.start().unwrap();
    let q = ctx.queue::<u64>().unwrap();
    let ev = ctx.event().unwrap();
    here.send(&(q.clone(), ev.clone())).unwrap();
    assert_eq!(q.get_timeout(HANG_GUARD).unwrap(), 7);
    assert!(
        ev.wait(Some(HANG_GUARD)).unwrap(),
        "the worker set the event"
    );
    assert_eq!(p.join().unwrap(), 0);
}
