//! Issue 16's synchronisation bullets on threads: CPython's
//! `_TestBarrier.test_action` (and what `threading.Barrier` does when the
//! action raises).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_dummy::{Barrier, Error, Value};
use mp_testkit::guard;

/// CPython's `_TestBarrier.N`.
const N: usize = 5;
/// A wait that a bug turns into an error instead of a hang.
const LONG: Duration = Duration::from_secs(30);

/// `_TestBarrier.test_action` (`_test_action_f` waiting twice): the action
/// runs in exactly one thread each time the barrier trips, before any
/// thread goes through.
#[test]
fn test_action() {
    let _g = guard();
    let results = Value::new(0u32).unwrap();
    let appended = results.clone();
    let barrier = Barrier::with_action(
        N,
        move || {
            *appended.lock().unwrap() += 1;
        },
        Some(LONG),
    )
    .unwrap();
    let party = || {
        barrier.wait().unwrap();
        assert_eq!(
            results.get(),
            1,
            "the action ran once, before this party passed"
        );
        barrier.wait().unwrap();
        assert_eq!(results.get(), 2, "and once more at the second trip");
    };
    std::thread::scope(|s| {
        for _ in 1..N {
            s.spawn(party);
        }
        party();
    });
    assert_eq!(results.get(), 2);
    assert!(!barrier.broken());
}

fn boom() {
    panic!("boom");
}

/// As `threading.Barrier` when its action raises: the thread that ran it
/// gets the action's error, every other `BrokenBarrierError`, and the
/// barrier stays broken; `fn()` as mp-proc's takes.
#[test]
fn an_action_that_panics_breaks_the_barrier() {
    let _g = guard();
    let barrier = Barrier::with_action(3, boom as fn(), Some(LONG)).unwrap();
    let tally: [AtomicUsize; 4] = Default::default();
    let party = || {
        let slot = match barrier.wait() {
            Ok(_) => 0,
            Err(Error::BrokenBarrier) => 1,
            Err(Error::ActionPanicked {
                what: "Barrier",
                message,
            }) if message == "boom" => 2,
            Err(_) => 3,
        };
        tally[slot].fetch_add(1, Ordering::SeqCst);
    };
    std::thread::scope(|s| {
        for _ in 1..3 {
            s.spawn(party);
        }
        party();
    });
    let tally = tally.map(|t| t.into_inner());
    assert_eq!(tally, [0, 2, 1, 0]);
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}
