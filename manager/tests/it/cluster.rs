//! `ClusterContext`: the conformance suite and a generic body on a cluster
//! whose hosts are this machine (`Launcher::local()`) and on one that mixes
//! them with hosts that take the real remote path (`Launcher::command`
//! with an empty prefix: an agent of this executable over the launcher's
//! stdio, as ssh would run it), under every start method; processes killed
//! on a host, a wrong key, its listener, its build errors, its hosts in
//! turn, its end.

use mp_manager::{ClusterContext, Error, SyncManager};
use mp_proc::{
    BarrierLike, Context, EventLike, Launcher, LockLike, ProcessLike, QueueLike, StartMethod,
    ValueLike, Workers,
};
use mp_testkit::guard;

/// Two local hosts of 2 and 1 slots: processes take turns between them.
fn local(method: StartMethod) -> ClusterContext {
    ClusterContext::builder()
        .host(Launcher::local(), 2)
        .host(Launcher::local(), 1)
        .start_method(method)
        .build()
        .unwrap()
}

/// The remote path on this machine: the launcher runs this executable as
/// an agent, with no prefix (ssh or `ip netns exec` would be one).
fn agent() -> Launcher {
    Launcher::command(Vec::<&str>::new())
}

/// A host that takes the remote path and a local one, a slot each:
/// processes alternate, the first on the agent's host.
fn mixed(method: StartMethod) -> ClusterContext {
    ClusterContext::builder()
        .host(agent(), 1)
        .host(Launcher::local(), 1)
        .start_method(method)
        .build()
        .unwrap()
}

/// mp-proc's conformance suite (lifecycle, queues, primitives, values,
/// pipes, CPython's tests of them) on a cluster, per start method: all of
/// it but where a barrier's action runs (in the manager here; see
/// `a_barrier_action_runs_in_the_manager_once_per_trip`).
mod conformance {
    mod fork {
        mp_conformance::served_conformance_tests!(
            super::super::local(mp_proc::StartMethod::Fork),
            mp_testkit::guard()
        );
    }
    mod spawn {
        mp_conformance::served_conformance_tests!(
            super::super::local(mp_proc::StartMethod::Spawn),
            mp_testkit::guard()
        );
    }
    mod forkserver {
        mp_conformance::served_conformance_tests!(
            super::super::local(mp_proc::StartMethod::Forkserver),
            mp_testkit::guard()
        );
    }
}

/// The same suite, unchanged, on a cluster whose processes alternate
/// between a host on the remote path and a local one.
mod conformance_mixed {
    mod fork {
        mp_conformance::served_conformance_tests!(
            super::super::mixed(mp_proc::StartMethod::Fork),
            mp_testkit::guard()
        );
    }
    mod spawn {
        mp_conformance::served_conformance_tests!(
            super::super::mixed(mp_proc::StartMethod::Spawn),
            mp_testkit::guard()
        );
    }
    mod forkserver {
        mp_conformance::served_conformance_tests!(
            super::super::mixed(mp_proc::StartMethod::Forkserver),
            mp_testkit::guard()
        );
    }
}

mp_testkit::for_each_method!(
    a_generic_body_runs_unchanged_on_a_cluster,
    the_last_clone_dropped_ends_the_manager,
    a_barrier_action_runs_in_the_manager_once_per_trip,
    results_come_back_from_every_host,
    a_process_killed_on_a_host_is_reported_and_the_primitives_still_work,
    a_wrong_key_is_refused_from_any_host_and_the_manager_keeps_serving,
);

/// A worker's report: its id, its share, its network namespace (its host,
/// for the tests across namespaces).
pub(crate) type BodyReport = (u32, u64, u64);

/// The inode of this process's network namespace.
pub(crate) fn my_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").unwrap().ino()
}

#[allow(clippy::type_complexity)] // a worker's arguments are one tuple
fn worker<C: Context>((q, go, total, id): (C::Queue<BodyReport>, C::Event, C::Value<u64>, u32)) {
    go.wait(None).unwrap();
    let sum: u64 = (0..1000u64).map(|x| x * u64::from(id)).sum();
    total.update(|t| *t += sum).unwrap();
    q.put((id, sum, my_netns())).unwrap();
}

/// The results of [`run`] without where they were computed.
pub(crate) fn without_hosts((reports, total): &(Vec<BodyReport>, u64)) -> (Vec<(u32, u64)>, u64) {
    (reports.iter().map(|&(id, s, _)| (id, s)).collect(), *total)
}

/// The generic body: four workers wait for `go`, report on a
/// queue and add to a shared value.
pub(crate) fn run<C: Context>(ctx: &C) -> (Vec<BodyReport>, u64) {
    let q = ctx.queue().unwrap();
    let go = ctx.event().unwrap();
    let total = ctx.value(0u64).unwrap();
    let mut ps: Vec<C::Process> = (0..4)
        .map(|id| ctx.process(worker::<C>, (q.clone(), go.clone(), total.clone(), id)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    go.set().unwrap();
    let mut out: Vec<BodyReport> = (0..4).map(|_| q.get().unwrap()).collect();
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    out.sort_unstable();
    (out, total.get().unwrap())
}

fn a_generic_body_runs_unchanged_on_a_cluster(method: StartMethod) {
    let _g = guard();
    let here = run(&mp_proc::get_context(method));
    assert_eq!(here.1, 6 * 499_500);
    let cluster = local(method);
    assert_eq!(run(&cluster), here);
    assert_eq!(cluster.workers(), Workers::Processes(method));
    assert_eq!(cluster.name(), "cluster");
}

/// The names of this process's threads.
fn threads() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap().flatten();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

fn the_last_clone_dropped_ends_the_manager(method: StartMethod) {
    let _g = guard();
    let cluster = mixed(method);
    let children = mp_proc::active_children();
    let [server] = &children[..] else {
        panic!("one child, the manager: {children:?}");
    };
    let server = server.pid();
    let &mp_proc::connection::Address::Tcp(listening) = cluster.address() else {
        panic!("{}", cluster.address());
    };
    let other = cluster.clone();
    let q = other.queue::<Report>().unwrap();
    // A process on the agent's host used the manager, and ended.
    let mut p = cluster.process(tagged::<ClusterContext>, (q.clone(), 7));
    assert_eq!(
        p.get_launcher(),
        &agent().forward(cluster.address().clone())
    );
    p.start().unwrap();
    let agent_pid = p.pid().unwrap();
    assert_eq!(q.get().unwrap(), (7, None));
    assert_eq!(p.join().unwrap(), 0);
    drop(cluster);
    q.put((1, None)).unwrap();
    assert_eq!(q.get().unwrap(), (1, None), "a clone keeps the manager");
    assert!(mp_testkit::exists(server));
    drop(other);
    assert!(mp_proc::active_children().is_empty());
    assert!(!mp_testkit::exists(server), "the manager ended");
    assert!(!mp_testkit::exists(agent_pid), "the agent ended");
    assert!(mp_testkit::zombies().is_empty(), "every child was reaped");
    let dialed = std::net::TcpStream::connect(listening);
    assert!(dialed.is_err(), "nothing listens at {listening}");
    let links: Vec<String> = threads()
        .into_iter()
        .filter(|t| t.starts_with("mp-link"))
        .collect();
    assert!(links.is_empty(), "a link's threads are left: {links:?}");
    assert!(
        q.put((2, None)).is_err(),
        "a proxy outliving its cluster fails"
    );
    drop(q);
}

/// What [`tagged`] reports: its id and its host's tag.
type Report = (u32, Option<String>);

/// Reports its id and its host's `MP_CLUSTER_HOST` (set by a launcher's
/// `env` prefix only).
fn tagged<C: Context>((q, id): (C::Queue<Report>, u32)) {
    q.put((id, std::env::var("MP_CLUSTER_HOST").ok())).unwrap();
}

/// Three hosts, in turn: the agent's, this machine's, and one whose
/// launcher runs the agent through a prefix (`env`, as `ip netns exec` or
/// `srun` would) that tags its processes: each host's results come back,
/// and the generic body gives what it gives on this machine.
fn results_come_back_from_every_host(method: StartMethod) {
    let _g = guard();
    let tagging = Launcher::command(["env", "MP_CLUSTER_HOST=tagged"]);
    let cluster = ClusterContext::builder()
        .host(agent(), 1)
        .host(Launcher::local(), 1)
        .host(tagging.clone(), 1)
        .start_method(method)
        .build()
        .unwrap();
    assert_eq!(cluster.workers(), Workers::Hosts);
    let q = cluster.queue().unwrap();
    let mut ps: Vec<mp_proc::Process> = (0..6)
        .map(|id| cluster.process(tagged::<ClusterContext>, (q.clone(), id)))
        .collect();
    // The manager's address is forwarded to the hosts that are not local.
    let manager = cluster.address().clone();
    let expected = [
        agent().forward(manager.clone()),
        Launcher::local(),
        tagging.forward(manager),
    ];
    for (i, p) in ps.iter_mut().enumerate() {
        assert_eq!(p.get_launcher(), &expected[i % 3]);
        p.start().unwrap();
    }
    let mut out: Vec<Report> = (0..6).map(|_| q.get().unwrap()).collect();
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    out.sort_unstable();
    let tag = |id: u32| (id % 3 == 2).then(|| "tagged".to_owned());
    assert_eq!(out, (0..6).map(|id| (id, tag(id))).collect::<Vec<_>>());
    let here = run(&mp_proc::get_context(method));
    assert_eq!(run(&cluster), here);
    assert_eq!(run(&mixed(method)), here);
}

/// Says it is ready, then waits for an event that is never set.
fn wait_forever<C: Context>((q, ev): (C::Queue<Report>, C::Event)) {
    q.put((0, None)).unwrap();
    ev.wait(None).unwrap();
}

/// Takes the lock, says it is ready and kills itself holding it.
fn die_holding<C: Context>((q, lock): (C::Queue<Report>, C::Lock)) {
    std::mem::forget(lock.acquire().unwrap());
    q.put((0, None)).unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// On each host of a mixed cluster (the agent's first), a process killed
/// by `kill()` while blocked in the manager and one that SIGKILLs itself
/// holding a lock: both are reported as -9, and the context's queue, event
/// and lock (freed with its dead holder) still work, as does a new process
/// on the same host.
fn a_process_killed_on_a_host_is_reported_and_the_primitives_still_work(method: StartMethod) {
    let _g = guard();
    let cluster = mixed(method);
    let q = cluster.queue().unwrap();
    let ev = cluster.event().unwrap();
    let lock = cluster.lock().unwrap();
    let hosts = [
        agent().forward(cluster.address().clone()),
        Launcher::local(),
    ];
    for (i, from_inside) in [false, false, true, true].into_iter().enumerate() {
        let mut p = match from_inside {
            false => cluster.process(wait_forever::<ClusterContext>, (q.clone(), ev.clone())),
            true => cluster.process(die_holding::<ClusterContext>, (q.clone(), lock.clone())),
        };
        let host = &hosts[i % 2];
        assert_eq!(p.get_launcher(), host);
        p.start().unwrap();
        assert_eq!(q.get().unwrap(), (0, None), "{host}: ready");
        if !from_inside {
            p.kill().unwrap();
        }
        assert_eq!(p.join().unwrap(), -9, "{host}, from inside: {from_inside}");
        assert_eq!(p.exitcode(), Some(-9));
        let held = lock.acquire_timeout(mp_conformance::proc::HANG_GUARD);
        assert!(held.unwrap().is_some(), "{host}: the dead holder's lock");
        assert!(!ev.is_set().unwrap());
        // Its slot is free once it is dropped; the next process is on the
        // other host: skip a turn to stay here.
        drop(p);
        let _ = cluster.process(drop::<()>, ());
        let mut next = cluster.process(tagged::<ClusterContext>, (q.clone(), 5));
        assert_eq!(next.get_launcher(), host);
        next.start().unwrap();
        assert_eq!(q.get().unwrap(), (5, None), "{host}: a new process");
        assert_eq!(next.join().unwrap(), 0);
    }
    ev.set().unwrap();
    assert!(ev.wait(None).unwrap());
}

/// Tries the cluster's manager with a wrong key from its host and reports
/// whether it was refused, over the context's queue (its own key is right).
fn dial_wrong((q, address): (mp_manager::QueueProxy<bool>, String)) {
    let address = mp_proc::connection::Address::Tcp(address.parse().unwrap());
    let wrong = SyncManager::connect(&address, b"not the cluster's key");
    q.put(matches!(wrong, Err(Error::Authentication(_))))
        .unwrap();
}

/// A client with a wrong key, from this machine or from a process on a
/// host of the remote path, is refused; the manager keeps serving the
/// context's primitives and the right key.
fn a_wrong_key_is_refused_from_any_host_and_the_manager_keeps_serving(method: StartMethod) {
    let _g = guard();
    let cluster = mixed(method);
    let q = cluster.queue::<bool>().unwrap();
    for _ in 0..2 {
        let mut p = cluster.process(dial_wrong, (q.clone(), cluster.address().to_string()));
        p.start().unwrap();
        assert!(q.get().unwrap(), "refused on {}", p.get_launcher());
        assert_eq!(p.join().unwrap(), 0);
    }
    let wrong = SyncManager::connect(cluster.address(), b"not the cluster's key");
    assert!(matches!(wrong, Err(Error::Authentication(_))), "{wrong:?}");
    q.put(true).unwrap();
    assert!(q.get().unwrap());
    let key = mp_proc::current_process().authkey().to_vec();
    let right = SyncManager::connect(cluster.address(), &key).unwrap();
    assert!(right.number_of_objects().unwrap() >= 1, "the same server");
}

#[test]
fn a_client_with_a_wrong_key_is_refused() {
    let _g = guard();
    let cluster = ClusterContext::builder().build().unwrap();
    let wrong = SyncManager::connect(cluster.address(), b"not the cluster's key");
    assert!(matches!(wrong, Err(Error::Authentication(_))), "{wrong:?}");
    let key = mp_proc::current_process().authkey().to_vec();
    let right = SyncManager::connect(cluster.address(), &key).unwrap();
    let ev = cluster.event().unwrap();
    ev.set().unwrap();
    assert!(right.number_of_objects().unwrap() >= 1, "the same server");
    drop(right);
}

#[test]
fn build_refuses_an_unspecified_address_and_a_host_of_no_slots() {
    let _g = guard();
    for any in ["0.0.0.0:0", "[::]:0"] {
        let built = ClusterContext::builder()
            .listen(any.parse().unwrap())
            .build();
        let Err(Error::Invalid { reason, .. }) = built else {
            panic!("{any}: {built:?}");
        };
        assert!(reason.contains("dial"), "{reason}");
    }
    let built = ClusterContext::builder()
        .host(Launcher::local(), 1)
        .host(Launcher::ssh("node1"), 0)
        .build();
    let Err(Error::Invalid { reason, .. }) = built else {
        panic!("{built:?}");
    };
    assert!(reason.contains("node1"), "{reason}");
    assert!(mp_proc::active_children().is_empty(), "no manager started");
}

#[test]
fn processes_take_the_hosts_in_turn_by_slots() {
    let _g = guard();
    let far = Launcher::command(["ssh-never-run", "h1"]);
    let cluster = ClusterContext::builder()
        .host(Launcher::local(), 2)
        .host(far.clone(), 1)
        .build()
        .unwrap();
    let hosts: Vec<Launcher> = (0..6)
        .map(|_| cluster.process(drop::<()>, ()).get_launcher().clone())
        .collect();
    let near = Launcher::local();
    let far = far.forward(cluster.address().clone());
    assert_eq!(far.forwarded(), [cluster.address().clone()]);
    assert_eq!(
        hosts,
        [&near, &far, &near, &near, &far, &near].map(Clone::clone)
    );
    assert_eq!(cluster.workers(), Workers::Hosts);
    assert_eq!(cluster.start_method(), None);
    assert_eq!((cluster.cpu_count(), cluster.available_cpus()), (3, 3));
    assert_eq!(cluster.hosts(), [(near, 2), (far, 1)]);
}

#[test]
fn no_host_is_this_machine_with_its_cpus() {
    let _g = guard();
    let cluster = ClusterContext::builder().build().unwrap();
    let [(host, slots)] = cluster.hosts() else {
        panic!("{:?}", cluster.hosts());
    };
    assert!(host.is_local());
    assert_eq!(*slots, mp_proc::available_cpus());
    assert_eq!(
        cluster.workers(),
        Workers::Processes(mp_proc::get_start_method())
    );
    assert!(cluster.address().to_string().starts_with("127.0.0.1:"));
}

/// The block where the action of the manager started by process `pid`
/// counts the trips.
fn trips_block(pid: u32) -> String {
    format!("mp-it-cluster-barrier-trips-{pid}")
}

fn trips(block: &mp_proc::SharedMemory) -> u32 {
    let mut n = [0; 4];
    block.read_at(0, &mut n).unwrap();
    u32::from_le_bytes(n)
}

/// The action, in the manager: one more trip in the block of the process
/// that started it (a plain `fn()`).
fn count_trip() {
    let test = mp_proc::parent_process().expect("the manager has a parent");
    let block = mp_proc::SharedMemory::attach(&trips_block(test.pid())).unwrap();
    let n = trips(&block) + 1;
    block.write_at(0, &n.to_le_bytes()).unwrap();
}

/// Each party: after each trip the action ran exactly once more, before
/// any party went through.
fn party<C: Context>((barrier, block): (C::Barrier, String)) {
    let block = mp_proc::SharedMemory::attach(&block).unwrap();
    barrier.wait().unwrap();
    assert_eq!(trips(&block), 1, "the action ran once, before this party");
    barrier.wait().unwrap();
    assert_eq!(trips(&block), 2, "and once more at the second trip");
}

/// What `test_barrier_action` checks, where a cluster runs the action: in
/// its manager, once per trip, before any party goes through.
fn a_barrier_action_runs_in_the_manager_once_per_trip(method: StartMethod) {
    let _g = guard();
    let block = mp_proc::SharedMemory::create(Some(&trips_block(std::process::id())), 4).unwrap();
    let cluster = local(method);
    let barrier = cluster
        .barrier_with_action(4, count_trip, Some(mp_conformance::proc::HANG_GUARD))
        .unwrap();
    assert_eq!(barrier.parties(), 4);
    let args = (barrier.clone(), block.name().to_owned());
    let mut ps: Vec<mp_proc::Process> = (1..4)
        .map(|_| cluster.process(party::<ClusterContext>, args.clone()))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    party::<ClusterContext>(args);
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(trips(&block), 2);
    assert!(!barrier.broken().unwrap());
    drop(barrier);
    block.unlink().unwrap();
}

/// mp-pool's conformance suite over a cluster of local hosts (its workers
/// are this machine's processes: `Workers::Processes`). Pools over hosts on
/// the remote path (`Workers::Hosts`) are mp-pool's `hosts` tests and
/// `cluster_hosts`.
mod pool_conformance {
    mp_conformance::pool_conformance_tests!(
        super::local(mp_proc::StartMethod::Spawn),
        mp_testkit::guard()
    );
}

/// A host that is a network namespace (`ip netns exec`, root only): its
/// processes reach the manager, which listens on this machine's loopback
/// (the default), through their launcher's link; the namespace's own
/// loopback has no manager. The generic body gives what it gives here.
#[test]
fn a_host_in_another_namespace_reaches_a_loopback_manager_through_its_link() {
    let _g = guard();
    let Some(hosts) = mp_testkit::netns::hosts_or_skip(1) else {
        return;
    };
    let cluster = ClusterContext::builder()
        .host(hosts.launcher(0), 2)
        .build()
        .unwrap();
    assert!(cluster.address().to_string().starts_with("127.0.0.1:"));
    let (here, there) = (run(&mp_proc::get_context(StartMethod::Fork)), run(&cluster));
    assert_eq!(without_hosts(&there), without_hosts(&here));
    assert!(
        there.0.iter().all(|&(_, _, ns)| ns != my_netns()),
        "ran in the namespace"
    );
    // Without the forward, the manager's address dialled from the
    // namespace finds nothing.
    let (here, there) = mp_proc::pipe(true).unwrap();
    let mut p = mp_proc::Process::new(dial_unforwarded, (there, cluster.address().to_string()))
        .launcher(hosts.launcher(0));
    p.start().unwrap();
    let said: String = here.recv().unwrap();
    assert!(said.contains("Connection refused"), "{said}");
    assert_eq!(p.join().unwrap(), 0);
}

/// The manager's address dialled from a process whose launcher does not
/// forward it: what happened.
fn dial_unforwarded((report, address): (mp_proc::Connection, String)) {
    let address = mp_proc::connection::Address::Tcp(address.parse().unwrap());
    let key = mp_proc::current_process().authkey().to_vec();
    let said = match SyncManager::connect(&address, &key) {
        Ok(_) => "connected".to_owned(),
        Err(e) => e.to_string(),
    };
    report.send(&said).unwrap();
}

/// Processes fill the hosts that are up and have a free slot first (a
/// process holds its slot until it is dropped); a host that is down keeps
/// its slot, and a process placed there fails to start at once, saying the
/// host is down.
#[test]
fn slots_go_to_hosts_that_are_up_and_a_down_host_keeps_its_slot() {
    let _g = guard();
    let nowhere = Launcher::command(["/nonexistent/launcher-of-the-placement-test"]);
    let cluster = ClusterContext::builder()
        .host(nowhere.clone(), 1)
        .host(agent(), 1)
        .build()
        .unwrap();
    let mut first = cluster.process(drop::<()>, ());
    assert_eq!(first.get_launcher().host(), nowhere.host());
    assert!(first.start().is_err());
    assert!(nowhere.is_down());
    drop(first);
    // Up hosts first, whatever the turn.
    let mut held = cluster.process(drop::<()>, ());
    assert_eq!(held.get_launcher().host(), agent().host());
    // The only free slot is the down host's: the start fails at once.
    let mut refused = cluster.process(drop::<()>, ());
    assert_eq!(refused.get_launcher().host(), nowhere.host());
    match refused.start() {
        Err(mp_proc::Error::RemoteStart { reason, .. }) => {
            assert!(reason.contains("down"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    drop(refused);
    held.start().unwrap();
    assert_eq!(held.join().unwrap(), 0);
    drop(held);
    let next = cluster.process(drop::<()>, ());
    assert_eq!(next.get_launcher().host(), agent().host());
}
