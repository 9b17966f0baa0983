//! The manager's barrier with an action (`SyncManager::barrier_with_action`,
//! Python's `Manager().Barrier(parties, action, timeout)`): CPython's
//! `_TestBarrier.test_action` for managers, a panicking action, and a client
//! of another process tree, under fork, spawn and forkserver.
//!
//! The action runs in the server and is a plain `fn()`: it counts the trips
//! in a shared memory block named after the server's parent, this test's
//! process, where the parties read them.

use std::process::{Command, Stdio};
use std::time::Duration;

use mp_manager::{BarrierProxy, Error, SyncManager};
use mp_proc::{Array, Process, SharedMemory, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    test_action,
    an_action_that_panics_breaks_the_barrier,
    a_client_of_another_process_tree_is_refused_and_the_server_goes_on,
);

/// CPython's `_TestBarrier.N`: the parties (this test and `N - 1` children).
const N: usize = 5;
/// A bound that turns a bug into an error instead of a hang
/// (`_TestBarrier.defaultTimeout`).
const LONG: Duration = Duration::from_secs(30);

/// The block where the action of the server started by process `pid`
/// counts the trips.
fn trips_block(pid: u32) -> String {
    format!("mp-it-manager-barrier-trips-{pid}")
}

fn trips(block: &SharedMemory) -> u32 {
    let mut n = [0; 4];
    block.read_at(0, &mut n).unwrap();
    u32::from_le_bytes(n)
}

/// The action (CPython's `AppendTrue(results)`), in the server: one more
/// trip in the block of the process that started the server.
fn count_trip() {
    let test = mp_proc::parent_process().expect("the server has a parent");
    let block = SharedMemory::attach(&trips_block(test.pid())).unwrap();
    let n = trips(&block) + 1;
    block.write_at(0, &n.to_le_bytes()).unwrap();
}

/// `_TestBarrier._test_action_f`, waiting twice: after each trip the action
/// ran exactly once more, before any party went through.
fn action_f((barrier, block): (BarrierProxy, String)) {
    let block = SharedMemory::attach(&block).unwrap();
    barrier.wait().unwrap();
    assert_eq!(trips(&block), 1, "the action ran once, before this party");
    barrier.wait().unwrap();
    assert_eq!(trips(&block), 2, "and once more at the second trip");
}

/// CPython: `_TestBarrier.test_action` (for managers), with a second trip.
fn test_action(method: StartMethod) {
    let _g = guard();
    let block = SharedMemory::create(Some(&trips_block(std::process::id())), 4).unwrap();
    let m = SyncManager::start_with(method).unwrap();
    let barrier = m.barrier_with_action(N, count_trip, Some(LONG)).unwrap();
    let args = (barrier.clone(), block.name().to_owned());
    let mut ps: Vec<Process> = (1..N)
        .map(|_| Process::new(action_f, args.clone()).start_method(method))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    action_f(args);
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(trips(&block), 2);
    assert!(!barrier.broken().unwrap());
    drop(barrier);
    m.shutdown().unwrap();
    block.unlink().unwrap();
}

fn boom() {
    panic!("boom");
}

/// Counts one outcome of a `wait` in `tally`: [passed, broken, the action
/// panicked with "boom", anything else].
fn tally_wait((barrier, tally): (BarrierProxy, Array<u32>)) {
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

/// As `threading.Barrier` when its action raises (and mp-proc's barrier):
/// the party whose arrival ran it gets the action's error, every other
/// party `BrokenBarrier`, and the barrier stays broken until reset.
fn an_action_that_panics_breaks_the_barrier(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let tally = Array::<u32>::new(4).unwrap();
    let barrier = m.barrier_with_action(3, boom, Some(LONG)).unwrap();
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
    assert!(barrier.broken().unwrap());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken().unwrap());
    drop(barrier);
    m.shutdown().unwrap();
}

/// The env var that makes a re-run of this binary the foreign client: the
/// manager's address and its key, in hex, as `address key`.
const CLIENT: &str = "MP_TEST_FOREIGN_BARRIER_CLIENT";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn nothing() {}

/// Not a test of its own: the foreign client, in a re-run with [`CLIENT`] set.
#[test]
fn foreign_client() {
    let Ok(given) = std::env::var(CLIENT) else {
        return;
    };
    let (address, key) = given.split_once(' ').expect("address and key");
    let m = SyncManager::connect(&address.parse().unwrap(), &unhex(key)).unwrap();
    match m.barrier_with_action(1, nothing, None) {
        Err(Error::Remote { message }) => println!("refused: {message}"),
        other => println!("accepted: {:?}", other.map(|b| b.parties())),
    }
}

/// A client that knows the manager's key but is another run of the program
/// (its references are signed under another key) cannot make the server run
/// its function: a clear error, and the server goes on.
fn a_client_of_another_process_tree_is_refused_and_the_server_goes_on(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let key = hex(mp_proc::current_process().authkey());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "barrier_action::foreign_client",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT, format!("{} {key}", m.address()))
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = stdout
        .lines()
        .find_map(|l| l.split_once("refused: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("not refused: {stdout}"));
    assert!(refused.contains("action is refused"), "{refused}");
    assert!(refused.contains("process tree"), "{refused}");
    // The server goes on for this tree's clients, and holds nothing of it.
    assert_eq!(m.number_of_objects().unwrap(), 0);
    let b = m.barrier_with_action(1, nothing, None).unwrap();
    assert_eq!(b.wait().unwrap(), 0);
    drop(b);
    m.shutdown().unwrap();
}
