//! The hosts harness, for real: network namespaces joined to the root
//! namespace, and nothing left behind. Each test skips (printing why) when
//! not root.

use std::io::Read;
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};

use mp_testkit::netns::{self, Hosts};

mod common;
use common::*;

#[test]
fn a_process_in_a_namespace_reaches_the_parent_on_its_link() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    for i in 0..2 {
        let listener = TcpListener::bind((hosts.parent_addr(i), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = format!("echo hi from {i} >/dev/tcp/{}/{port}", hosts.parent_addr(i));
        let mut argv: Vec<String> = hosts.exec_prefix(i).into();
        argv.extend(["bash".into(), "-c".into(), script]);
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let (mut conn, from) = listener.accept().unwrap();
        assert_eq!(
            from.ip(),
            hosts.addr(i),
            "the connection came from the namespace"
        );
        let mut said = String::new();
        conn.read_to_string(&mut said).unwrap();
        assert_eq!(said, format!("hi from {i}\n"));
    }
}

#[test]
fn a_namespace_has_its_own_address_only() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    assert_ne!(hosts.name(0), hosts.name(1));
    let in0 = stdout(&run("ip", &["-n", hosts.name(0), "-o", "addr", "show"]));
    let root = stdout(&run("ip", &["-o", "addr", "show"]));
    let addr = |ip: std::net::IpAddr| format!("{ip}/30");
    assert!(has_word(&in0, &addr(hosts.addr(0))), "{in0}");
    assert!(!has_word(&in0, &addr(hosts.addr(1))), "{in0}");
    assert!(!has_word(&in0, &addr(hosts.parent_addr(0))), "{in0}");
    assert!(has_word(&root, &addr(hosts.parent_addr(0))), "{root}");
    assert!(!has_word(&root, &addr(hosts.addr(0))), "{root}");
    // Each link has a subnet of its own.
    assert_ne!(hosts.addr(0), hosts.addr(1));
    let route = stdout(&run("ip", &["-n", hosts.name(0), "route", "show"]));
    assert!(
        route.contains(&format!("default via {}", hosts.parent_addr(0))),
        "{route}"
    );
}

#[test]
fn link_down_cuts_the_host_off_and_link_up_brings_it_back() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(1) else {
        return;
    };
    let carrier = || {
        let out = stdout(&run(
            "ip",
            &["-n", hosts.name(0), "-o", "link", "show", "eth0"],
        ));
        out.contains("LOWER_UP")
    };
    assert!(carrier());
    hosts.link_down(0).unwrap();
    assert!(mp_testkit::wait_until(LIMIT, || !carrier()));
    hosts.link_up(0).unwrap();
    assert!(mp_testkit::wait_until(LIMIT, carrier));
    let listener = TcpListener::bind((hosts.parent_addr(0), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!("echo >/dev/tcp/{}/{port}", hosts.parent_addr(0));
    let out = run(
        "ip",
        &["netns", "exec", hosts.name(0), "bash", "-c", &script],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(listener.accept().unwrap().1.ip(), hosts.addr(0));
}

#[test]
fn dropping_the_hosts_removes_namespaces_links_and_their_processes() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    let names = [hosts.name(0).to_owned(), hosts.name(1).to_owned()];
    let before = netns_and_links();
    for name in &names {
        assert!(has_word(&before, name), "{name} in {before}");
    }
    // A process left running in the namespace (not our child: its shell
    // exits, so it is nobody's zombie).
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            &names[0],
            "sh",
            "-c",
            "sleep 1000 >/dev/null 2>&1 & echo $!",
        ],
    );
    let left: u32 = stdout(&out).trim().parse().unwrap();
    assert!(mp_testkit::exists(left));
    drop(hosts);
    let after = netns_and_links();
    for name in &names {
        assert!(!has_word(&after, name), "{name} still in {after}");
    }
    assert!(mp_testkit::wait_until(LIMIT, || !mp_testkit::exists(left)));
}

#[test]
fn leftovers_of_a_dead_test_process_are_removed() {
    let _g = mp_testkit::guard();
    if netns::hosts_or_skip(0).is_none() {
        return;
    }
    // A pid no process has: what a SIGKILLed run leaves behind.
    let dead = (1..4_194_304u32)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let name = format!("mpt{dead}x0h0");
    assert!(run("ip", &["netns", "add", &name]).status.success());
    let veth = [
        "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
    ];
    assert!(run("ip", &veth).status.success());
    assert!(has_word(&netns_and_links(), &name));
    let hosts = netns::hosts_or_skip(1).unwrap();
    assert!(!has_word(&netns_and_links(), &name));
    // Those of a live process (this one) stay.
    assert!(has_word(&netns_and_links(), hosts.name(0)));
}

#[test]
fn without_root_the_hosts_skip_with_the_reason() {
    let _g = mp_testkit::guard();
    if run("id", &["-u"]).stdout.trim_ascii() != b"0" {
        let skip = Hosts::new(1).unwrap_err();
        assert!(skip.reason.starts_with("not root"), "{skip}");
        assert!(netns::hosts_or_skip(1).is_none());
        return;
    }
    // As root: this test again, in this test binary run as nobody.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "without_root_the_hosts_skip_with_the_reason"])
        .args(["--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped: not root"), "{err}");
    assert!(stdout(&out).contains("1 passed"), "{out:?}");
}

#[test]
fn pids_lists_the_processes_of_its_namespace_only_and_subnet_holds_both_ends() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    assert_eq!(hosts.pids(0).unwrap(), Vec::<u32>::new());
    // A process left running in namespace 0 (its shell exits: nobody's
    // zombie); the hosts' drop kills it.
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            hosts.name(0),
            "sh",
            "-c",
            "sleep 1000 >/dev/null 2>&1 & echo $!",
        ],
    );
    let left: u32 = stdout(&out).trim().parse().unwrap();
    assert_eq!(hosts.pids(0).unwrap(), vec![left]);
    assert_eq!(hosts.pids(1).unwrap(), Vec::<u32>::new());
    for i in 0..2 {
        let subnet = hosts.subnet(i);
        let (net, len) = subnet.split_once('/').unwrap();
        assert_eq!(len, "30");
        let net: std::net::Ipv4Addr = net.parse().unwrap();
        let ends = [u32::from(net) + 1, u32::from(net) + 2]
            .map(|a| IpAddr::from(std::net::Ipv4Addr::from(a)));
        assert_eq!(ends, [hosts.parent_addr(i), hosts.addr(i)], "{subnet}");
    }
    assert_ne!(hosts.subnet(0), hosts.subnet(1));
}
