//! A real sshd in a network namespace, for real: it runs commands inside
//! the namespace, refuses a wrong key on either side, and leaves nothing
//! behind. Each test skips (printing why) when not root or when OpenSSH is
//! missing.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mp_testkit::netns::{self, Hosts};
use mp_testkit::sshd::Sshd;

mod common;
use common::*;

/// Starts sshd, or `None` (printed) when this machine cannot: not root, or
/// OpenSSH missing. As root with OpenSSH installed it must start.
fn sshd_or_skip(hosts: &Hosts, i: usize) -> Option<Sshd> {
    match Sshd::start(hosts, i) {
        Ok(sshd) => Some(sshd),
        Err(skip) if skip.reason.contains("not found") => {
            eprintln!("skipped: {skip}");
            None
        }
        Err(other) => panic!("sshd did not start: {other}"),
    }
}

/// The directory of sshd's files (that of the client key in its options).
fn sshd_dir(sshd: &Sshd) -> PathBuf {
    let options = sshd.options();
    let key = options.iter().position(|o| o == "-i").unwrap() + 1;
    Path::new(&options[key]).parent().unwrap().to_path_buf()
}

fn ssh(options: &[String], host: &str, command: &str) -> Output {
    Command::new("ssh")
        .args(["-T", "-o", "BatchMode=yes"])
        .args(options)
        .arg("--")
        .arg(host)
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn ssh_runs_commands_inside_the_namespace() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    let Some(sshd) = sshd_or_skip(&hosts, 1) else {
        return;
    };
    assert_eq!(sshd.host(), format!("root@{}", hosts.addr(1)));
    let out = ssh(&sshd.options(), &sshd.host(), "ip -o addr show");
    assert!(out.status.success(), "{out:?}\nsshd: {:?}", sshd.log());
    let seen = stdout(&out);
    assert!(has_word(&seen, &format!("{}/30", hosts.addr(1))), "{seen}");
    assert!(!has_word(&seen, &format!("{}/30", hosts.addr(0))), "{seen}");
    assert!(
        !has_word(&seen, &format!("{}/30", hosts.parent_addr(1))),
        "{seen}"
    );
    // The remote process's link to the parent: the root side of the link.
    let listener = TcpListener::bind((hosts.parent_addr(1), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!("bash -c 'echo >/dev/tcp/{}/{port}'", hosts.parent_addr(1));
    let out = ssh(&sshd.options(), &sshd.host(), &script);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(listener.accept().unwrap().1.ip(), hosts.addr(1));
}

#[test]
fn a_wrong_client_key_or_host_key_is_refused() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    let (Some(a), Some(b)) = (sshd_or_skip(&hosts, 0), sshd_or_skip(&hosts, 1)) else {
        return;
    };
    assert!(ssh(&a.options(), &a.host(), "true").status.success());
    // b's key is not in a's authorized_keys.
    let mut wrong_key = a.options();
    let key = wrong_key.iter().position(|o| o == "-i").unwrap() + 1;
    wrong_key[key] = sshd_dir(&b).join("client_key").display().to_string();
    let out = ssh(&wrong_key, &a.host(), "true");
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    // a's known_hosts does not hold b's host key: the client refuses b.
    let out = ssh(&a.options(), &b.host(), "true");
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Host key verification failed"), "{err}");
}

#[test]
fn dropping_sshd_kills_and_reaps_it_and_its_sessions_and_removes_its_files() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(1) else {
        return;
    };
    let Some(sshd) = sshd_or_skip(&hosts, 0) else {
        return;
    };
    let pid = sshd.pid();
    let dir = sshd_dir(&sshd);
    assert!(dir.is_dir());
    // A session running when sshd goes: its remote command (a shell that
    // becomes `sleep`) says its pid, then waits.
    let mut client = Command::new("ssh")
        .args(["-T", "-o", "BatchMode=yes"])
        .args(sshd.options())
        .arg("--")
        .arg(sshd.host())
        .arg("echo $$; exec sleep 1000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(client.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let session: u32 = line.trim().parse().unwrap();
    assert!(mp_testkit::exists(pid) && mp_testkit::exists(session));
    drop(sshd);
    assert!(!mp_testkit::exists(pid), "sshd is reaped");
    assert!(!dir.exists(), "{} is removed", dir.display());
    assert!(mp_testkit::wait_until(LIMIT, || !mp_testkit::exists(
        session
    )));
    // The client sees its session end.
    assert!(!client.wait().unwrap().success());
    drop(hosts);
}

/// A test that panics while it holds hosts and an sshd leaves nothing:
/// no namespace (`ip netns list`), no link, no sshd, no temp directory.
#[test]
fn a_panicking_test_leaves_no_namespace_link_sshd_or_files() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(1) else {
        return;
    };
    let Some(sshd) = sshd_or_skip(&hosts, 0) else {
        return;
    };
    let name = hosts.name(0).to_owned();
    let pid = sshd.pid();
    let dir = sshd_dir(&sshd);
    assert!(has_word(&netns_and_links(), &name));
    assert!(mp_testkit::exists(pid) && dir.is_dir());
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let (_sshd, _hosts) = (sshd, hosts);
        panic!("the test fails while it holds them");
    }));
    assert!(unwound.is_err());
    let names = stdout(&run("ip", &["netns", "list"]));
    assert!(!has_word(&names, &name), "{name} still in {names}");
    assert!(!has_word(&netns_and_links(), &name));
    assert!(!mp_testkit::exists(pid), "sshd {pid} is reaped");
    assert!(!dir.exists(), "{} is removed", dir.display());
}

/// The temp directory a killed run's sshd left is removed by the next
/// start; that of a live process (this one) stays.
#[test]
fn a_dead_runs_sshd_directory_is_removed_at_start() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(1) else {
        return;
    };
    // A pid no process has: what a SIGKILLed run leaves behind.
    let dead = (1..4_194_304u32)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let stale = std::env::temp_dir().join(format!("mptsshd{dead}x0"));
    std::fs::create_dir_all(stale.join("inside")).unwrap();
    let Some(sshd) = sshd_or_skip(&hosts, 0) else {
        let _ = std::fs::remove_dir_all(&stale);
        return;
    };
    assert!(!stale.exists(), "{} is removed", stale.display());
    assert!(sshd_dir(&sshd).is_dir());
}
