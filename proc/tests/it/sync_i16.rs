//! Issue 16's synchronisation bullets: CPython's `_TestBarrier.test_action`
//! (and what `threading.Barrier` does when the action raises), under fork,
//! spawn and forkserver.

use std::sync::Mutex;
use std::time::Duration;

use mp_proc::codec::{decode, encode};
use mp_proc::{Array, Barrier, Error, FnPointer, Process, StartMethod, Value};
use mp_testkit::guard;

mp_testkit::for_each_method!(test_action, an_action_that_panics_breaks_the_barrier);

/// CPython's `_TestBarrier.N`: the parties of a barrier test (the caller
/// and `N - 1` others).
const N: usize = 5;
/// A wait that a bug turns into an error instead of a hang
/// (`_TestBarrier.defaultTimeout`).
const LONG: Duration = Duration::from_secs(30);

/// What the action of this process appends to (`AppendTrue(results)`):
/// set by each party from its args before it waits (tests run one at a time).
static RESULTS: Mutex<Option<Value<u32>>> = Mutex::new(None);

fn append_true() {
    if let Some(results) = &*RESULTS.lock().unwrap() {
        *results.lock().unwrap() += 1;
    }
}

/// `_TestBarrier._test_action_f`, waiting twice: after each trip the action
/// ran exactly once more, before anyone went through.
fn action_party((barrier, results): (Barrier, Value<u32>)) {
    *RESULTS.lock().unwrap() = Some(results.clone());
    barrier.wait().unwrap();
    assert_eq!(
        results.get(),
        1,
        "the action ran once, before this party passed"
    );
    barrier.wait().unwrap();
    assert_eq!(results.get(), 2, "and once more at the second trip");
}

/// `_TestBarrier.test_action`: the action runs in exactly one party each
/// time the barrier trips.
fn test_action(method: StartMethod) {
    let _g = guard();
    let results = Value::new(0u32).unwrap();
    let barrier = Barrier::with_action(N, append_true, Some(LONG)).unwrap();
    let mut ps: Vec<Process> = (1..N)
        .map(|_| {
            Process::new(action_party, (barrier.clone(), results.clone())).start_method(method)
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    action_party((barrier.clone(), results.clone()));
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(results.get(), 2);
    assert!(!barrier.broken());
    *RESULTS.lock().unwrap() = None;
}

fn boom() {
    panic!("boom");
}

/// Counts one outcome of a `wait` in `tally`: [passed, broken, the action
/// panicked with "boom", anything else].
fn tally_wait((barrier, tally): (Barrier, Array<u32>)) {
    let slot = match barrier.wait() {
        Ok(_) => 0,
        Err(Error::BrokenBarrier) => 1,
        Err(Error::ActionPanicked {
            what: "Barrier",
            message,
        }) if message == "boom" => 2,
        Err(_) => 3,
    };
    tally.lock().unwrap()[slot] += 1;
}

/// As `threading.Barrier` when its action raises: the party that ran it
/// gets the action's error, every other party `BrokenBarrierError`, and the
/// barrier stays broken.
fn an_action_that_panics_breaks_the_barrier(method: StartMethod) {
    let _g = guard();
    let tally = Array::<u32>::new(4).unwrap();
    let barrier = Barrier::with_action(3, boom, Some(LONG)).unwrap();
    let mut ps: Vec<Process> = (1..3)
        .map(|_| Process::new(tally_wait, (barrier.clone(), tally.clone())).start_method(method))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    tally_wait((barrier.clone(), tally.clone()));
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(tally.to_vec(), [0, 2, 1, 0]);
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}

fn other_action() {}

/// A barrier's bytes (here a ticket: they went neither into a child's args
/// nor with a socket's message) with the action of another barrier, or an
/// action added, do not decode: the descriptor's tag covers the action.
#[test]
fn a_barrier_does_not_decode_with_another_action() {
    let _g = guard();
    let a = Barrier::with_action(2, append_true, None).unwrap();
    let plain = Barrier::new(2, None).unwrap();
    let mine = encode(&Some(FnPointer::new(append_true as fn()))).unwrap();
    let theirs = encode(&Some(FnPointer::new(other_action as fn()))).unwrap();

    // Each ticket is redeemed in the end by its unedited bytes (or the
    // sharer would hold its descriptor until it expires).
    let bytes = encode(&a).unwrap();
    assert!(bytes.ends_with(&mine));
    let mut swapped = bytes[..bytes.len() - mine.len()].to_vec();
    swapped.extend_from_slice(&theirs);
    assert!(matches!(decode::<Barrier>(&swapped), Err(Error::Decode(_))));
    let back: Barrier = decode(&bytes).unwrap();
    assert_eq!(back.parties(), 2, "the bytes as made decode");

    let bytes = encode(&plain).unwrap();
    assert_eq!(bytes.last(), Some(&0), "no action: `None`");
    let mut added = bytes[..bytes.len() - 1].to_vec();
    added.extend_from_slice(&theirs);
    assert!(matches!(decode::<Barrier>(&added), Err(Error::Decode(_))));
    decode::<Barrier>(&bytes).unwrap();
}
