//! When the network fails: a pool over two hosts reached by ssh (network
//! namespaces of mp-testkit, a real sshd in each) whose link to one host
//! is cut with `ip link set ... down` mid-work, and a coordinator
//! SIGKILLed while a host is cut off. Root only: each test skips, printing
//! why, otherwise (`cargo xtask test` installs what they need as root).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use mp_manager::{BarrierProxy, ClusterContext, EventProxy, QueueProxy};
use mp_pool::Pool;
use mp_proc::{Context, Launcher, StartMethod};
use mp_testkit::netns::{self, Hosts};
use mp_testkit::sshd::Sshd;
use mp_testkit::{guard, wait_until};

use crate::cluster::my_netns;

/// The keep-alive bound of these tests' links.
const BOUND: Duration = Duration::from_secs(2);
/// Long past any bound: only turns a hang into a failure.
const NEVER: Duration = Duration::from_secs(120);

/// Two hosts, each reached by ssh to its own sshd.
struct Setup {
    sshd: [Sshd; 2],
    hosts: Hosts,
}

fn setup_or_skip() -> Option<Setup> {
    let hosts = netns::hosts_or_skip(2)?;
    let start = |i| {
        Sshd::start(&hosts, i)
            .map_err(|skip| eprintln!("skipped: {skip}"))
            .ok()
    };
    let sshd = [start(0)?, start(1)?];
    Some(Setup { sshd, hosts })
}

impl Setup {
    fn launcher(&self, i: usize) -> Launcher {
        self.sshd[i].launcher().keepalive(BOUND)
    }

    /// A slot on each host; the manager on the parent's first address.
    fn cluster(&self) -> ClusterContext {
        ClusterContext::builder()
            .listen(SocketAddr::new(self.hosts.parent_addr(0), 0))
            .host(self.launcher(0), 1)
            .host(self.launcher(1), 1)
            .build()
            .unwrap()
    }

    /// The network namespace (its inode) of host `i`.
    fn netns(&self, i: usize) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.hosts.name(i)))
            .unwrap()
            .ino()
    }
}

/// Reports where it runs, waits for `go`, and returns the square and
/// where it ran.
fn report_then_wait((q, go, x): (QueueProxy<(u64, u64)>, EventProxy, u64)) -> (u64, u64) {
    q.put((x, my_netns())).unwrap();
    go.wait(None).unwrap();
    (x * x, my_netns())
}

fn square(x: u64) -> u64 {
    x * x
}

/// Waits for the other party, then says where it ran (`None`: the
/// barrier broke, no other party came in time).
fn meet((b, _): (BarrierProxy, u64)) -> Option<u64> {
    b.wait().ok().map(|_| my_netns())
}

/// A link cut while both hosts' workers are in a task: the task on the cut
/// host fails (the worker counts as killed, within the keep-alive bound),
/// never a hang; what ran on the other host succeeds; the pool goes on
/// with the other host while the link is down, and the cut host rejoins
/// once it is back: two tasks that must run at once (a barrier of two)
/// run, one on each host.
#[test]
fn a_link_cut_mid_map_fails_its_tasks_and_the_host_rejoins_when_it_is_back() {
    let _g = guard();
    let Some(setup) = setup_or_skip() else {
        return;
    };
    let cluster = setup.cluster();
    let (ns0, ns1) = (setup.netns(0), setup.netns(1));
    let pool = Pool::builder().context(cluster.clone()).build().unwrap();
    assert_eq!(pool.processes(), 2);
    let want: Vec<u64> = (0..200).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..200).unwrap(), want);

    let q = cluster.queue::<(u64, u64)>().unwrap();
    let go = cluster.event().unwrap();
    let results: Vec<_> = (0..6u64)
        .map(|x| pool.apply_async(report_then_wait, (q.clone(), go.clone(), x)))
        .collect();
    let started = [q.get().unwrap(), q.get().unwrap()];
    let places: BTreeSet<u64> = started.iter().map(|&(_, ns)| ns).collect();
    assert_eq!(places, BTreeSet::from([ns0, ns1]), "a task in each host");
    let cut = started.iter().find(|&&(_, ns)| ns == ns0).unwrap().0;
    setup.hosts.link_down(0).unwrap();
    go.set().unwrap();
    let mut failed = Vec::new();
    for (x, r) in results.into_iter().enumerate() {
        match r.get_timeout(NEVER) {
            Ok((square, ns)) => {
                assert_eq!(square, (x * x) as u64);
                assert_eq!(ns, ns1, "{x} ran on the host that was cut off");
            }
            Err(mp_pool::Error::WorkerDied { .. }) => failed.push(x as u64),
            Err(e) => panic!("{x}: {e:?}"),
        }
    }
    assert!(
        failed.contains(&cut),
        "the cut task {cut} failed: {failed:?}"
    );
    assert!(cluster.hosts()[0].0.is_down());
    // Down: the pool goes on with the other host.
    assert_eq!(pool.map(square, 0..200).unwrap(), want);

    setup.hosts.link_up(0).unwrap();
    // Two tasks that must run at once (tried until the pool has its second
    // worker: tasks handed to the one worker it had wait behind each other).
    let mut met = BTreeSet::new();
    let rejoined = wait_until(NEVER, || {
        let b = cluster
            .manager()
            .barrier(2, Some(Duration::from_secs(1)))
            .unwrap();
        let at = pool.map_chunked(meet, [(b.clone(), 0), (b, 1)], 1).unwrap();
        met = at.into_iter().flatten().collect();
        met.len() == 2
    });
    assert!(rejoined, "the cut host never rejoined");
    assert_eq!(met, BTreeSet::from([ns0, ns1]));
    assert!(!cluster.hosts()[0].0.is_down());
}

/// The words of host 0's ssh launcher and host 1's, for the coordinator.
const HOSTS_VAR: &str = "MP_TEST_PARTITION_SSH";

/// A coordinator (a re-run of this binary): a cluster of the two ssh
/// hosts with a process on each that waits forever; prints their pids,
/// then waits to be killed.
pub(crate) fn coordinator(method: StartMethod) {
    let words = std::env::var(HOSTS_VAR).unwrap();
    let mut hosts = words.split('\u{1e}').map(|host| {
        let mut words = host.split('\u{1f}');
        let l = Launcher::ssh(words.next().unwrap());
        words.fold(l, Launcher::ssh_option).keepalive(BOUND)
    });
    let cluster = ClusterContext::builder()
        .host(hosts.next().unwrap(), 1)
        .host(hosts.next().unwrap(), 1)
        .start_method(method)
        .build()
        .unwrap();
    let q = cluster.queue::<u32>().unwrap();
    let never = cluster.event().unwrap();
    let _waiting: Vec<_> = (0..2)
        .map(|_| {
            let mut p = cluster.process(report_pid_then_wait, (q.clone(), never.clone()));
            p.start().unwrap();
            p
        })
        .collect();
    for _ in 0..2 {
        println!("far {}", q.get().unwrap());
    }
    println!("ready");
    loop {
        std::thread::park();
    }
}

fn report_pid_then_wait((q, never): (QueueProxy<u32>, EventProxy)) {
    q.put(std::process::id()).unwrap();
    let _ = never.wait(None);
}

/// A child killed (and reaped) when dropped, so that a failed test leaves
/// no coordinator behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Processes running this test binary in network namespace `ns`.
fn ours_in(ns: u64) -> Vec<u32> {
    let me = std::env::current_exe().unwrap();
    let want = format!("net:[{ns}]");
    mp_testkit::processes()
        .into_iter()
        .map(|p| p.0)
        .filter(|pid| {
            let link = |what: &str| std::fs::read_link(format!("/proc/{pid}/{what}")).ok();
            link("exe").as_deref() == Some(me.as_path())
                && link("ns/net").is_some_and(|n| n.to_string_lossy() == want)
        })
        .collect()
}

mp_testkit::for_each_method!(a_coordinator_killed_while_a_host_is_cut_off_leaves_nothing_behind);

/// The coordinator is SIGKILLed after host 1's link was cut: host 0's
/// processes end as their ssh session ends, host 1's when its agent hears
/// nothing for the keep-alive bound; the coordinator's own children (its
/// manager, the ssh clients) end too. Afterwards no process of the job is
/// left on any host.
fn a_coordinator_killed_while_a_host_is_cut_off_leaves_nothing_behind(method: StartMethod) {
    let _g = guard();
    let Some(setup) = setup_or_skip() else {
        return;
    };
    let ssh = |i: usize| {
        std::iter::once(setup.sshd[i].host())
            .chain(setup.sshd[i].options())
            .collect::<Vec<_>>()
            .join("\u{1f}")
    };
    let mut coordinator = Killed(
        mp_testkit::scenario_command(&format!("coordinator:{method}"))
            .env(HOSTS_VAR, format!("{}\u{1e}{}", ssh(0), ssh(1)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let coordinator = &mut coordinator.0;
    let mut far = Vec::new();
    let mut said = Vec::new();
    for line in BufReader::new(coordinator.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        said.push(line.clone());
        // The harness's "test ... " may start the line.
        if let Some((_, pid)) = line.split_once("far ") {
            far.push(pid.parse::<u32>().unwrap());
        }
        if line.ends_with("ready") {
            break;
        }
    }
    assert_eq!(far.len(), 2, "the coordinator's workers started: {said:?}");
    let (ns0, ns1) = (setup.netns(0), setup.netns(1));
    assert_eq!(ours_in(ns0).len(), 2, "an agent and a worker on host 0");
    assert_eq!(ours_in(ns1).len(), 2, "an agent and a worker on host 1");
    let children = mp_testkit::descendants(coordinator.id());
    assert!(!children.is_empty());
    setup.hosts.link_down(1).unwrap();
    coordinator.kill().unwrap();
    assert!(coordinator.wait().unwrap().code().is_none());
    for pid in far.iter().chain(&children) {
        assert!(
            wait_until(NEVER, || !mp_testkit::exists(*pid)),
            "{pid} outlived its coordinator"
        );
    }
    for ns in [ns0, ns1] {
        assert!(wait_until(NEVER, || ours_in(ns).is_empty()), "left in {ns}");
    }
    setup.hosts.link_up(1).unwrap();
}
