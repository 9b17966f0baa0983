//! CPython's tests of the synchronization primitives (`_TestSemaphore`,
//! `_TestCondition`, `_TestEvent`, `_TestBarrier` of 3.11's
//! Lib/test/_test_multiprocessing.py), ported with the same inputs and
//! assertions, generic over [`Context`]. `threading.BrokenBarrierError` is
//! `Err(BrokenBarrier)`; CPython's `DummyList` of results is a shared counter
//! of its length. Where CPython sleeps to let the others get somewhere, the
//! port waits until they are there (a barrier's `n_waiting`, `broken`); its
//! timing checks are kept as lower bounds only.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mp_proc::{
    BarrierLike, ConditionLike, Context, Error, EventLike, LockLike, ProcessLike, QueueLike,
    SemaphoreLike, ValueLike,
};

use crate::cpython_queue::{TIMEOUT, timed};
use crate::proc::HANG_GUARD;

/// Polls `ready` until it holds; the deadline only turns a bug into a
/// failure instead of a hang (CPython's `assertReachesEventually`).
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < HANG_GUARD, "never: {what}");
        std::thread::yield_now();
    }
}

// ---------------------------------------------------------------- semaphores

/// CPython's `_TestSemaphore._test_semaphore`.
fn check_semaphore<S: SemaphoreLike>(sem: &S) {
    assert_eq!(sem.value().unwrap(), 2);
    sem.acquire().unwrap();
    assert_eq!(sem.value().unwrap(), 1);
    sem.acquire().unwrap();
    assert_eq!(sem.value().unwrap(), 0);
    assert!(!sem.try_acquire().unwrap()); // acquire(False)
    assert_eq!(sem.value().unwrap(), 0);
    sem.release().unwrap();
    assert_eq!(sem.value().unwrap(), 1);
    sem.release().unwrap();
    assert_eq!(sem.value().unwrap(), 2);
}

/// CPython: `_TestSemaphore.test_semaphore`.
pub fn test_semaphore_semaphore<C: Context>(ctx: &C) {
    let sem = ctx.semaphore(2).unwrap();
    check_semaphore(&sem);
    sem.release().unwrap();
    assert_eq!(sem.value().unwrap(), 3);
    sem.release().unwrap();
    assert_eq!(sem.value().unwrap(), 4);
}

/// CPython: `_TestSemaphore.test_bounded_semaphore`.
pub fn test_semaphore_bounded_semaphore<C: Context>(ctx: &C) {
    let sem = ctx.bounded_semaphore(2).unwrap();
    check_semaphore(&sem);
}

/// CPython: `_TestSemaphore.test_timeout`.
pub fn test_semaphore_timeout<C: Context>(ctx: &C) {
    let sem = ctx.semaphore(0).unwrap();
    assert!(!sem.try_acquire().unwrap()); // acquire(False)
    assert!(!sem.try_acquire().unwrap()); // acquire(False, None)
    assert!(!sem.try_acquire().unwrap()); // acquire(False, TIMEOUT1)
    for _ in 0..2 {
        // acquire(True, TIMEOUT2), acquire(timeout=TIMEOUT3)
        let (got, took) = timed(|| sem.acquire_timeout(TIMEOUT).unwrap());
        assert!(!got);
        assert!(took >= TIMEOUT, "gave up after {took:?}");
    }
}

// ---------------------------------------------------------------- conditions

type Sleeper<C> = (
    <C as Context>::Condition,
    <C as Context>::Semaphore,
    <C as Context>::Semaphore,
);

/// CPython's `_TestCondition.f`: says it sleeps, waits, says it woke.
fn sleeper<C: Context>((cond, sleeping, woken): Sleeper<C>) {
    let g = cond.acquire().unwrap();
    sleeping.release().unwrap();
    let g = cond.wait(g).unwrap();
    woken.release().unwrap();
    drop(g);
}

/// CPython: `_TestCondition.test_notify_n` (three processes and three
/// threads wait).
pub fn test_condition_notify_n<C: Context>(ctx: &C) {
    let cond = ctx.condition(None).unwrap();
    let (sleeping, woken) = (ctx.semaphore(0).unwrap(), ctx.semaphore(0).unwrap());
    let args = || (cond.clone(), sleeping.clone(), woken.clone());
    let mut ps: Vec<C::Process> = (0..3).map(|_| ctx.process(sleeper::<C>, args())).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    let ts: Vec<_> = (0..3)
        .map(|_| {
            let a = args();
            std::thread::spawn(move || sleeper::<C>(a))
        })
        .collect();
    // Each sleeper says so while it holds the lock, and lets it go only
    // by waiting: once the six said so and we hold the lock, all wait.
    for _ in 0..6 {
        sleeping.acquire().unwrap();
    }
    let g = cond.acquire().unwrap();
    assert_eq!(woken.value().unwrap(), 0);
    cond.notify(2).unwrap();
    drop(g);
    eventually("two woken", || woken.value().unwrap() == 2);
    let g = cond.acquire().unwrap();
    cond.notify(4).unwrap();
    drop(g);
    eventually("six woken", || woken.value().unwrap() == 6);
    // Notifying more than are waiting is fine.
    let g = cond.acquire().unwrap();
    cond.notify(3).unwrap();
    drop(g);
    assert_eq!(woken.value().unwrap(), 6);
    for t in ts {
        t.join().unwrap();
    }
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
}

fn waitfor_f<C: Context>((cond, state): (C::Condition, C::Value<i32>)) {
    let g = cond.acquire().unwrap();
    state.set(0).unwrap();
    cond.notify(1).unwrap();
    let (_g, result) = cond
        .wait_for(g, || state.get().unwrap() == 4, None)
        .unwrap();
    // CPython's child exits with 1 (here a panic, exit code 1) otherwise.
    assert!(result && state.get().unwrap() == 4);
}

/// CPython: `_TestCondition.test_waitfor`.
pub fn test_condition_waitfor<C: Context>(ctx: &C) {
    let cond = ctx.condition(None).unwrap();
    let state = ctx.value(-1i32).unwrap();
    let mut p = ctx.process(waitfor_f::<C>, (cond.clone(), state.clone()));
    p.set_daemon(true);
    p.start().unwrap();
    let g = cond.acquire().unwrap();
    let (g, result) = cond
        .wait_for(g, || state.get().unwrap() == 0, None)
        .unwrap();
    assert!(result);
    assert_eq!(state.get().unwrap(), 0);
    drop(g);
    for _ in 0..4 {
        let g = cond.acquire().unwrap();
        state.update(|s| *s += 1).unwrap();
        cond.notify(1).unwrap();
        drop(g);
    }
    assert_eq!(p.join().unwrap(), 0);
}

/// CPython's `CLOCK_RES`.
const CLOCK_RES: Duration = Duration::from_millis(100);

type WaitforTimeout<C> = (
    <C as Context>::Condition,
    <C as Context>::Value<i32>,
    <C as Context>::Value<bool>,
    <C as Context>::Semaphore,
);

fn waitfor_timeout_f<C: Context>((cond, state, success, sem): WaitforTimeout<C>) {
    sem.release().unwrap();
    let g = cond.acquire().unwrap();
    let expected = Duration::from_millis(100);
    let start = Instant::now();
    let (g, result) = cond
        .wait_for(g, || state.get().unwrap() == 4, Some(expected))
        .unwrap();
    let dt = start.elapsed();
    if !result && expected.saturating_sub(CLOCK_RES) <= dt {
        success.set(true).unwrap();
    }
    drop(g);
}

/// CPython: `_TestCondition.test_waitfor_timeout`.
pub fn test_condition_waitfor_timeout<C: Context>(ctx: &C) {
    let cond = ctx.condition(None).unwrap();
    let state = ctx.value(0i32).unwrap();
    let success = ctx.value(false).unwrap();
    let sem = ctx.semaphore(0).unwrap();
    let mut p = ctx.process(
        waitfor_timeout_f::<C>,
        (cond.clone(), state.clone(), success.clone(), sem.clone()),
    );
    p.set_daemon(true);
    p.start().unwrap();
    assert!(sem.acquire_timeout(HANG_GUARD).unwrap());
    // Only three of the four steps the waiter waits for.
    for _ in 0..3 {
        let g = cond.acquire().unwrap();
        state.update(|s| *s += 1).unwrap();
        cond.notify(1).unwrap();
        drop(g);
    }
    assert_eq!(p.join().unwrap(), 0);
    assert!(success.get().unwrap());
}

fn notify_once<C: Context>(c: C::Condition) {
    let g = c.acquire().unwrap();
    c.notify(1).unwrap();
    drop(g);
}

/// CPython: `_TestCondition.test_wait_result`. (Its last check, that a
/// SIGINT from the child interrupts the parent's `wait` with
/// `KeyboardInterrupt`, is about Python's signal handler.)
pub fn test_condition_wait_result<C: Context>(ctx: &C) {
    let c = ctx.condition(None).unwrap();
    let g = c.acquire().unwrap();
    let (g, notified) = c.wait_timeout(g, Duration::ZERO).unwrap();
    assert!(!notified);
    let (g, notified) = c.wait_timeout(g, TIMEOUT).unwrap();
    assert!(!notified);
    let mut p = ctx.process(notify_once::<C>, c.clone());
    p.start().unwrap();
    let (g, notified) = c.wait_timeout(g, Duration::from_secs(60)).unwrap();
    assert!(notified);
    drop(g);
    assert_eq!(p.join().unwrap(), 0);
}

// ---------------------------------------------------------------- events

fn set_event<C: Context>(event: C::Event) {
    event.set().unwrap();
}

/// CPython: `_TestEvent.test_event`.
pub fn test_event_event<C: Context>(ctx: &C) {
    let event = ctx.event().unwrap();
    assert!(!event.is_set().unwrap());
    assert!(!event.wait(Some(Duration::ZERO)).unwrap());
    let (set, took) = timed(|| event.wait(Some(TIMEOUT)).unwrap());
    assert!(!set);
    assert!(took >= TIMEOUT, "gave up after {took:?}");
    event.set().unwrap();
    assert!(event.is_set().unwrap());
    assert!(event.wait(None).unwrap());
    assert!(event.wait(Some(TIMEOUT)).unwrap());
    event.clear().unwrap();
    // The child sets it (CPython's child sleeps TIMEOUT2 first).
    let mut p = ctx.process(set_event::<C>, event.clone());
    p.set_daemon(true);
    p.start().unwrap();
    assert!(event.wait(None).unwrap());
    assert_eq!(p.join().unwrap(), 0);
}

// ---------------------------------------------------------------- barriers

/// CPython's `_TestBarrier.N`: the parties of its barriers.
const N: usize = 5;
/// CPython's `_TestBarrier.defaultTimeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// CPython's `_TestBarrier.run_threads`: `f` in N - 1 workers and here.
fn run_threads<C: Context, A: mp_proc::Payload + Clone>(ctx: &C, f: fn(A), args: A) {
    let mut ps: Vec<C::Process> = (0..N - 1).map(|_| ctx.process(f, args.clone())).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    f(args);
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0, "{} failed", p.get_name());
    }
}

fn append<V: ValueLike<u32>>(list: &V) {
    list.update(|n| *n += 1).unwrap();
}

fn broken(r: &Result<usize, Error>) -> bool {
    match r {
        Ok(_) => false,
        Err(Error::BrokenBarrier) => true,
        Err(e) => panic!("expected BrokenBarrier, got {e:?}"),
    }
}

type Abort<C> = (
    <C as Context>::Barrier,
    <C as Context>::Value<u32>,
    <C as Context>::Value<u32>,
);

fn abort_f<C: Context>((barrier, results1, results2): Abort<C>) {
    // CPython raises RuntimeError in party N // 2 and aborts on it.
    match barrier.wait() {
        Ok(i) if i == N / 2 => return barrier.abort().unwrap(),
        r if broken(&r) => return append(&results2),
        _ => {}
    }
    if broken(&barrier.wait()) {
        append(&results2);
    } else {
        append(&results1);
    }
}

/// CPython: `_TestBarrier.test_abort`.
pub fn test_barrier_abort<C: Context>(ctx: &C) {
    let barrier = ctx.barrier(N, Some(DEFAULT_TIMEOUT)).unwrap();
    let (results1, results2) = (ctx.value(0u32).unwrap(), ctx.value(0u32).unwrap());
    run_threads(
        ctx,
        abort_f::<C>,
        (barrier.clone(), results1.clone(), results2.clone()),
    );
    assert_eq!(results1.get().unwrap(), 0);
    assert_eq!(results2.get().unwrap(), N as u32 - 1);
    assert!(barrier.broken().unwrap());
}

type Reset<C> = (
    <C as Context>::Barrier,
    <C as Context>::Value<u32>,
    <C as Context>::Value<u32>,
    <C as Context>::Value<u32>,
);

fn reset_f<C: Context>((barrier, results1, results2, results3): Reset<C>) {
    let i = barrier.wait().unwrap();
    if i == N / 2 {
        // Wait until the other parties are all in the barrier.
        eventually("the others wait", || barrier.n_waiting().unwrap() >= N - 1);
        barrier.reset().unwrap();
    } else if broken(&barrier.wait()) {
        append(&results2);
    } else {
        append(&results1);
    }
    // Now, pass the barrier again.
    barrier.wait().unwrap();
    append(&results3);
}

/// CPython: `_TestBarrier.test_reset`.
pub fn test_barrier_reset<C: Context>(ctx: &C) {
    let barrier = ctx.barrier(N, Some(DEFAULT_TIMEOUT)).unwrap();
    let r: Vec<C::Value<u32>> = (0..3).map(|_| ctx.value(0u32).unwrap()).collect();
    let args = (barrier, r[0].clone(), r[1].clone(), r[2].clone());
    run_threads(ctx, reset_f::<C>, args);
    assert_eq!(r[0].get().unwrap(), 0);
    assert_eq!(r[1].get().unwrap(), N as u32 - 1);
    assert_eq!(r[2].get().unwrap(), N as u32);
}

type AbortAndReset<C> = (
    <C as Context>::Barrier,
    <C as Context>::Barrier,
    <C as Context>::Value<u32>,
    <C as Context>::Value<u32>,
    <C as Context>::Value<u32>,
);

fn abort_and_reset_f<C: Context>(
    (barrier, barrier2, results1, results2, results3): AbortAndReset<C>,
) {
    match barrier.wait() {
        Ok(i) if i == N / 2 => barrier.abort().unwrap(),
        r if broken(&r) => append(&results2),
        _ => {
            if broken(&barrier.wait()) {
                append(&results2);
            } else {
                append(&results1);
            }
        }
    }
    // Synchronize and reset the barrier. Must synchronize first so that
    // everyone has left it when we reset, and after so that no one enters
    // it before the reset.
    if barrier2.wait().unwrap() == N / 2 {
        barrier.reset().unwrap();
    }
    barrier2.wait().unwrap();
    barrier.wait().unwrap();
    append(&results3);
}

/// CPython: `_TestBarrier.test_abort_and_reset`.
pub fn test_barrier_abort_and_reset<C: Context>(ctx: &C) {
    let barrier = ctx.barrier(N, Some(DEFAULT_TIMEOUT)).unwrap();
    let barrier2 = ctx.barrier(N, None).unwrap();
    let r: Vec<C::Value<u32>> = (0..3).map(|_| ctx.value(0u32).unwrap()).collect();
    let args = (barrier, barrier2, r[0].clone(), r[1].clone(), r[2].clone());
    run_threads(ctx, abort_and_reset_f::<C>, args);
    assert_eq!(r[0].get().unwrap(), 0);
    assert_eq!(r[1].get().unwrap(), N as u32 - 1);
    assert_eq!(r[2].get().unwrap(), N as u32);
}

type Late<C> = (<C as Context>::Barrier, <C as Context>::Value<u32>);

/// Party N // 2 is late for the second wait: CPython sleeps a second past
/// the others' timeout; here it waits until their timeout broke the barrier.
fn be_late<C: Context>(barrier: &C::Barrier, i: usize) {
    if i == N / 2 {
        eventually("the others time out", || barrier.broken().unwrap());
    }
}

fn timeout_f<C: Context>((barrier, results): Late<C>) {
    let i = barrier.wait().unwrap();
    be_late::<C>(&barrier, i);
    if broken(&barrier.wait_timeout(Duration::from_millis(500))) {
        append(&results);
    }
}

/// CPython: `_TestBarrier.test_timeout`.
pub fn test_barrier_timeout<C: Context>(ctx: &C) {
    let barrier = ctx.barrier(N, Some(DEFAULT_TIMEOUT)).unwrap();
    let results = ctx.value(0u32).unwrap();
    run_threads(ctx, timeout_f::<C>, (barrier.clone(), results.clone()));
    assert_eq!(results.get().unwrap() as usize, barrier.parties());
}

fn default_timeout_f<C: Context>((barrier, results): Late<C>) {
    let i = barrier.wait_timeout(DEFAULT_TIMEOUT).unwrap();
    be_late::<C>(&barrier, i);
    if broken(&barrier.wait()) {
        append(&results);
    }
}

/// CPython: `_TestBarrier.test_default_timeout`.
pub fn test_barrier_default_timeout<C: Context>(ctx: &C) {
    let barrier = ctx.barrier(N, Some(Duration::from_millis(500))).unwrap();
    let results = ctx.value(0u32).unwrap();
    run_threads(
        ctx,
        default_timeout_f::<C>,
        (barrier.clone(), results.clone()),
    );
    assert_eq!(results.get().unwrap() as usize, barrier.parties());
}

/// CPython: `_TestBarrier.test_single_thread`.
pub fn test_barrier_single_thread<C: Context>(ctx: &C) {
    let b = ctx.barrier(1, None).unwrap();
    b.wait().unwrap();
    b.wait().unwrap();
}

type Thousand<C> = (
    <C as Context>::Barrier,
    u32,
    <C as Context>::Queue<u32>,
    <C as Context>::Lock,
);

fn thousand_f<C: Context>((barrier, passes, conn, lock): Thousand<C>) {
    for i in 0..passes {
        barrier.wait().unwrap();
        let _held = lock.acquire().unwrap();
        conn.put(i).unwrap();
    }
}

/// CPython: `_TestBarrier.test_thousand`. CPython's N workers share one
/// end of a one-way pipe; a generic `Connection` cannot be cloned, so they
/// share a queue, which keeps the order of the sends the same way.
pub fn test_barrier_thousand<C: Context>(ctx: &C) {
    let passes = 1000;
    let barrier = ctx.barrier(N, Some(DEFAULT_TIMEOUT)).unwrap();
    let lock = ctx.lock().unwrap();
    let conn = ctx.queue::<u32>().unwrap();
    let mut ps: Vec<C::Process> = (0..N)
        .map(|_| {
            let args = (barrier.clone(), passes, conn.clone(), lock.clone());
            ctx.process(thousand_f::<C>, args)
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for i in 0..passes {
        for _ in 0..N {
            assert_eq!(conn.get().unwrap(), i);
        }
    }
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
}

/// What [`append_true`], the action of [`test_barrier_action`]'s barrier,
/// counts into in this process: set by each party from its args before it
/// waits (an action is a plain `fn()`, so it finds its list here, as
/// CPython's `AppendTrue(results)` carries it).
static ACTION_RESULTS: std::sync::Mutex<Option<Box<dyn Fn() + Send>>> = std::sync::Mutex::new(None);

/// The calls of [`test_barrier_action`] in one process, one at a time (they
/// share [`ACTION_RESULTS`]).
static ACTION_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// CPython's `AppendTrue(results)`.
fn append_true() {
    if let Some(append) = &*ACTION_RESULTS.lock().unwrap() {
        append();
    }
}

type Action<C> = (<C as Context>::Barrier, <C as Context>::Value<u32>);

/// CPython's `_TestBarrier._test_action_f`, waiting twice: after each trip
/// the action ran exactly once more, before any party went through.
fn action_f<C: Context>((barrier, results): Action<C>) {
    let counted = results.clone();
    *ACTION_RESULTS.lock().unwrap() = Some(Box::new(move || append(&counted)));
    barrier.wait().unwrap();
    // CPython: `if len(results) != 1: raise RuntimeError`.
    assert_eq!(results.get().unwrap(), 1, "the action ran once, before");
    barrier.wait().unwrap();
    assert_eq!(results.get().unwrap(), 2, "and once more at the 2nd trip");
}

/// CPython: `_TestBarrier.test_action` (with a second trip): the action runs
/// exactly once each time the barrier trips, before any party passes.
pub fn test_barrier_action<C: Context>(ctx: &C) {
    let _one_at_a_time = ACTION_SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let results = ctx.value(0u32).unwrap();
    let barrier = ctx
        .barrier_with_action(N, append_true, Some(DEFAULT_TIMEOUT))
        .unwrap();
    run_threads(ctx, action_f::<C>, (barrier.clone(), results.clone()));
    assert_eq!(results.get().unwrap(), 2);
    assert!(!barrier.broken().unwrap());
    *ACTION_RESULTS.lock().unwrap() = None;
}
