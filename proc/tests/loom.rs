//! A model check of the wait/wake protocols under `Event`, `Semaphore` and
//! the queue ring: the real code, run by loom over every interleaving of its
//! threads (up to a preemption bound) and every value each load may read
//! under the C11 memory model. A lost wake-up is a thread asleep for ever:
//! loom reports it as a deadlock.
//!
//! `src/sys/atomics.rs` makes the shared words loom atomics and emulates the
//! futex and the queue's locks; everything above (`Event::wait`,
//! `Counter::take`, `Ring::put`/`get`/`join`, `announce`/`anyone_waiting`)
//! is the code that runs in production.
//!
//! Each protocol is checked twice more with its waiter-count handshake
//! weakened back to the code before commit 53316a7 (one side at a time):
//! the model must find that lost wake-up, or it could not have found the
//! one the benchmark did.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p mp-proc --test loom --release
//! ```
//! (`cargo xtask test` runs it, in its own target directory.)
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use mp_proc::{Event, Handshake, JoinableQueue, Semaphore, SimpleQueue, set_handshake};

/// Runs `f` under the model with the handshake as `handshake`, within
/// `LOOM_MAX_PREEMPTIONS` (3 unless set: all of these take seconds), and
/// prints how many executions it checked (`--nocapture` shows it).
fn check(handshake: Handshake, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(3));
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        set_handshake(handshake);
        f()
    });
    eprintln!(
        "{:?}: {} executions checked",
        handshake,
        executions.load(Ordering::Relaxed)
    );
}

// ---- Event: set wakes the waiter.

fn event_set_wakes_waiter() {
    let event = Event::new().unwrap();
    let setter = event.clone();
    let t = thread::spawn(move || setter.set());
    assert!(event.wait(None).unwrap());
    t.join().unwrap();
}

#[test]
fn event() {
    check(Handshake::Fenced, event_set_wakes_waiter);
}

#[test]
#[should_panic(expected = "deadlock")]
fn event_lost_wakeup_without_the_waiters_fence() {
    check(Handshake::WeakWaiter, event_set_wakes_waiter);
}

#[test]
#[should_panic(expected = "deadlock")]
fn event_lost_wakeup_without_the_wakers_fence() {
    check(Handshake::WeakWaker, event_set_wakes_waiter);
}

/// Two sleepers: one set wakes both (`futex_wake(_, i32::MAX)`).
#[test]
fn event_two_waiters() {
    check(Handshake::Fenced, || {
        let event = Event::new().unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let e = event.clone();
                thread::spawn(move || assert!(e.wait(None).unwrap()))
            })
            .collect();
        event.set();
        for t in waiters {
            t.join().unwrap();
        }
    });
}

/// The benchmark that hung: an `Event` ping-pong, two rounds.
fn event_ping_pong() {
    let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let t = thread::spawn(move || {
        for _ in 0..2 {
            assert!(ping2.wait(None).unwrap());
            ping2.clear();
            pong2.set();
        }
    });
    for _ in 0..2 {
        ping.set();
        assert!(pong.wait(None).unwrap());
        pong.clear();
    }
    t.join().unwrap();
}

#[test]
fn event_ping_pong_rounds() {
    check(Handshake::Fenced, event_ping_pong);
}

/// x86 keeps a store ahead of a later load: the waker's side is the one
/// that hung there.
#[test]
#[should_panic(expected = "deadlock")]
fn event_ping_pong_lost_wakeup_without_the_wakers_fence() {
    check(Handshake::WeakWaker, event_ping_pong);
}

// ---- Semaphore: a release wakes the acquirer.

fn semaphore_release_wakes_acquirer() {
    let sem = Semaphore::new(0).unwrap();
    let giver = sem.clone();
    let t = thread::spawn(move || giver.release().unwrap());
    sem.acquire().unwrap();
    assert_eq!(sem.value(), 0);
    t.join().unwrap();
}

#[test]
fn semaphore() {
    check(Handshake::Fenced, semaphore_release_wakes_acquirer);
}

#[test]
#[should_panic(expected = "deadlock")]
fn semaphore_lost_wakeup_without_the_waiters_fence() {
    check(Handshake::WeakWaiter, semaphore_release_wakes_acquirer);
}

#[test]
#[should_panic(expected = "deadlock")]
fn semaphore_lost_wakeup_without_the_wakers_fence() {
    check(Handshake::WeakWaker, semaphore_release_wakes_acquirer);
}

/// Two sleepers, two releases of one unit each: each release wakes one
/// sleeper (`futex_wake(_, 1)`), and neither may be left asleep.
#[test]
fn semaphore_two_acquirers() {
    check(Handshake::Fenced, || {
        let sem = Semaphore::new(0).unwrap();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let s = sem.clone();
                thread::spawn(move || s.acquire().unwrap())
            })
            .collect();
        sem.release().unwrap();
        sem.release().unwrap();
        for t in takers {
            t.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
    });
}

// ---- The queue ring: a put wakes the getter (consumers' handshake).

fn ring_put_wakes_getter() {
    let q = SimpleQueue::<u32>::with_capacity(0, 4096).unwrap();
    let producer = q.clone();
    let t = thread::spawn(move || producer.put(7).unwrap());
    assert_eq!(q.get().unwrap(), 7);
    t.join().unwrap();
}

#[test]
fn ring_get() {
    check(Handshake::Fenced, ring_put_wakes_getter);
}

#[test]
#[should_panic(expected = "deadlock")]
fn ring_get_lost_wakeup_without_the_waiters_fence() {
    check(Handshake::WeakWaiter, ring_put_wakes_getter);
}

#[test]
#[should_panic(expected = "deadlock")]
fn ring_get_lost_wakeup_without_the_wakers_fence() {
    check(Handshake::WeakWaker, ring_put_wakes_getter);
}

// ---- The ring full: a get wakes the putter (producers' handshake).

fn ring_get_wakes_putter() {
    let q = SimpleQueue::<u32>::with_capacity(1, 4096).unwrap();
    q.put(1).unwrap();
    let producer = q.clone();
    let t = thread::spawn(move || producer.put(2).unwrap());
    assert_eq!(q.get().unwrap(), 1);
    t.join().unwrap();
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn ring_put() {
    check(Handshake::Fenced, ring_get_wakes_putter);
}

#[test]
#[should_panic(expected = "deadlock")]
fn ring_put_lost_wakeup_without_the_waiters_fence() {
    check(Handshake::WeakWaiter, ring_get_wakes_putter);
}

#[test]
#[should_panic(expected = "deadlock")]
fn ring_put_lost_wakeup_without_the_wakers_fence() {
    check(Handshake::WeakWaker, ring_get_wakes_putter);
}

// ---- JoinableQueue: the last task_done wakes the joiner.

fn task_done_wakes_joiner() {
    let q = JoinableQueue::<u32>::with_capacity(0, 4096).unwrap();
    q.put(1).unwrap();
    let worker = q.clone();
    let t = thread::spawn(move || {
        assert_eq!(worker.get().unwrap(), 1);
        worker.task_done().unwrap();
    });
    q.join().unwrap();
    t.join().unwrap();
}

#[test]
fn ring_join() {
    check(Handshake::Fenced, task_done_wakes_joiner);
}

#[test]
#[should_panic(expected = "deadlock")]
fn ring_join_lost_wakeup_without_the_waiters_fence() {
    check(Handshake::WeakWaiter, task_done_wakes_joiner);
}

#[test]
#[should_panic(expected = "deadlock")]
fn ring_join_lost_wakeup_without_the_wakers_fence() {
    check(Handshake::WeakWaker, task_done_wakes_joiner);
}
