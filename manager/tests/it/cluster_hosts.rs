//! `ClusterContext` and a pool over it on real hosts of one machine:
//! Linux network namespaces joined by veth pairs (mp-testkit's `netns`),
//! one reached by `ip netns exec`, one by ssh to a real sshd in it. The
//! cluster's manager listens on the parent's address on the first link.
//! Root only: each test skips, printing why, otherwise (`cargo xtask test`
//! installs iproute2 and OpenSSH as root).

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use mp_manager::{ClusterContext, Error, QueueProxy, SyncManager};
use mp_pool::Pool;
use mp_proc::{Connection, Context};
use mp_testkit::guard;

use crate::cluster::{my_netns, run, without_hosts};
use mp_testkit::netns::{self, Hosts};
use mp_testkit::sshd::Sshd;

/// Two hosts (host 0 by `ip netns exec`, host 1 by ssh) and a cluster of a
/// slot on each. Dropped in order: the cluster, the sshd, the namespaces.
struct Setup {
    cluster: ClusterContext,
    _sshd: Sshd,
    hosts: Hosts,
}

fn setup_or_skip() -> Option<Setup> {
    let hosts = netns::hosts_or_skip(2)?;
    let sshd = match Sshd::start(&hosts, 1) {
        Ok(sshd) => sshd,
        Err(skip) => {
            eprintln!("skipped: {skip}");
            return None;
        }
    };
    let cluster = ClusterContext::builder()
        .listen(SocketAddr::new(hosts.parent_addr(0), 0))
        .host(hosts.launcher(0), 1)
        .host(sshd.launcher(), 1)
        .build()
        .unwrap();
    Some(Setup {
        cluster,
        _sshd: sshd,
        hosts,
    })
}

impl Setup {
    /// The network namespace (its inode) of host `i`.
    fn netns(&self, i: usize) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.hosts.name(i)))
            .unwrap()
            .ino()
    }
}

/// The generic body that runs on three start methods and on threads runs
/// unchanged across the two hosts: the same results, and its processes ran
/// in the hosts' namespaces, two on each, in turn.
#[test]
fn the_generic_body_runs_unchanged_across_hosts() {
    let _g = guard();
    let Some(setup) = setup_or_skip() else {
        return;
    };
    let far = run(&setup.cluster);
    let near = run(&mp_proc::get_context(mp_proc::StartMethod::Spawn));
    assert_eq!(without_hosts(&far), without_hosts(&near));
    let (far, near) = (far.0, near.0);
    let places: Vec<u64> = far.iter().map(|&(_, _, ns)| ns).collect();
    let (h0, h1) = (setup.netns(0), setup.netns(1));
    assert_eq!(places, [h0, h1, h0, h1], "processes take the hosts in turn");
    assert!(near.iter().all(|&(_, _, ns)| ns == my_netns()));
}

fn square(x: u64) -> u64 {
    x * x
}

/// SIGKILLs its own worker on 13; squares the rest.
fn square_or_die(x: u64) -> u64 {
    if x == 13 {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    x * x
}

/// Never returns for 7.
fn square_or_hang(x: u64) -> u64 {
    if x == 7 {
        loop {
            std::thread::park();
        }
    }
    x * x
}

/// A pool over the cluster: its workers on both hosts, results in order,
/// lazy imap; a worker killed on a host fails only its task (with a task
/// timeout: the pool knows the item) and is replaced; a hung task fails
/// by its timeout and the rest succeed.
#[test]
fn a_pool_runs_across_hosts_and_survives_a_killed_worker_and_a_hung_task() {
    let _g = guard();
    let Some(setup) = setup_or_skip() else {
        return;
    };
    let pool = Pool::builder()
        .context(setup.cluster.clone())
        .build()
        .unwrap();
    assert_eq!(pool.processes(), 2);
    let want: Vec<u64> = (0..1000).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..1000).unwrap(), want);
    let lazy: Vec<u64> = pool
        .imap(square, 0..)
        .take(100)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lazy, want[..100]);
    drop(pool);

    let pool = Pool::builder()
        .context(setup.cluster.clone())
        .task_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // A map fails as a whole with the killed task's error.
    assert!(matches!(
        pool.map_chunked(square_or_die, 0..20, 1),
        Err(mp_pool::Error::WorkerDied { .. })
    ));
    let each: Vec<_> = (0..20u64)
        .map(|x| pool.apply_async(square_or_die, x))
        .collect();
    for (x, r) in each.into_iter().enumerate() {
        match (x, r.get()) {
            (13, Err(mp_pool::Error::WorkerDied { exitcode: -9, .. })) => {}
            (13, other) => panic!("13 gave {other:?}"),
            (x, r) => assert_eq!(r.unwrap(), (x * x) as u64),
        }
    }
    let each: Vec<_> = (0..10u64)
        .map(|x| pool.apply_async(square_or_hang, x))
        .collect();
    for (x, r) in each.into_iter().enumerate() {
        match (x, r.get()) {
            (7, Err(mp_pool::Error::TaskTimeout { .. })) => {}
            (7, other) => panic!("7 gave {other:?}"),
            (x, r) => assert_eq!(r.unwrap(), (x * x) as u64),
        }
    }
    assert_eq!(pool.map(square, 0..100).unwrap(), want[..100]);
}

/// Tries the cluster's manager with a wrong key from its host, then with
/// the right one (its own), and reports both over the context's queue.
fn dial((q, address): (QueueProxy<(bool, bool)>, String)) {
    let address = mp_proc::connection::Address::Tcp(address.parse().unwrap());
    let wrong = SyncManager::connect(&address, b"not the cluster's key");
    let key = mp_proc::current_process().authkey().to_vec();
    let right = SyncManager::connect(&address, &key);
    q.put((
        matches!(wrong, Err(Error::Authentication(_))),
        right.is_ok(),
    ))
    .unwrap();
}

/// From each host, a client with a wrong key is refused and one with the
/// process's key (the parent's, which it received on its link) is served.
#[test]
fn a_wrong_key_from_a_host_is_refused_and_the_right_one_served() {
    let _g = guard();
    let Some(setup) = setup_or_skip() else {
        return;
    };
    let q = setup.cluster.queue::<(bool, bool)>().unwrap();
    for _ in 0..2 {
        let address = setup.cluster.address().to_string();
        let mut p = setup.cluster.process(dial, (q.clone(), address));
        p.start().unwrap();
        assert_eq!(q.get().unwrap(), (true, true), "on {}", p.get_launcher());
        assert_eq!(p.join().unwrap(), 0);
    }
}

/// Receives a connection from the queue and reports what happened.
fn receive_a_handle((q, said): (QueueProxy<Connection>, QueueProxy<String>)) {
    let got = match q.get() {
        Ok(_) => "received".to_owned(),
        Err(e) => e.to_string(),
    };
    said.put(got).unwrap();
}

/// A handle of this machine put on the cluster's queue for a process on
/// another host: a clear error there, and the queue goes on.
#[test]
fn a_handle_put_on_a_queue_for_another_host_is_a_clear_error() {
    let _g = guard();
    let Some(setup) = setup_or_skip() else {
        return;
    };
    let q = setup.cluster.queue::<Connection>().unwrap();
    let said = setup.cluster.queue::<String>().unwrap();
    // The tickets are never redeemed: they expire soon, and the sender
    // closes its copies of the descriptors then.
    let lifetime = mp_proc::reduction::ticket_lifetime();
    mp_proc::reduction::set_ticket_lifetime(Duration::from_millis(200));
    let before = mp_testkit::open_fds();
    for _ in 0..2 {
        let mut p = setup
            .cluster
            .process(receive_a_handle, (q.clone(), said.clone()));
        p.start().unwrap();
        let (a, _b) = mp_proc::pipe(true).unwrap();
        q.put(a).unwrap();
        let got = said.get().unwrap();
        assert!(
            got.contains("cannot be passed to a process on another host"),
            "{}: {got}",
            p.get_launcher()
        );
        assert_eq!(p.join().unwrap(), 0);
    }
    mp_proc::reduction::set_ticket_lifetime(lifetime);
    assert!(
        mp_testkit::wait_until(Duration::from_secs(60), || mp_testkit::open_fds() == before),
        "the expired tickets' descriptors are closed"
    );
}
