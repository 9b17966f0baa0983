//! The primitives across threads: exclusion, wake-ups, deadlines,
//! cancellation, owners released, the barrier's generations.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// A bug shows as a failure, not a hang.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Yields until `ready()`; fails past [`HANG_GUARD`].
fn until(ready: impl Fn() -> bool) {
    let end = crate::spin::deadline_after(HANG_GUARD).expect("a near deadline");
    while !ready() {
        assert!(Instant::now() < end, "never became ready");
        thread::yield_now();
    }
}

/// A cancel interval no test waits out.
const HOUR: Duration = Duration::from_secs(3600);

/// Runs `op` on another thread with a wait that has no deadline and
/// checks its cancel flag only every hour; runs `then` here; then sets the
/// flag and calls `wake` until `op` returns (so only a wake-up can have
/// ended it), and returns what `op` returned.
fn cancelled<R: Send>(
    op: impl FnOnce(&Wait<'_>) -> R + Send,
    then: impl FnOnce(),
    wake: impl Fn(),
) -> R {
    let flag = AtomicBool::new(false);
    let (tx, done) = mpsc::channel();
    thread::scope(|s| {
        let flag = &flag;
        s.spawn(move || {
            let gone = || flag.load(Ordering::SeqCst);
            tx.send(op(&Wait::forever().or_cancel(&gone, HOUR)))
                .unwrap();
        });
        then();
        flag.store(true, Ordering::SeqCst);
        let end = crate::spin::deadline_after(HANG_GUARD).expect("a near deadline");
        loop {
            wake();
            match done.recv_timeout(Duration::from_millis(5)) {
                Ok(r) => return r,
                Err(_) => assert!(Instant::now() < end, "the waiter was never cancelled"),
            }
        }
    })
}

fn nothing() {}

#[test]
fn lock_excludes_across_threads() {
    let lock = Lock::new(false);
    let count = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..4u32 {
            let (lock, count) = (&lock, &count);
            s.spawn(move || {
                for _ in 0..1000 {
                    lock.acquire(t, &Wait::forever()).unwrap();
                    // Not atomic as a whole: only the lock keeps updates.
                    let v = count.load(Ordering::Relaxed);
                    count.store(v + 1, Ordering::Relaxed);
                    lock.release(t).unwrap();
                }
            });
        }
    });
    assert_eq!(count.into_inner(), 4000);
    assert!(!lock.is_locked());
}

#[test]
fn plain_lock_rules() {
    let lock = Lock::new(false);
    assert_eq!(lock.release(1), Err(Refused::NotHeld));
    assert_eq!(lock.release_any(), Err(Refused::NotHeld));
    lock.acquire(1, &Wait::forever()).unwrap();
    assert_eq!(
        lock.acquire(1, &Wait::forever()),
        Err(Refused::WouldDeadlock)
    );
    // With a deadline, its owner waits (for a release by anyone) and times out.
    assert_eq!(lock.acquire(1, &Wait::now()), Err(Refused::Timeout));
    assert_eq!(lock.acquire(2, &Wait::now()), Err(Refused::Timeout));
    assert_eq!(lock.release(2), Err(Refused::NotHeld));
    assert!(lock.is_held_by(1));
    lock.release_any().unwrap();
    assert_eq!(lock.owner(), None);
    lock.acquire(2, &Wait::timeout(Duration::MAX)).unwrap();
    assert_eq!(lock.owner(), Some(2));
}

#[test]
fn reentrant_lock_counts_levels() {
    let r = Lock::new(true);
    for _ in 0..3 {
        r.acquire('a', &Wait::now()).unwrap();
    }
    assert_eq!(r.acquire('b', &Wait::now()), Err(Refused::Timeout));
    r.release('a').unwrap();
    assert_eq!(r.release('b'), Err(Refused::NotHeld));
    assert_eq!(r.release_all('a'), Ok(2));
    assert_eq!(r.release_all('a'), Err(Refused::NotHeld));
    r.reacquire('b', 2, &Wait::now()).unwrap();
    r.release('b').unwrap();
    assert!(r.is_held_by('b'));
    r.release('b').unwrap();
    assert!(!r.is_locked());
}

#[test]
fn a_waiter_gets_the_lock_on_release() {
    let lock = Lock::new(false);
    lock.acquire(1, &Wait::forever()).unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| lock.acquire(2, &Wait::forever()));
        lock.release(1).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
    });
    assert_eq!(lock.owner(), Some(2));
}

#[test]
fn a_dead_owner_is_released_and_its_waiter_proceeds() {
    // Owners are (session, thread), as the manager's server has them.
    let lock = Lock::new(true);
    lock.acquire((7u64, 1u64), &Wait::forever()).unwrap();
    lock.acquire((7, 1), &Wait::forever()).unwrap();
    assert_eq!(lock.release_if(|(session, _)| *session == 8), None);
    thread::scope(|s| {
        let waiter = s.spawn(|| lock.acquire((8, 1), &Wait::forever()));
        assert_eq!(lock.release_if(|(session, _)| *session == 7), Some(2));
        assert_eq!(waiter.join().unwrap(), Ok(()));
    });
    assert_eq!(lock.owner(), Some((8, 1)));
}

#[test]
fn a_cancelled_lock_wait_takes_nothing() {
    let lock = Lock::new(false);
    lock.acquire(1, &Wait::forever()).unwrap();
    let r = cancelled(|w| lock.acquire(2, w), nothing, || lock.wake());
    assert_eq!(r, Err(Refused::Cancelled));
    assert_eq!(lock.owner(), Some(1));
}

#[test]
fn the_cancel_check_is_polled() {
    let lock = Lock::new(false);
    lock.acquire(1, &Wait::forever()).unwrap();
    let checks = AtomicUsize::new(0);
    // Says "gone" on its third check: polled, with no wake-up.
    let gone = || checks.fetch_add(1, Ordering::SeqCst) >= 2;
    let wait = Wait::forever().or_cancel(&gone, Duration::ZERO);
    assert_eq!(lock.acquire(2, &wait), Err(Refused::Cancelled));
    assert_eq!(checks.into_inner(), 3);
}

#[test]
fn a_ready_operation_does_not_check_cancel() {
    let s = Semaphore::new(1, false);
    let gone = || panic!("checked");
    s.acquire(&Wait::forever().or_cancel(&gone, HOUR)).unwrap();
}

#[test]
fn semaphore_counts_and_bounds() {
    let s = Semaphore::new(2, true);
    assert_eq!(s.bound(), Some(2));
    s.acquire(&Wait::now()).unwrap();
    s.acquire(&Wait::now()).unwrap();
    assert_eq!(s.acquire(&Wait::now()), Err(Refused::Timeout));
    assert_eq!(s.value(), 0);
    thread::scope(|sc| {
        let waiter = sc.spawn(|| s.acquire(&Wait::forever()));
        s.release().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
    });
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.release(), Err(Refused::TooManyReleases { bound: 2 }));
    let unbounded = Semaphore::new(usize::MAX, false);
    assert_eq!(unbounded.release(), Err(Refused::Overflow));
    unbounded.give_back();
    assert_eq!(unbounded.value(), usize::MAX);
}

#[test]
fn a_cancelled_semaphore_wait_takes_nothing() {
    let s = Semaphore::new(0, false);
    let r = cancelled(|w| s.acquire(w), nothing, || s.wake());
    assert_eq!(r, Err(Refused::Cancelled));
    s.give_back();
    assert_eq!(s.value(), 1);
}

#[test]
fn condition_wait_and_notify_across_threads() {
    let c = Condition::new(Arc::new(Lock::new(true)));
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            c.lock().acquire(1, &Wait::forever()).unwrap();
            c.lock().acquire(1, &Wait::forever()).unwrap();
            let notified = c.wait(1, &Wait::forever());
            // Held again, at its depth.
            (notified, c.lock().release_all(1))
        });
        until(|| c.n_waiting() == 1);
        c.lock().acquire(2, &Wait::forever()).unwrap();
        c.notify(1);
        assert_eq!(c.n_waiting(), 0);
        c.lock().release(2).unwrap();
        assert_eq!(waiter.join().unwrap(), (Ok(true), Ok(2)));
    });
}

#[test]
fn condition_notifies_the_oldest_first() {
    let c = Condition::new(Arc::new(Lock::new(false)));
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        for who in 1..=2 {
            let (c, tx) = (&c, tx.clone());
            c.lock().acquire(0, &Wait::forever()).unwrap();
            s.spawn(move || {
                c.lock().acquire(who, &Wait::forever()).unwrap();
                c.wait(who, &Wait::forever()).unwrap();
                c.lock().release(who).unwrap();
                tx.send(who).unwrap();
            });
            c.lock().release(0).unwrap();
            until(|| c.n_waiting() == who);
        }
        c.notify(1);
        assert_eq!(rx.recv().unwrap(), 1);
        c.notify_all();
        assert_eq!(rx.recv().unwrap(), 2);
    });
}

#[test]
fn condition_wait_rules() {
    let c = Condition::new(Arc::new(Lock::new(false)));
    assert_eq!(c.wait(1, &Wait::now()), Err(Refused::NotHeld));
    assert_eq!(c.n_waiting(), 0);
    c.lock().acquire(1, &Wait::forever()).unwrap();
    // Timed out: not notified, the lock held again.
    assert_eq!(c.wait(1, &Wait::now()), Ok(false));
    assert!(c.lock().is_held_by(1));
    assert_eq!(c.n_waiting(), 0);
    // Notified before it waits: nobody to wake.
    c.notify(1);
    assert_eq!(c.wait(1, &Wait::now()), Ok(false));
}

#[test]
fn a_cancelled_condition_wait_leaves_the_lock_free() {
    let c = Condition::new(Arc::new(Lock::new(true)));
    let wait = |w: &Wait<'_>| {
        c.lock().acquire(1, &Wait::forever()).unwrap();
        c.wait(1, w)
    };
    let r = cancelled(wait, || until(|| c.n_waiting() == 1), || c.wake());
    assert_eq!(r, Err(Refused::Cancelled));
    assert_eq!(c.n_waiting(), 0);
    assert!(!c.lock().is_locked());
}

#[test]
fn a_cancelled_condition_retake_leaves_the_lock_to_its_holder() {
    let c = Condition::new(Arc::new(Lock::new(false)));
    let wait = |w: &Wait<'_>| {
        c.lock().acquire(1, &Wait::forever()).unwrap();
        c.wait(1, w)
    };
    // Notified, but the lock is held: it waits for the lock, and is
    // cancelled there.
    let notify_holding = || {
        until(|| c.n_waiting() == 1);
        c.lock().acquire(2, &Wait::forever()).unwrap();
        c.notify(1);
    };
    let r = cancelled(wait, notify_holding, || c.wake());
    assert_eq!(r, Err(Refused::Cancelled));
    assert_eq!(c.lock().owner(), Some(2));
}

#[test]
fn event_wakes_its_waiters() {
    let e = Event::new();
    assert_eq!(e.wait(&Wait::now()), Err(Refused::Timeout));
    thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| s.spawn(|| e.wait(&Wait::forever())))
            .collect();
        e.set();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Ok(()));
        }
    });
    assert!(e.is_set());
    e.clear();
    assert!(!e.is_set());
    let r = cancelled(|w| e.wait(w), nothing, || e.wake());
    assert_eq!(r, Err(Refused::Cancelled));
}

#[test]
fn barrier_lets_its_parties_through_each_generation() {
    let b = Barrier::new(3).unwrap();
    assert_eq!(b.parties(), 3);
    for _ in 0..3 {
        let mut indices: Vec<usize> = thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| s.spawn(|| b.wait(&Wait::forever())))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        indices.sort();
        assert_eq!(indices, [0, 1, 2]);
        assert_eq!(b.n_waiting(), 0);
    }
    assert!(matches!(Barrier::new(0), Err(Refused::NoParties)));
}

#[test]
fn barrier_abort_breaks_waiters_until_reset() {
    let b = Barrier::new(3).unwrap();
    thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| b.wait(&Wait::forever())))
            .collect();
        until(|| b.n_waiting() == 2);
        b.abort();
        for h in hs {
            assert_eq!(h.join().unwrap(), Err(Refused::BrokenBarrier));
        }
    });
    assert!(b.broken());
    assert_eq!(b.n_waiting(), 0);
    assert_eq!(b.wait(&Wait::forever()), Err(Refused::BrokenBarrier));
    b.reset();
    assert!(!b.broken());
    let one = Barrier::new(1).unwrap();
    assert_eq!(one.wait(&Wait::now()), Ok(0));
}

#[test]
fn barrier_reset_fails_current_waiters_and_is_whole() {
    let b = Barrier::new(2).unwrap();
    thread::scope(|s| {
        let h = s.spawn(|| b.wait(&Wait::forever()));
        until(|| b.n_waiting() == 1);
        b.reset();
        assert_eq!(h.join().unwrap(), Err(Refused::BrokenBarrier));
    });
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
    let indices = thread::scope(|s| {
        let h = s.spawn(|| b.wait(&Wait::forever()));
        b.wait(&Wait::forever()).unwrap() + h.join().unwrap().unwrap()
    });
    assert_eq!(indices, 1);
}

#[test]
fn a_barrier_action_runs_once_in_the_last_party_and_a_failed_one_breaks_it() {
    let b = Barrier::new(2).unwrap();
    let ran = std::sync::atomic::AtomicUsize::new(0);
    let action = || {
        ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        true
    };
    let r = thread::scope(|s| {
        let h = s.spawn(|| b.wait_then(&Wait::forever(), action));
        until(|| b.n_waiting() == 1);
        let mine = b.wait_then(&Wait::forever(), action);
        (mine, h.join().unwrap())
    });
    assert_eq!(r, (Ok(1), Ok(0)));
    assert_eq!(ran.into_inner(), 1, "only the last party ran it");

    for panics in [false, true] {
        b.reset();
        thread::scope(|s| {
            let h = s.spawn(|| b.wait(&Wait::forever()));
            until(|| b.n_waiting() == 1);
            let mine = std::panic::catch_unwind(|| {
                b.wait_then(&Wait::forever(), || {
                    assert!(!panics, "the action panics");
                    false
                })
            });
            match mine {
                Ok(r) => assert!(!panics && r == Err(Refused::BrokenBarrier)),
                Err(_) => assert!(panics, "the panic went on to the caller"),
            }
            assert_eq!(h.join().unwrap(), Err(Refused::BrokenBarrier));
        });
        assert!(b.broken());
        assert_eq!(b.n_waiting(), 0);
    }
}

#[test]
fn a_barrier_reset_by_its_action_fails_the_round_and_is_whole() {
    let b = Barrier::new(2).unwrap();
    thread::scope(|s| {
        let h = s.spawn(|| b.wait(&Wait::forever()));
        until(|| b.n_waiting() == 1);
        let mine = b.wait_then(&Wait::forever(), || {
            b.reset();
            true
        });
        assert_eq!(mine, Err(Refused::BrokenBarrier));
        assert_eq!(h.join().unwrap(), Err(Refused::BrokenBarrier));
    });
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
    let indices = thread::scope(|s| {
        let h = s.spawn(|| b.wait(&Wait::forever()));
        b.wait(&Wait::forever()).unwrap() + h.join().unwrap().unwrap()
    });
    assert_eq!(indices, 1);
}

#[test]
fn a_barrier_waiter_that_times_out_or_is_cancelled_breaks_it() {
    let b = Barrier::new(3).unwrap();
    thread::scope(|s| {
        let other = s.spawn(|| b.wait(&Wait::forever()));
        until(|| b.n_waiting() == 1);
        assert_eq!(b.wait(&Wait::now()), Err(Refused::BrokenBarrier));
        assert_eq!(other.join().unwrap(), Err(Refused::BrokenBarrier));
    });
    assert!(b.broken());
    assert_eq!(b.n_waiting(), 0);
    b.reset();
    let r = cancelled(|w| b.wait(w), || until(|| b.n_waiting() == 1), || b.wake());
    assert_eq!(r, Err(Refused::Cancelled));
    assert!(b.broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn queue_is_fifo_and_bounded() {
    let q = Queue::new(2);
    q.put(1, &Wait::now()).unwrap();
    q.put(2, &Wait::now()).unwrap();
    assert!(q.is_full());
    assert_eq!(q.put(3, &Wait::now()), Err(Refused::Full));
    assert_eq!(q.qsize(), 2);
    thread::scope(|s| {
        let putter = s.spawn(|| q.put(3, &Wait::forever()));
        assert_eq!(q.get(&Wait::forever()), Ok(1));
        assert_eq!(putter.join().unwrap(), Ok(()));
    });
    assert_eq!(q.get(&Wait::now()), Ok(2));
    assert_eq!(q.get(&Wait::now()), Ok(3));
    assert_eq!(q.get(&Wait::now()), Err(Refused::Empty));
    assert!(q.is_empty());
    assert_eq!(q.maxsize(), 2);
}

#[test]
fn queue_hands_items_between_threads() {
    let q = Queue::new(0);
    thread::scope(|s| {
        let getter = s.spawn(|| {
            (0..100)
                .map(|_| q.get(&Wait::forever()).unwrap())
                .sum::<u32>()
        });
        for i in 0..100 {
            q.put(i, &Wait::forever()).unwrap();
        }
        assert_eq!(getter.join().unwrap(), (0..100u32).sum::<u32>());
    });
}

#[test]
fn a_closed_queue_drains_then_refuses() {
    let q = Queue::new(0);
    q.put("a", &Wait::forever()).unwrap();
    q.close();
    assert!(q.is_closed());
    assert_eq!(q.put("b", &Wait::forever()), Err(Refused::Closed));
    assert_eq!(q.get(&Wait::forever()), Ok("a"));
    assert_eq!(q.get(&Wait::forever()), Err(Refused::Closed));
    let q = Queue::<u8>::new(0);
    thread::scope(|s| {
        let getter = s.spawn(|| q.get(&Wait::forever()));
        q.close();
        assert_eq!(getter.join().unwrap(), Err(Refused::Closed));
    });
}

#[test]
fn queue_join_waits_for_every_task_done() {
    let q = Queue::new(0);
    assert_eq!(q.task_done(), Err(Refused::TaskDoneTooManyTimes));
    q.join(&Wait::now()).unwrap();
    q.put(1, &Wait::forever()).unwrap();
    q.put(2, &Wait::forever()).unwrap();
    assert_eq!(q.join(&Wait::now()), Err(Refused::Timeout));
    thread::scope(|s| {
        let joiner = s.spawn(|| q.join(&Wait::forever()));
        for _ in 0..2 {
            q.get(&Wait::forever()).unwrap();
            q.task_done().unwrap();
        }
        assert_eq!(joiner.join().unwrap(), Ok(()));
    });
    assert_eq!(q.task_done(), Err(Refused::TaskDoneTooManyTimes));
}

#[test]
fn an_item_put_back_is_first_and_still_pending() {
    let q = Queue::new(0);
    q.put(1, &Wait::forever()).unwrap();
    q.put(2, &Wait::forever()).unwrap();
    let taken = q.get(&Wait::forever()).unwrap();
    q.put_back(taken);
    assert_eq!(q.get(&Wait::now()), Ok(1));
    q.task_done().unwrap();
    assert_eq!(q.join(&Wait::now()), Err(Refused::Timeout));
}

#[test]
fn a_cancelled_queue_wait_takes_and_adds_nothing() {
    let q = Queue::new(1);
    let r = cancelled(|w| q.get(w), nothing, || q.wake());
    assert_eq!(r, Err(Refused::Cancelled));
    q.put(1, &Wait::now()).unwrap();
    let r = cancelled(|w| q.put(2, w), nothing, || q.wake());
    assert_eq!(r, Err(Refused::Cancelled));
    assert_eq!(q.qsize(), 1);
    q.get(&Wait::now()).unwrap();
    q.task_done().unwrap();
    q.join(&Wait::now()).unwrap();
}

#[test]
fn refusals_map_to_the_crates_errors() {
    use crate::Error;
    assert!(matches!(
        Refused::NotHeld.into_error("RLock"),
        Error::NotHeld { what: "RLock" }
    ));
    assert!(matches!(
        Refused::TooManyReleases { bound: 3 }.into_error("BoundedSemaphore"),
        Error::TooManyReleases { bound: 3 }
    ));
    assert!(matches!(
        Refused::Cancelled.into_error("Lock"),
        Error::Invalid { .. }
    ));
    assert!(matches!(
        Refused::Overflow.into_error("RLock"),
        Error::Overflow { .. }
    ));
    assert!(matches!(Refused::Empty.into_error("Queue"), Error::Empty));
}

/// A waiter of a generation that was reset fails, even when it wakes only
/// after a second reset (of the next generation, which others joined):
/// CPython's barrier fails every waiter of a reset generation. The
/// barrier kept only the last reset generation, so a slow waiter of the
/// first took the second's reset for a pass. A race: the test repeats it,
/// with spinning threads that keep the first waiter from running at once.
#[test]
fn a_waiter_of_a_reset_generation_fails_after_a_later_reset_too() {
    let stop = AtomicBool::new(false);
    let passed = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        for _ in 0..300 {
            let b = Barrier::new(3).unwrap();
            thread::scope(|s| {
                let a = s.spawn(|| b.wait(&Wait::forever()));
                until(|| b.n_waiting() == 1);
                b.reset(); // a's generation
                let c = s.spawn(|| b.wait(&Wait::forever()));
                until(|| b.n_waiting() == 1);
                b.reset(); // c's generation
                if a.join().unwrap().is_ok() {
                    passed.fetch_add(1, Ordering::Relaxed);
                }
                assert_eq!(c.join().unwrap(), Err(Refused::BrokenBarrier));
            });
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        passed.load(Ordering::Relaxed),
        0,
        "waiters of a reset generation passed"
    );
}

/// A waiter notified and then cancelled while it waits for the lock (a
/// client that hung up) does not keep the notification: the next waiter
/// gets it, so a `notify(1)` is not lost for the others.
#[test]
fn a_notification_taken_by_a_cancelled_waiter_goes_to_the_next() {
    let c = Condition::new(Arc::new(Lock::new(true)));
    let gone = AtomicBool::new(false);
    thread::scope(|s| {
        let first = s.spawn(|| {
            c.lock().acquire(1, &Wait::forever()).unwrap();
            let check = || gone.load(Ordering::SeqCst);
            c.wait(1, &Wait::forever().or_cancel(&check, HOUR))
        });
        until(|| c.n_waiting() == 1);
        let second = s.spawn(|| {
            c.lock().acquire(2, &Wait::forever()).unwrap();
            let r = c.wait(2, &Wait::timeout(HANG_GUARD));
            c.lock().release_all(2).unwrap();
            r
        });
        until(|| c.n_waiting() == 2);
        c.lock().acquire(0, &Wait::forever()).unwrap();
        gone.store(true, Ordering::SeqCst);
        c.notify(1); // the first, the oldest
        until(|| {
            c.wake(); // the first polls its cancel check, waiting for the lock
            first.is_finished()
        });
        assert_eq!(first.join().unwrap(), Err(Refused::Cancelled));
        c.lock().release(0).unwrap();
        assert_eq!(
            second.join().unwrap(),
            Ok(true),
            "the notification was lost"
        );
    });
}
