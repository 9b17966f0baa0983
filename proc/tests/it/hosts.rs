//! Processes on other hosts for real: network namespaces of this machine
//! (mp-testkit's `netns`), reached by both launchers a cluster uses, `ip
//! netns exec` (`Launcher::command`) and ssh to a real sshd in the namespace
//! (`Launcher::ssh`). Each test skips, printing why, when not root (or when
//! OpenSSH is missing: `cargo xtask test` installs it as root).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use mp_proc::connection::{Address, Client, Listener};
use mp_proc::{Connection, Error, Launcher, Process, pipe};
use mp_testkit::guard;
use mp_testkit::netns::{self, Hosts};
use mp_testkit::sshd::Sshd;

/// Only a guard against a hang, never a synchronisation.
const LIMIT: Duration = Duration::from_secs(60);

/// Two hosts: host 0 reached through `ip netns exec`, host 1 through ssh
/// to the sshd in its namespace. `None` (printed) when this machine cannot.
struct Cluster {
    // Dropped first: the sshd before the namespaces it runs in.
    sshd: Sshd,
    hosts: Hosts,
}

impl Cluster {
    fn or_skip() -> Option<Cluster> {
        let hosts = netns::hosts_or_skip(2)?;
        match Sshd::start(&hosts, 1) {
            Ok(sshd) => Some(Cluster { sshd, hosts }),
            Err(skip) if skip.reason.contains("not found") => {
                eprintln!("skipped: {skip}");
                None
            }
            Err(other) => panic!("sshd did not start: {other}"),
        }
    }

    /// Each launcher with the index of the host it starts processes on.
    fn launchers(&self) -> [(Launcher, usize); 2] {
        [(self.hosts.launcher(0), 0), (self.sshd.launcher(), 1)]
    }
}

/// The children of this process that are still there.
fn children() -> Vec<u32> {
    let me = std::process::id();
    mp_testkit::processes()
        .into_iter()
        .filter(|&(_, parent, _)| parent == me)
        .map(|(pid, _, _)| pid)
        .collect()
}

fn exit_with(code: i32) {
    mp_proc::exit(code);
}

#[test]
fn the_exit_code_comes_back_from_a_namespace() {
    let _g = guard();
    let Some(cluster) = Cluster::or_skip() else {
        return;
    };
    for (launcher, _) in cluster.launchers() {
        for code in [0, 3] {
            let mut p = Process::new(exit_with, code).launcher(launcher.clone());
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), code, "{launcher}");
            assert_eq!(p.exitcode(), Some(code), "{launcher}");
        }
    }
}

#[test]
fn a_connection_crosses_into_a_namespace_and_back_with_large_messages() {
    let _g = guard();
    let Some(cluster) = Cluster::or_skip() else {
        return;
    };
    for (launcher, _) in cluster.launchers() {
        crate::remote::echo_round_trips(&launcher, &[0, 1, 200_000, 3 << 20]);
    }
}

/// What a process sees of its machine: its hostname, its network
/// namespace (`net:[inode]`) and its network interfaces.
type Seen = (String, String, Vec<String>);

fn seen() -> Seen {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    // /proc/self/net/dev: two header lines, then "  eth0: 123 ...".
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    let mut interfaces: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .collect();
    interfaces.sort();
    (
        hostname.trim().to_owned(),
        ns.display().to_string(),
        interfaces,
    )
}

fn report(conn: Connection) {
    conn.send(&seen()).unwrap();
}

#[test]
fn the_process_runs_in_the_namespace_of_its_host() {
    let _g = guard();
    let Some(cluster) = Cluster::or_skip() else {
        return;
    };
    let (hostname, root_ns, root_interfaces) = seen();
    for (launcher, i) in cluster.launchers() {
        let (here, there) = pipe(true).unwrap();
        let mut p = Process::new(report, there).launcher(launcher.clone());
        p.start().unwrap();
        let (their_hostname, their_ns, interfaces) = here.recv::<Seen>().unwrap();
        assert_eq!(p.join().unwrap(), 0, "{launcher}");
        // The same machine (no UTS namespace) ...
        assert_eq!(their_hostname, hostname, "{launcher}");
        // ... but the network of host i: its namespace (the inode `ip
        // netns` pins) and its interfaces only.
        let pinned = std::fs::metadata(format!("/run/netns/{}", cluster.hosts.name(i)))
            .unwrap()
            .ino();
        assert_eq!(their_ns, format!("net:[{pinned}]"), "{launcher}");
        assert_ne!(their_ns, root_ns, "{launcher}");
        assert_eq!(interfaces, ["eth0", "lo"], "{launcher}");
        assert!(
            root_interfaces.iter().any(|n| n == cluster.hosts.name(i)),
            "the root end of host {i}'s link is in {root_interfaces:?}"
        );
    }
}

fn wait_on(conn: Connection) {
    let _ = conn.send(&"ready");
    let _ = conn.recv_bytes();
}

#[test]
fn terminate_reaches_a_process_in_a_namespace() {
    let _g = guard();
    let Some(cluster) = Cluster::or_skip() else {
        return;
    };
    for (launcher, _) in cluster.launchers() {
        let (here, there) = pipe(true).unwrap();
        let mut p = Process::new(wait_on, there).launcher(launcher.clone());
        p.start().unwrap();
        assert_eq!(here.recv::<String>().unwrap(), "ready", "{launcher}");
        assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None, "{launcher}");
        p.terminate().unwrap();
        assert_eq!(p.join().unwrap(), -libc::SIGTERM, "{launcher}");
        assert!(
            matches!(p.terminate(), Err(Error::AlreadyExited { .. })),
            "{launcher}"
        );
    }
}

/// ssh to a host with no sshd (refused at once) and to a host cut off (its
/// link down: no answer, so the start timeout ends it): `start()` fails
/// with `Error::RemoteStart`, and no process is left.
#[test]
fn ssh_to_a_host_that_cannot_be_reached_fails_the_start() {
    let _g = guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    hosts.link_down(1).unwrap();
    // (host, start timeout, whether the reason is the timeout)
    for (i, timeout, times_out) in [(0, LIMIT, false), (1, Duration::from_secs(2), true)] {
        let launcher = Launcher::ssh(&format!("root@{}", hosts.addr(i)))
            .ssh_option("-F")
            .ssh_option("/dev/null")
            .ssh_option("-o")
            .ssh_option("UserKnownHostsFile=/dev/null")
            .ssh_option("-o")
            .ssh_option("StrictHostKeyChecking=yes")
            .start_timeout(timeout);
        // This process's helpers (a forkserver, a tracker) may be there.
        let before = children();
        let mut p = Process::new(exit_with, 0).launcher(launcher.clone());
        match p.start() {
            Err(Error::RemoteStart { host, reason, .. }) => {
                assert_eq!(host, format!("root@{}", hosts.addr(i)));
                assert_eq!(
                    reason.contains("no answer"),
                    times_out,
                    "{launcher}: {reason}"
                );
            }
            other => panic!("{launcher}: {other:?}"),
        }
        assert_eq!(p.exitcode(), None, "{launcher}");
        let left = || {
            let mut now = children();
            now.retain(|pid| !before.contains(pid));
            now
        };
        assert!(
            mp_testkit::wait_until(LIMIT, || left().is_empty()),
            "{launcher}: {:?} left",
            left()
        );
    }
}

/// Receives a connection over `conn` and answers with what happened.
fn receive_a_handle(conn: Connection) {
    for _ in 0..2 {
        let said = match conn.recv::<Connection>() {
            Ok(_) => "received".to_owned(),
            Err(e) => e.to_string(),
        };
        conn.send(&said).unwrap();
    }
}

/// A handle sent after start to a process on another host cannot reach it:
/// a clear error there, and the link goes on. On a connection the handle's
/// descriptor is attached to the message and the link carries only bytes
/// (`DescriptorsMissing`); where it travels as a ticket (a manager's queue
/// over TCP) the ticket says it was issued on another host
/// (`NotAcrossHosts`, see the cluster tests).
#[test]
fn a_handle_sent_after_start_to_another_host_is_a_clear_error() {
    let _g = guard();
    let Some(cluster) = Cluster::or_skip() else {
        return;
    };
    for (launcher, _) in cluster.launchers() {
        let (here, there) = pipe(true).unwrap();
        let mut p = Process::new(receive_a_handle, there).launcher(launcher.clone());
        p.start().unwrap();
        let (a, _b) = pipe(true).unwrap();
        here.send(&a).unwrap();
        let said: String = here.recv().unwrap();
        assert!(
            said.contains("the message claims 1 descriptor(s) but 0 came with it"),
            "{launcher}: {said}"
        );
        // The link goes on.
        here.send(&a).unwrap();
        assert!(here.recv::<String>().unwrap().contains("descriptor"));
        assert_eq!(p.join().unwrap(), 0);
    }
}

/// Connects to each address with this process's key, says hello and
/// reports the answer, or the error.
fn dial((report, addresses): (Connection, Vec<String>)) {
    let key = mp_proc::current_process().authkey().to_vec();
    for a in addresses {
        let address: Address = a.parse().unwrap();
        let said = match Client::connect(&address, Some(&key)) {
            Ok(conn) => {
                conn.send(&"hello".to_owned()).unwrap();
                format!("ok: {}", conn.recv::<String>().unwrap())
            }
            Err(e) => format!("error: {e}"),
        };
        report.send(&said).unwrap();
    }
}

/// A TCP listener on 127.0.0.1 and an abstract Unix socket of the root
/// namespace, both forwarded: a process in a namespace reaches them through
/// its link, though its own loopback and its namespace's abstract sockets
/// are not these. Without the forward the same connect is refused.
#[test]
fn forwarded_listeners_of_the_root_namespace_are_reached_from_a_namespace() {
    let _g = guard();
    let Some(cluster) = Cluster::or_skip() else {
        return;
    };
    let key = mp_proc::current_process().authkey().to_vec();
    for (launcher, _) in cluster.launchers() {
        let tcp = Listener::bind("127.0.0.1:0".parse().unwrap(), Some(&key)).unwrap();
        let name = format!("mp-it-hosts-forward-{}", std::process::id());
        let unix = Listener::bind(Address::Abstract(name), Some(&key)).unwrap();
        let forwarded = launcher
            .clone()
            .forward(tcp.address().clone())
            .forward(unix.address().clone());
        let (here, there) = pipe(true).unwrap();
        let addresses = vec![tcp.address().to_string(), unix.address().to_string()];
        let mut p = Process::new(dial, (there, addresses)).launcher(forwarded);
        p.start().unwrap();
        for (l, answer) in [(&tcp, "tcp"), (&unix, "unix")] {
            let conn = l.accept().unwrap();
            assert_eq!(conn.recv::<String>().unwrap(), "hello", "{launcher}");
            conn.send(&answer.to_owned()).unwrap();
            assert_eq!(
                here.recv::<String>().unwrap(),
                format!("ok: {answer}"),
                "{launcher}"
            );
        }
        assert_eq!(p.join().unwrap(), 0, "{launcher}");
        // Not forwarded: the namespace's own loopback has no such listener.
        let (here, there) = pipe(true).unwrap();
        let addresses = vec![tcp.address().to_string()];
        let mut p = Process::new(dial, (there, addresses)).launcher(launcher.clone());
        p.start().unwrap();
        let said: String = here.recv().unwrap();
        assert!(said.contains("Connection refused"), "{launcher}: {said}");
        assert_eq!(p.join().unwrap(), 0, "{launcher}");
    }
}
