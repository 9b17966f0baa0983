//! `SharedMemoryManager`: blocks made through it are usable here and in
//! other processes, and unlinked when it shuts down, when it is dropped,
//! and when the process that started it is killed; under every start
//! method. Also CPython's `test_shared_memory_SharedMemoryManager_*` and
//! `test_shared_memory_SharedMemoryServer_ignores_sigint`, ported.

use std::path::Path;
use std::time::{Duration, Instant};

use mp_manager::{Error, SharedMemoryManager};
use mp_proc::{Connection, Process, ShareableItem, ShareableList, SharedMemory, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    cpython_basics_blocks_are_gone_after_shutdown,
    cpython_basics_blocks_are_gone_after_drop,
    cpython_the_server_ignores_sigint,
    a_block_is_shared_with_a_child,
    a_shareable_list_is_shared_with_a_child,
    blocks_are_gone_when_the_owner_is_killed,
    a_block_made_by_a_connected_child_outlives_it_until_shutdown,
    a_released_block_is_gone_and_only_the_managers_own_are_released,
    cpython_a_list_released_on_shutdown_is_not_reported_leaked,
);

/// Only turns a bug into a failure instead of a hang.
const BOUND: Duration = Duration::from_secs(30);

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Attaching fails as Python's `FileNotFoundError`: the name is unlinked.
fn assert_unlinked(name: &str) {
    match SharedMemory::attach(name) {
        Err(Error::Os { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{name}")
        }
        other => panic!("{name} is still there: {other:?}"),
    }
    assert!(!in_dev_shm(name), "{name} is left in /dev/shm");
}

/// Python's `range(n)` as items.
fn range(n: i64) -> Vec<ShareableItem> {
    (0..n).map(ShareableItem::Int).collect()
}

/// A list's name is unlinked: attaching fails as `FileNotFoundError`.
fn assert_list_unlinked(name: &str) {
    match ShareableList::attach(name) {
        Err(Error::Os { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{name}")
        }
        other => panic!("{name} is still there: {:?}", other.map(|l| l.len())),
    }
}

/// CPython's `test_shared_memory_SharedMemoryManager_basics`, first half.
/// Calling before `start` (CPython's `ValueError`) cannot be written: a
/// manager is started when it exists.
fn cpython_basics_blocks_are_gone_after_shutdown(method: StartMethod) {
    let _g = guard();
    let smm1 = SharedMemoryManager::start_with(method).unwrap();
    let lol: Vec<ShareableList> = (5..10)
        .map(|i| smm1.shareable_list(&range(i)).unwrap())
        .collect();
    let lom: Vec<SharedMemory> = (32..128)
        .step_by(16)
        .map(|j| smm1.shared_memory(j).unwrap())
        .collect();
    let doppleganger_list0 = ShareableList::attach(lol[0].name()).unwrap();
    assert_eq!(doppleganger_list0.len(), 5);
    let doppleganger_shm0 = SharedMemory::attach(lom[0].name()).unwrap();
    assert!(doppleganger_shm0.size() >= 32);
    let held_name = lom[0].name().to_owned();
    let mut names: Vec<String> = lom.iter().map(|b| b.name().to_owned()).collect();
    names.extend(lol.iter().map(|l| l.name().to_owned()));
    names.sort();
    assert_eq!(smm1.segments().unwrap(), names);
    smm1.shutdown().unwrap();
    // No longer there to be attached to again.
    assert_unlinked(&held_name);
    for name in &names {
        assert_unlinked(name);
    }
    // The handles still map the memory.
    lom[1].write_at(0, b"still mapped").unwrap();
}

/// CPython's `with SharedMemoryManager() as smm2:` block: leaving it (here,
/// the drop) unlinks.
fn cpython_basics_blocks_are_gone_after_drop(method: StartMethod) {
    let _g = guard();
    let (held_name, shm_name) = {
        let smm2 = SharedMemoryManager::start_with(method).unwrap();
        let howdy: Vec<ShareableItem> = "howdy".chars().map(|c| c.to_string().into()).collect();
        let sl = smm2.shareable_list(&howdy).unwrap();
        assert_eq!(sl.to_vec().unwrap(), howdy);
        let shm = smm2.shared_memory(128).unwrap();
        assert_eq!(shm.size(), 128);
        assert!(in_dev_shm(shm.name()));
        (sl.name().to_owned(), shm.name().to_owned())
    };
    // No longer there to be attached to again.
    assert_list_unlinked(&held_name);
    assert_unlinked(&held_name);
    assert_unlinked(&shm_name);
}

/// CPython's `test_shared_memory_SharedMemoryServer_ignores_sigint`: the
/// server survives a SIGINT and goes on making blocks. (CPython's last
/// check, that this process still gets its KeyboardInterrupt, is about
/// Python's handler; the manager changes no disposition of this process.)
fn cpython_the_server_ignores_sigint(method: StartMethod) {
    let _g = guard();
    let smm = SharedMemoryManager::start_with(method).unwrap();
    // make sure the manager works properly at the beginning
    let first = smm.shareable_list(&range(10)).unwrap();
    let children = mp_proc::active_children();
    assert_eq!(children.len(), 1, "the manager is the one child");
    let server = nix::unistd::Pid::from_raw(children[0].pid() as i32);
    nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGINT).unwrap();
    let second = smm.shareable_list(&range(10)).unwrap();
    assert_eq!(second.get(9).unwrap(), ShareableItem::Int(9));
    assert!(in_dev_shm(first.name()) && in_dev_shm(second.name()));
    let names = [first.name().to_owned(), second.name().to_owned()];
    smm.shutdown().unwrap();
    for name in &names {
        assert_unlinked(name);
    }
}

fn write_hello(block: SharedMemory) {
    block.write_at(0, b"HELLO").unwrap();
}

/// A block from the manager is an ordinary `SharedMemory`: a child gets
/// it in its args and writes what the parent reads.
fn a_block_is_shared_with_a_child(method: StartMethod) {
    let _g = guard();
    let smm = SharedMemoryManager::start_with(method).unwrap();
    let block = smm.shared_memory(64).unwrap();
    let mut p = Process::new(write_hello, block.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let mut five = [0u8; 5];
    block.read_at(0, &mut five).unwrap();
    assert_eq!(&five, b"HELLO");
    let name = block.name().to_owned();
    smm.shutdown().unwrap();
    assert_unlinked(&name);
}

fn set_items(list: ShareableList) {
    list.set(0, "from a child".into()).unwrap();
    list.set(2, ShareableItem::None).unwrap();
}

/// A `ShareableList` from the manager is an ordinary one: a child gets it
/// in its args, sets items, and the parent reads them.
fn a_shareable_list_is_shared_with_a_child(method: StartMethod) {
    let _g = guard();
    let smm = SharedMemoryManager::start_with(method).unwrap();
    let items = ["x".repeat(16).into(), 1.5.into(), 7.into()];
    let list = smm.shareable_list(&items).unwrap();
    let mut p = Process::new(set_items, list.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let expected: Vec<ShareableItem> = vec!["from a child".into(), 1.5.into(), ShareableItem::None];
    assert_eq!(list.to_vec().unwrap(), expected);
    let name = list.name().to_owned();
    smm.shutdown().unwrap();
    assert_list_unlinked(&name);
}

/// The killed owner: starts a manager, makes blocks, writes to one,
/// reports their names and the server's pid, and waits to be killed.
fn own_blocks_then_wait((method, report): (StartMethod, Connection)) {
    let smm = SharedMemoryManager::start_with(method).unwrap();
    let blocks: Vec<SharedMemory> = [16, 4096, 100_000]
        .into_iter()
        .map(|n| smm.shared_memory(n).unwrap())
        .collect();
    blocks[0].write_at(0, b"from the owner").unwrap();
    let list = smm.shareable_list(&range(10)).unwrap();
    let mut names: Vec<String> = blocks.iter().map(|b| b.name().to_owned()).collect();
    names.push(list.name().to_owned());
    let server = mp_proc::active_children()[0].pid();
    report.send(&(names, server)).unwrap();
    // Killed while waiting here; the bound only ends a forgotten child.
    let _ = report.poll(Some(BOUND));
}

/// The owner (a child process) is SIGKILLed: the server notices, unlinks
/// every block and exits.
fn blocks_are_gone_when_the_owner_is_killed(method: StartMethod) {
    let _g = guard();
    let (mine, theirs) = mp_proc::pipe(true).unwrap();
    let mut owner = Process::new(own_blocks_then_wait, (method, theirs)).start_method(method);
    owner.start().unwrap();
    assert!(mine.poll(Some(BOUND)).unwrap(), "no report from the owner");
    let (names, server): (Vec<String>, u32) = mine.recv().unwrap();
    assert_eq!(names.len(), 4);
    let list = ShareableList::attach(&names[3]).unwrap();
    assert_eq!(list.to_vec().unwrap(), range(10));
    drop(list);
    for name in &names {
        assert!(in_dev_shm(name), "{name} is not in /dev/shm");
    }
    let seen = SharedMemory::attach(&names[0]).unwrap();
    let mut got = [0u8; 14];
    seen.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"from the owner");
    drop(seen);
    owner.kill().unwrap();
    assert_eq!(owner.join().unwrap(), -9);
    let deadline = mp_proc::plumbing::deadline_after(BOUND).expect("a near deadline");
    while names.iter().any(|n| in_dev_shm(n)) || mp_testkit::exists(server) {
        if Instant::now() >= deadline {
            let alive = mp_testkit::exists(server);
            let left: Vec<&String> = names.iter().filter(|n| in_dev_shm(n)).collect();
            // Ends a server that missed its owner's death (its resource
            // tracker then unlinks the blocks), so the failure leaks nothing.
            let pid = nix::unistd::Pid::from_raw(server as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!(
                "after its owner was killed, server {server} alive: {alive}, blocks left: {left:?}"
            );
        }
        std::thread::yield_now();
    }
    for name in &names {
        assert_unlinked(name);
    }
}

/// A client that connected makes a block and ends.
fn make_one_and_end((address, authkey, report): (String, Vec<u8>, Connection)) {
    let address = address.parse().unwrap();
    let smm = SharedMemoryManager::connect(&address, &authkey).unwrap();
    let block = smm.shared_memory(8).unwrap();
    block.write_at(0, b"kept").unwrap();
    report.send(&block.name().to_owned()).unwrap();
}

/// The server makes the blocks: one made through a connected child lives
/// on after that child has ended (a block the child made itself would
/// have gone with it), until the manager shuts down.
fn a_block_made_by_a_connected_child_outlives_it_until_shutdown(method: StartMethod) {
    let _g = guard();
    let smm = SharedMemoryManager::start_with(method).unwrap();
    let (mine, theirs) = mp_proc::pipe(false).unwrap();
    let key = mp_proc::current_process().authkey().to_vec();
    let args = (smm.address().to_string(), key, theirs);
    let mut p = Process::new(make_one_and_end, args).start_method(method);
    p.start().unwrap();
    assert!(mine.poll(Some(BOUND)).unwrap(), "no report from the child");
    let name: String = mine.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let block = SharedMemory::attach(&name).unwrap();
    let mut got = [0u8; 4];
    block.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"kept");
    assert_eq!(smm.segments().unwrap(), vec![name.clone()]);
    smm.shutdown().unwrap();
    assert_unlinked(&name);
}

/// `release` (CPython's `release_segment`) unlinks at once; a name the
/// manager did not make is refused and left alone; a block a client
/// unlinked itself does not stop the shutdown from unlinking the rest.
fn a_released_block_is_gone_and_only_the_managers_own_are_released(method: StartMethod) {
    let _g = guard();
    let smm = SharedMemoryManager::start_with(method).unwrap();
    let released = smm.shared_memory(8).unwrap();
    let unlinked_here = smm.shared_memory(8).unwrap();
    let kept = smm.shared_memory(8).unwrap();
    smm.release(released.name()).unwrap();
    assert_unlinked(released.name());
    assert!(smm.release(released.name()).is_err(), "released twice");
    let foreign = SharedMemory::create(None, 8).unwrap();
    let refused = smm.release(foreign.name());
    assert!(
        matches!(&refused, Err(Error::Remote { message }) if message.contains("not a block this manager made")),
        "{refused:?}"
    );
    assert!(in_dev_shm(foreign.name()), "a foreign block was unlinked");
    foreign.unlink().unwrap();
    unlinked_here.unlink().unwrap();
    let mut left = vec![unlinked_here.name().to_owned(), kept.name().to_owned()];
    left.sort();
    assert_eq!(smm.segments().unwrap(), left);
    assert!(matches!(smm.shared_memory(0), Err(Error::Invalid { .. })));
    smm.shutdown().unwrap();
    assert_unlinked(kept.name());
}

/// Scenario `smm_quiet`: CPython's script in
/// `test_shared_memory_SharedMemoryManager_reuses_resource_tracker`.
pub(crate) fn a_list_released_on_shutdown(method: StartMethod) {
    mp_proc::set_start_method(method).unwrap();
    let smm = SharedMemoryManager::start().unwrap();
    let _sl = smm.shareable_list(&range(10)).unwrap();
    smm.shutdown().unwrap();
}

/// CPython's `test_shared_memory_SharedMemoryManager_reuses_resource_tracker`:
/// a list the manager released on shutdown draws no complaint from any
/// resource tracker (nothing on stderr), and is gone.
fn cpython_a_list_released_on_shutdown_is_not_reported_leaked(method: StartMethod) {
    let _g = guard();
    let out = mp_testkit::scenario(&format!("smm_quiet:{method}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "stderr: {err}");
}
