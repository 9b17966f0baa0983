//! `SharedMemory`: names, sizes, children, and nothing left in /dev/shm
//! however its creator ends.

use std::time::{Duration, Instant};

use mp_proc::{Connection, Error, Process, SharedMemory, StartMethod, pipe};

use mp_testkit::guard;

mp_testkit::for_each_method!(
    a_block_passed_to_a_child_is_the_same_memory,
    nothing_is_left_after_a_normal_exit,
    nothing_is_left_after_a_panic,
    nothing_is_left_after_sigkill,
    an_untracked_block_outlives_its_creator,
);

fn write_hello(block: SharedMemory) {
    block.write_at(0, b"hello").unwrap();
}

fn a_block_passed_to_a_child_is_the_same_memory(method: StartMethod) {
    let _g = guard();
    let block = SharedMemory::create(None, 4096).unwrap();
    let mut p = Process::new(write_hello, block.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let mut five = [0; 5];
    block.read_at(0, &mut five).unwrap();
    assert_eq!(&five, b"hello");
    block.unlink().unwrap();
}

/// Creates a named block, reports its name, then ends as `how` says.
fn create_and_end((report, how): (Connection, String)) {
    let block = SharedMemory::create(None, 1024).unwrap();
    report.send(&block.name().to_string()).unwrap();
    let _ = report.recv_bytes(); // until the parent has seen the block (or kills us)
    match how.as_str() {
        "return" => {}
        "panic" => panic!("dying with a block of shared memory"),
        _ => unreachable!("killed while waiting"),
    }
}

/// Waits (bounded only against a hang) until the tracker has unlinked `name`.
fn wait_until_unlinked(name: &str) {
    let path = format!("/dev/shm/{name}");
    let start = Instant::now();
    while std::path::Path::new(&path).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{path} was never unlinked"
        );
        std::thread::yield_now();
    }
}

fn ends(method: StartMethod, how: &str) -> (Process, String, Connection) {
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(create_and_end, (there, how.to_string())).start_method(method);
    p.start().unwrap();
    let name: String = here.recv().unwrap();
    assert!(std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    if how != "kill" {
        here.send_bytes(b"go").unwrap();
    }
    (p, name, here)
}

fn nothing_is_left_after_a_normal_exit(method: StartMethod) {
    let _g = guard();
    let (mut p, name, _here) = ends(method, "return");
    assert_eq!(p.join().unwrap(), 0);
    wait_until_unlinked(&name);
}

fn nothing_is_left_after_a_panic(method: StartMethod) {
    let _g = guard();
    let (mut p, name, _here) = ends(method, "panic");
    assert_eq!(p.join().unwrap(), 1);
    wait_until_unlinked(&name);
}

fn nothing_is_left_after_sigkill(method: StartMethod) {
    let _g = guard();
    let (mut p, name, _here) = ends(method, "kill");
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGKILL);
    wait_until_unlinked(&name);
}

/// Creates the untracked block (`track(false)`, Python 3.13) and the tracked
/// one that `names` give, and returns without unlinking either.
fn create_both((report, untracked, tracked): (Connection, String, String)) {
    let kept = SharedMemory::options()
        .track(false)
        .create(Some(&untracked), 64)
        .unwrap();
    kept.write_at(0, b"kept").unwrap();
    let _tracked = SharedMemory::create(Some(&tracked), 64).unwrap();
    report.send(&()).unwrap();
}

/// CPython's `track=False` (3.13): the tracker unlinks the creator's tracked
/// block once the creator has ended, and leaves the untracked one, which
/// still holds what was written. (The tracker unlinks in name order and the
/// untracked name sorts first: were it tracked, it would be gone too by the
/// time the tracked one is.)
fn an_untracked_block_outlives_its_creator(method: StartMethod) {
    let _g = guard();
    let tag = format!("{}_{method}", std::process::id());
    let (untracked, tracked) = (format!("mp_test_a_{tag}"), format!("mp_test_b_{tag}"));
    let (here, there) = pipe(true).unwrap();
    let mut p =
        Process::new(create_both, (there, untracked.clone(), tracked.clone())).start_method(method);
    p.start().unwrap();
    here.recv::<()>().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    wait_until_unlinked(&tracked);
    let kept = SharedMemory::attach(&untracked).unwrap();
    let mut four = [0; 4];
    kept.read_at(0, &mut four).unwrap();
    assert_eq!(&four, b"kept");
    kept.unlink().unwrap();
}

#[test]
fn names_sizes_and_bad_input() {
    let _g = guard();
    let name = format!("psm_{}_named", std::process::id());
    let mut a = SharedMemory::create(Some(&name), 100).unwrap();
    assert_eq!(a.name(), name);
    assert_eq!(a.size(), 100);
    // SAFETY: no other handle to the new block exists yet.
    let zeros = unsafe { a.as_slice() }.iter().all(|&b| b == 0);
    assert!(zeros, "zero-filled");
    // SAFETY: as above.
    unsafe { a.as_mut_slice()[99] = 7 };
    let b = SharedMemory::attach(&format!("/{name}")).unwrap();
    let byte99 = |m: &SharedMemory| {
        let mut one = [0u8];
        m.read_at(99, &mut one).unwrap();
        one[0]
    };
    assert_eq!(byte99(&b), 7);
    b.write_at(0, b"xy").unwrap();
    let mut two = [0u8; 2];
    a.read_at(0, &mut two).unwrap();
    assert_eq!(&two, b"xy");
    assert!(b.read_at(99, &mut two).is_err(), "out of bounds");
    assert!(
        SharedMemory::create(Some(&name), 10).is_err(),
        "the name exists"
    );
    assert!(matches!(
        SharedMemory::attach_sized(&name, 50),
        Err(Error::WrongSize {
            size: 100,
            wanted: 50,
            ..
        })
    ));
    SharedMemory::attach_sized(&name, 100).unwrap();
    a.unlink().unwrap();
    assert!(a.unlink().is_err(), "a second unlink");
    assert!(SharedMemory::attach(&name).is_err(), "gone");
    assert_eq!(byte99(&b), 7, "still mapped after unlink");
    assert!(SharedMemory::attach("no-such-block-of-mp").is_err());
    assert!(SharedMemory::create(Some("a/b"), 10).is_err());
    assert!(SharedMemory::create(Some("nul\0name"), 10).is_err());
    assert!(SharedMemory::create(None, 0).is_err());
    a.close().unwrap();
}
