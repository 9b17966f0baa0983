//! The manager's accept loop under slow clients: a silent or dripping
//! client in its handshake delays nobody else, and a flood of silent
//! clients costs the server a bounded number of threads and descriptors.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mp_manager::SyncManager;
use mp_proc::connection::Address;
use mp_proc::{Process, StartMethod};
use mp_testkit::{Dripper, guard, processes};

mp_testkit::for_each_method!(
    a_silent_and_a_dripping_client_delay_nobody,
    a_flood_of_silent_clients_costs_bounded_threads_and_descriptors,
);

/// The most handshakes the manager runs at once (`server::accept::HANDSHAKES`).
const BOUND: usize = 32;

/// How long the tests wait for something that must happen before they
/// call it a failure (instead of hanging).
const PATIENCE: Duration = Duration::from_secs(60);

fn raw(address: &Address) -> UnixStream {
    match address {
        Address::Unix(p) => UnixStream::connect(p).unwrap(),
        a => panic!("a manager on a Unix socket was expected, not {a}"),
    }
}

/// In another process (whose new connection goes through the manager's
/// accept loop: this process would reuse its own), connects to the manager
/// at `address` and uses a proxy.
fn connect_and_call(address: String) {
    let at: Address = address.parse().unwrap();
    let m = SyncManager::connect(&at, mp_proc::current_process().authkey()).unwrap();
    let d = m.dict::<String, u32>().unwrap();
    d.insert("served".into(), 1).unwrap();
    assert_eq!(d.get(&"served".into()).unwrap(), Some(1));
}

/// A good client from another process, started by `method`, is served.
fn a_good_client_is_served(method: StartMethod, at: &Address) {
    let mut p = Process::new(connect_and_call, at.to_string()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0, "the good client failed");
}

/// A client behind a silent one and a dripping one connects and is served
/// at once (the accept loop was serial: it waited out each handshake, up to
/// 20 s for the silent one, and the good client's own handshake timed out).
fn a_silent_and_a_dripping_client_delay_nobody(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let at = m.address().clone();
    let silent = raw(&at);
    let dripper = Dripper::start(raw(&at));
    a_good_client_is_served(method, &at);
    // And the owner's own connection still is.
    m.dict::<u8, u8>().unwrap().insert(1, 1).unwrap();
    dripper.stop();
    drop(silent);
    m.shutdown().unwrap();
}

/// This process's descendants.
fn descendants() -> Vec<u32> {
    let all = processes();
    let mut out = vec![std::process::id()];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            all.iter()
                .filter(|&&(_, ppid, s)| ppid == parent && s != 'Z')
                .map(|&(pid, _, _)| pid),
        );
        i += 1;
    }
    out.remove(0);
    out
}

/// Threads and descriptors of process `pid`.
fn cost(pid: u32) -> (usize, usize) {
    let count = |what| {
        std::fs::read_dir(format!("/proc/{pid}/{what}"))
            .unwrap()
            .count()
    };
    (count("task"), count("fd"))
}

/// Which of `clients` the server has written to (its challenge).
fn challenged(clients: &[UnixStream]) -> Vec<usize> {
    let fds: Vec<_> = clients.iter().map(|c| c.as_fd()).collect();
    mp_proc::connection::wait_fds(&fds, Some(Duration::ZERO)).unwrap()
}

/// Waits until `n` of `clients` have been challenged (a failure after
/// [`PATIENCE`]), and returns which: no more than `n`.
fn wait_challenged(clients: &[UnixStream], n: usize) -> Vec<usize> {
    let give_up = Instant::now()
        .checked_add(PATIENCE)
        .expect("a deadline in range");
    let mut ready = Vec::new();
    while ready.len() < n {
        // Wait for any of the others.
        let others: Vec<usize> = (0..clients.len()).filter(|i| !ready.contains(i)).collect();
        let fds: Vec<_> = others.iter().map(|&i| clients[i].as_fd()).collect();
        let left = give_up.saturating_duration_since(Instant::now());
        let woke = mp_proc::connection::wait_fds(&fds, Some(left)).unwrap();
        assert!(
            !woke.is_empty(),
            "only {} handshakes: {ready:?}",
            ready.len()
        );
        ready.extend(woke.into_iter().map(|j| others[j]));
        ready.sort();
    }
    assert_eq!(
        challenged(clients),
        ready,
        "more than {n} handshakes at once"
    );
    ready
}

/// Three times the bound of silent clients: the server takes `BOUND` of
/// them into their handshake (each gets a challenge) and leaves the rest
/// in the listener's queue, at a cost of one thread and two descriptors
/// each; as those end, the next ones get their places; afterwards a good
/// client (another process) is served, and the threads are gone.
fn a_flood_of_silent_clients_costs_bounded_threads_and_descriptors(method: StartMethod) {
    let _g = guard();
    let before = descendants();
    let m = SyncManager::start_with(method).unwrap();
    let new: Vec<u32> = descendants()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let [pid] = new[..] else {
        panic!("one new process, the manager, was expected: {new:?}")
    };
    let at = m.address().clone();
    // A round trip on the owner's connection: its thread runs.
    m.dict::<u8, u8>().unwrap();
    let (tasks, fds) = cost(pid);

    let mut flood: Vec<UnixStream> = (0..3 * BOUND).map(|_| raw(&at)).collect();
    let first = wait_challenged(&flood, BOUND);
    assert_eq!(first, (0..BOUND).collect::<Vec<_>>(), "in their order");
    let (t, f) = cost(pid);
    assert!(t <= tasks + BOUND, "threads: {tasks} -> {t}");
    assert!(f <= fds + 2 * BOUND, "descriptors: {fds} -> {f}");
    // Still exactly the bound: nobody else got in meanwhile.
    assert_eq!(challenged(&flood).len(), BOUND);

    // The first ones hang up: the next ones get their places.
    flood.drain(..BOUND);
    let next = wait_challenged(&flood, BOUND);
    assert_eq!(next, (0..BOUND).collect::<Vec<_>>(), "in their order");
    // An ended handshake closes its descriptors before it gives back its
    // place; its thread takes a moment more to exit.
    let f = cost(pid).1;
    assert!(f <= fds + 2 * BOUND, "descriptors: {fds} -> {f}");
    threads_settle(pid, tasks + BOUND);

    // Everybody hangs up: a good client is served, and the handshakes'
    // threads are gone (the good client's session too, once it has left).
    drop(flood);
    a_good_client_is_served(method, &at);
    threads_settle(pid, tasks);
    m.shutdown().unwrap();
}

/// Waits until process `pid` runs at most `n` threads (a failure after
/// [`PATIENCE`]). Nothing tells when a thread has exited: the count is
/// read again until it holds, which it does for good once it does (the
/// clients left are silent and keep their handshakes).
fn threads_settle(pid: u32, n: usize) {
    let give_up = Instant::now()
        .checked_add(PATIENCE)
        .expect("a deadline in range");
    while cost(pid).0 > n {
        assert!(
            Instant::now() < give_up,
            "threads: {:?} (threads, descriptors), not {n}",
            cost(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
