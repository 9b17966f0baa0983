//! `ClusterContext`: the conformance suite and a generic body on a cluster
//! whose hosts are this machine (`Launcher::local()`), under every start
//! method; its listener, its build errors, its hosts in turn, its end.

use mp_manager::{ClusterContext, Error, SyncManager};
use mp_proc::{
    BarrierLike, Context, EventLike, Launcher, ProcessLike, QueueLike, StartMethod, ValueLike,
    Workers,
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

mp_testkit::for_each_method!(
    a_generic_body_runs_unchanged_on_a_cluster,
    the_last_clone_dropped_ends_the_manager,
    a_barrier_action_runs_in_the_manager_once_per_trip,
);

#[allow(clippy::type_complexity)] // a worker's arguments are one tuple
fn worker<C: Context>((q, go, total, id): (C::Queue<(u32, u64)>, C::Event, C::Value<u64>, u32)) {
    go.wait(None).unwrap();
    let sum: u64 = (0..1000u64).map(|x| x * u64::from(id)).sum();
    total.update(|t| *t += sum).unwrap();
    q.put((id, sum)).unwrap();
}

/// The generic body: four workers wait for `go`, report on a
/// queue and add to a shared value.
fn run<C: Context>(ctx: &C) -> (Vec<(u32, u64)>, u64) {
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
    let mut out: Vec<(u32, u64)> = (0..4).map(|_| q.get().unwrap()).collect();
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

fn the_last_clone_dropped_ends_the_manager(method: StartMethod) {
    let _g = guard();
    let cluster = local(method);
    let children = mp_proc::active_children();
    let [server] = &children[..] else {
        panic!("one child, the manager: {children:?}");
    };
    let server = server.pid();
    let other = cluster.clone();
    let q = other.queue::<u32>().unwrap();
    drop(cluster);
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1, "a clone keeps the manager");
    assert!(mp_testkit::exists(server));
    drop(other);
    assert!(mp_proc::active_children().is_empty());
    assert!(!mp_testkit::exists(server), "the manager ended");
    assert!(q.put(2).is_err(), "a proxy outliving its cluster fails");
    drop(q);
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
