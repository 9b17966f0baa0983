//! A process's link that goes silent (a partition, a frozen host), on this
//! machine: the launcher is a relay (a small Python program between the
//! parent and the agent) that the test freezes, or tells to drop one
//! direction's bytes. The keep-alives notice it on both sides within the
//! launcher's bound; the host is then down until a start there succeeds.
//! The same across network namespaces, with `ip link set ... down` under
//! ssh, lives with the cluster's pool tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mp_proc::{Connection, Error, Launcher, Process, pipe};
use mp_testkit::{exists, guard, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The keep-alive bound of these tests' links.
const BOUND: Duration = Duration::from_secs(1);
/// Long past any bound: only turns a hang into a failure.
const NEVER: Duration = Duration::from_secs(60);

/// Runs the agent's command, relaying its standard input and output. It
/// writes "<its pid> <the agent's pid>" to the file named first. SIGUSR1:
/// drop what the parent sends from now on; SIGUSR2: hold back what the
/// agent sends (never forwarded). SIGSTOP freezes both.
const RELAY: &str = r#"
import os, signal, subprocess, sys
mode = {"drop_down": False, "hold_up": False}
signal.signal(signal.SIGUSR1, lambda *_: mode.update(drop_down=True))
signal.signal(signal.SIGUSR2, lambda *_: mode.update(hold_up=True))
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {p.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
up = p.stdout.fileno()
fds = [0, up]
held = []
while up in fds:
    import select
    ready, _, _ = select.select(fds, [], [])
    for fd in ready:
        data = os.read(fd, 65536)
        if not data:
            fds.remove(fd)
            if fd == 0:
                p.stdin.close()
        elif fd == 0:
            if not mode["drop_down"]:
                os.write(p.stdin.fileno(), data)
        elif mode["hold_up"]:
            held.append(data)
        else:
            os.write(1, data)
p.wait()
"#;

/// A relay launcher whose pids land in `dir`/`name`, with this file's
/// keep-alive bound.
fn relay(dir: &Path, name: &str) -> (Launcher, PathBuf) {
    let script = dir.join("relay.py");
    std::fs::write(&script, RELAY).unwrap();
    let pids = dir.join(name);
    let launcher = Launcher::command(["python3".as_ref(), script.as_os_str(), pids.as_os_str()])
        .keepalive(BOUND);
    (launcher, pids)
}

/// The relay's pid and the agent's, once the relay has written them.
fn pids(file: &Path) -> (i32, u32) {
    assert!(wait_until(NEVER, || file.exists()), "no relay started");
    let text = std::fs::read_to_string(file).unwrap();
    let mut words = text.split_whitespace().map(|w| w.parse::<u32>().unwrap());
    let (relay, agent) = (words.next().unwrap(), words.next().unwrap());
    (relay as i32, agent)
}

/// Answers "ready", then echoes what comes, until its connection ends.
fn echo(conn: Connection) {
    let _ = conn.send(&"ready".to_string());
    while let Ok(message) = conn.recv::<String>() {
        if conn.send(&message).is_err() {
            return;
        }
    }
}

fn python_or_skip() -> bool {
    let there = std::process::Command::new("python3")
        .arg("-c")
        .arg("")
        .status()
        .is_ok_and(|s| s.success());
    if !there {
        eprintln!("skipped: no python3 to relay the link");
    }
    there
}

/// A link silent both ways: the parent counts the process as killed
/// within the bound, never delivers what was held up, and the agent (its
/// relay killed) ends the process. The host is then down: a start there
/// fails at once, until the prober's start succeeds.
#[test]
fn a_silent_link_is_lost_and_its_host_is_down_until_a_start_succeeds() {
    let _g = guard();
    if !python_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (launcher, file) = relay(dir.path(), "frozen");
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(echo, there).launcher(launcher.clone());
    p.start().unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "ready");
    let (relay_pid, agent) = pids(&file);
    let far = p.pid().unwrap();
    // What the process answers from now on is held back, then the relay
    // freezes: the link is silent both ways.
    kill(Pid::from_raw(relay_pid), Signal::SIGUSR2).unwrap();
    here.send(&"late".to_string()).unwrap();
    kill(Pid::from_raw(relay_pid), Signal::SIGSTOP).unwrap();
    assert_eq!(p.join().unwrap(), -9, "counted as killed");
    assert!(launcher.is_down());
    assert!(
        here.recv::<String>().is_err(),
        "the connection ends with the link, and the held-back answer never arrives"
    );
    for pid in [agent, far] {
        assert!(
            wait_until(NEVER, || !exists(pid)),
            "{pid} outlived its lost link"
        );
    }
    // Down: a start fails at once, saying so; a prober tries the host
    // (a new relay, not frozen) in the background.
    let mut q = Process::new(echo, pipe(true).unwrap().1).launcher(launcher.clone());
    match q.start() {
        Err(Error::RemoteStart { reason, .. }) => {
            assert!(reason.contains("down"), "{reason}");
            assert!(reason.contains("silent"), "{reason}");
        }
        other => panic!("a start on a down host: {other:?}"),
    }
    assert!(
        wait_until(NEVER, || !launcher.is_down()),
        "the host did not come back up"
    );
    let (here, there) = pipe(true).unwrap();
    let mut r = Process::new(echo, there).launcher(launcher);
    r.start().unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "ready");
    here.send(&"again".to_string()).unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "again");
    drop(here);
    assert_eq!(r.join().unwrap(), 0);
}

/// Only the parent's side falls silent (its bytes dropped on the way): the
/// agent notices within the bound, ends the process and exits; the
/// parent sees its process end without an exit code.
#[test]
fn a_silent_parent_makes_the_agent_end_its_process() {
    let _g = guard();
    if !python_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (launcher, file) = relay(dir.path(), "deaf");
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(echo, there).launcher(launcher);
    p.start().unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "ready");
    let (relay_pid, agent) = pids(&file);
    let far = p.pid().unwrap();
    kill(Pid::from_raw(relay_pid), Signal::SIGUSR1).unwrap();
    for pid in [far, agent] {
        assert!(
            wait_until(NEVER, || !exists(pid)),
            "{pid} outlived the silence"
        );
    }
    let code = p.join().unwrap();
    assert_ne!(code, 0, "no exit code came: the process counts as lost");
    assert!(here.recv::<String>().is_err());
}

/// A link whose bound is zero has no keep-alives: a frozen relay is not
/// noticed, and `kill()` still ends the process (by its launcher).
#[test]
fn keepalives_can_be_turned_off() {
    let _g = guard();
    if !python_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (launcher, file) = relay(dir.path(), "off");
    let launcher = launcher.keepalive(Duration::ZERO);
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(echo, there).launcher(launcher.clone());
    p.start().unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "ready");
    let (relay_pid, _) = pids(&file);
    kill(Pid::from_raw(relay_pid), Signal::SIGSTOP).unwrap();
    // Four bounds of the other tests: still running, still up.
    assert_eq!(p.join_timeout(BOUND * 4).unwrap(), None);
    assert!(!launcher.is_down());
    kill(Pid::from_raw(relay_pid), Signal::SIGCONT).unwrap();
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
}
