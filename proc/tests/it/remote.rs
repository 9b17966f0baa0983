//! Processes started by a [`Launcher`] through the remote path (an agent
//! that the launcher's command runs, talking over its standard input and
//! output) on this machine: an empty prefix, and a prefix that runs the
//! program through another one (`env`), as `ip netns exec` or `srun` do.
//! The same tests across network namespaces and ssh live with the cluster
//! tests.

use std::time::Duration;

use mp_proc::{Connection, Error, Event, Launcher, Process, pipe};
use mp_testkit::guard;

fn launchers() -> [Launcher; 2] {
    [
        Launcher::command(Vec::<&str>::new()),
        Launcher::command(["env", "MP_REMOTE_TEST=1", "MP_REMOTE_EXPECT=1"]),
    ]
}

fn exit_with(code: i32) {
    mp_proc::exit(code);
}

#[test]
fn the_exit_code_comes_back() {
    let _g = guard();
    for launcher in launchers() {
        for code in [0, 3] {
            let mut p = Process::new(exit_with, code).launcher(launcher.clone());
            p.start().unwrap();
            assert!(p.pid().is_some());
            assert_eq!(p.join().unwrap(), code, "{launcher}");
            assert_eq!(p.exitcode(), Some(code));
        }
    }
}

fn echo(conn: Connection) {
    assert_eq!(
        std::env::var("MP_REMOTE_TEST").ok().as_deref(),
        std::env::var("MP_REMOTE_EXPECT").ok().as_deref()
    );
    while let Ok(message) = conn.recv::<Vec<u8>>() {
        conn.send(&message).unwrap();
    }
}

#[test]
fn a_connection_crosses_both_ways_and_its_end_is_seen() {
    let _g = guard();
    for launcher in launchers() {
        echo_round_trips(&launcher, &[0, 1, 1000, 200_000, 3 << 20]);
    }
}

/// Messages of `sizes` bytes to a process started by `launcher` and back
/// (it echoes them), then end of file: it returns, with exit code 0.
pub(crate) fn echo_round_trips(launcher: &Launcher, sizes: &[usize]) {
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(echo, there).launcher(launcher.clone());
    p.start().unwrap();
    for &size in sizes {
        let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        here.send(&message).unwrap();
        assert_eq!(
            here.recv::<Vec<u8>>().unwrap(),
            message,
            "{launcher}: {size} bytes"
        );
    }
    drop(here); // the process reads end of file and returns
    assert_eq!(p.join().unwrap(), 0, "{launcher}");
}

fn wait_on(conn: Connection) {
    let _ = conn.send(&"ready");
    let _ = conn.recv_bytes();
}

#[test]
fn terminate_and_kill_reach_the_process() {
    let _g = guard();
    for launcher in launchers() {
        for (signal, how) in [(libc::SIGTERM, "terminate"), (libc::SIGKILL, "kill")] {
            let (here, there) = pipe(true).unwrap();
            let mut p = Process::new(wait_on, there).launcher(launcher.clone());
            p.start().unwrap();
            assert_eq!(here.recv::<String>().unwrap(), "ready");
            assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
            if how == "kill" {
                p.kill().unwrap()
            } else {
                p.terminate().unwrap()
            }
            assert_eq!(p.join().unwrap(), -signal, "{launcher} {how}");
            assert!(matches!(p.terminate(), Err(Error::AlreadyExited { .. })));
        }
    }
}

fn never(_: Event) {}

#[test]
fn a_handle_of_this_machine_cannot_cross() {
    let _g = guard();
    let mut p = Process::new(never, Event::new().unwrap()).launcher(launchers()[0].clone());
    match p.start() {
        Err(Error::NotAcrossHosts { kind, .. }) => assert!(kind.contains("lock"), "{kind}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_launcher_that_fails_is_a_clear_error() {
    let _g = guard();
    for (launcher, says) in [
        (Launcher::command(["false"]), "ended with exit code 1"),
        (Launcher::command(["/nonexistent/launcher"]), "cannot run"),
        (
            Launcher::command(["sh", "-c", "head -c 1 >/dev/null; exit 7"]),
            "ended with exit code 7",
        ),
    ] {
        let mut p = Process::new(exit_with, 0).launcher(launcher.clone());
        match p.start() {
            Err(e @ Error::RemoteStart { .. }) => {
                assert!(e.to_string().contains(says), "{launcher}: {e}")
            }
            other => panic!("{launcher}: {other:?}"),
        }
    }
}

#[test]
fn a_launcher_that_never_answers_times_out() {
    let _g = guard();
    let launcher =
        Launcher::command(["sh", "-c", "exec sleep 600"]).start_timeout(Duration::from_millis(100));
    let mut p = Process::new(exit_with, 0).launcher(launcher);
    match p.start() {
        Err(e @ Error::RemoteStart { .. }) => assert!(e.to_string().contains("no answer"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A copy of this executable elsewhere (another path, as on another host)
/// is the same build and runs the process; a copy whose build ID differs
/// is refused with a message that says so.
#[test]
fn the_same_build_is_checked_not_the_same_file() {
    let _g = guard();
    let exe = std::fs::read("/proc/self/exe").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same");
    let other = dir.path().join("other");
    std::fs::write(&same, &exe).unwrap();
    let mut patched = exe.clone();
    // The build ID follows the "GNU\0" name of its note (name size 4, ID
    // size 20, type NT_GNU_BUILD_ID = 3): flip its first byte.
    let at = patched
        .windows(12)
        .position(|w| w == [4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0])
        .map(|i| i + 16)
        .expect("a build-id note");
    assert_eq!(&patched[at - 4..at], b"GNU\0");
    patched[at] ^= 0xff;
    std::fs::write(&other, &patched).unwrap();
    for path in [&same, &other] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let via = |path: &std::path::Path| {
        Launcher::command([
            "sh",
            "-c",
            &format!("exec '{}' --mp-proc-remote", path.display()),
        ])
    };
    let mut p = Process::new(exit_with, 5).launcher(via(&same));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 5);
    let mut p = Process::new(exit_with, 5).launcher(via(&other));
    match p.start() {
        Err(e @ Error::RemoteStart { .. }) => {
            assert!(e.to_string().contains("not the parent's build"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

/// When the agent itself dies (killed, or its ssh session hung up before
/// it could end its process), the process on its host ends with it; the
/// parent sees the link lost and its end of the connection closed.
#[test]
fn a_killed_agent_takes_its_process_with_it() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("agent.pid");
    // The shell writes its pid, then becomes the agent (exec keeps the pid).
    let script = format!("echo $$ > '{}'; exec \"$@\"", pidfile.display());
    let launcher = Launcher::command(["sh", "-c", &script, "sh"]);
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(wait_on, there).launcher(launcher);
    p.start().unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "ready");
    let far = p.pid().unwrap();
    assert!(mp_testkit::exists(far));
    let agent: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(agent as u32, far);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent), nix::sys::signal::SIGKILL).unwrap();
    assert!(
        here.recv::<u8>().is_err(),
        "the connection ends with the link"
    );
    p.join().unwrap();
    assert!(
        mp_testkit::wait_until(Duration::from_secs(30), || !mp_testkit::exists(far)),
        "the process {far} outlived its agent"
    );
}

fn never_reads(conn: Connection) {
    let _ = conn.send(&"ready");
    loop {
        std::thread::park();
    }
}

/// A far process that does not read its connection while the parent
/// writes into it fills the link; `kill()` then cannot go over the link,
/// and ends the launcher instead: the process ends with its link, and
/// nothing waits forever.
#[test]
fn kill_ends_a_process_whose_link_is_held_up() {
    let _g = guard();
    for launcher in launchers() {
        let (here, there) = pipe(true).unwrap();
        let mut p = Process::new(never_reads, there).launcher(launcher.clone());
        p.start().unwrap();
        assert_eq!(here.recv::<String>().unwrap(), "ready");
        let far = p.pid().unwrap();
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                // Far more than the sockets and the link's pipes hold.
                let chunk = vec![7u8; 1 << 20];
                while here.send_bytes(&chunk).is_ok() {}
            });
            // Killed through the link or, held up, through the launcher.
            p.kill().unwrap();
            assert_eq!(p.join().unwrap(), -9, "{launcher}");
            writer.join().unwrap();
        });
        assert!(
            mp_testkit::wait_until(Duration::from_secs(30), || !mp_testkit::exists(far)),
            "{launcher}: the process {far} outlived its link"
        );
    }
}

/// The start timeout covers the whole start, writing the bootstrap
/// included: a launcher that never reads its input does not hold `start()`
/// however large the arguments.
#[test]
fn a_launcher_that_never_reads_times_out_with_large_arguments() {
    let _g = guard();
    fn take(_: Vec<u8>) {}
    // Not the launcher of the test above: a host whose start failed is down
    // for a while, and a start there fails at once.
    let launcher = Launcher::command(["sh", "-c", "exec sleep 600", "never-reads"])
        .start_timeout(Duration::from_millis(100));
    let mut p = Process::new(take, vec![1u8; 4 << 20]).launcher(launcher);
    match p.start() {
        Err(e @ Error::RemoteStart { .. }) => assert!(e.to_string().contains("no answer"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A copy of the program started by a tool that grants privileges (sudo,
/// pkexec, doas) with the agent's argument runs its own `main`, not an
/// agent that would obey its standard input.
#[test]
fn a_program_started_by_sudo_is_never_an_agent() {
    let _g = guard();
    let run = |env: Option<(&str, &str)>| {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.arg("--mp-proc-remote").stdin(std::process::Stdio::null());
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        String::from_utf8_lossy(&c.output().unwrap().stderr).into_owned()
    };
    // Without: an agent, which finds no bootstrap on its input.
    assert!(run(None).contains("agent: the parent closed the link"));
    for var in ["SUDO_UID", "PKEXEC_UID", "DOAS_USER"] {
        let said = run(Some((var, "1000")));
        assert!(!said.contains("agent:"), "{var}: {said}");
    }
}

/// The authkey travels on the link only: neither the agent's nor the far
/// process's command line or environment holds it (another user can read
/// those in /proc), raw or in hex.
#[test]
fn the_authkey_is_on_no_command_line_and_in_no_environment() {
    let _g = guard();
    let key = mp_proc::current_process().authkey().to_vec();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    for launcher in launchers() {
        let (here, there) = pipe(true).unwrap();
        let mut p = Process::new(wait_on, there).launcher(launcher.clone());
        p.start().unwrap();
        assert_eq!(here.recv::<String>().unwrap(), "ready");
        let far = p.pid().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{far}/stat")).unwrap();
        // The parent pid is the fourth field, after the command in parentheses.
        let agent: u32 = stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        for pid in [far, agent] {
            for file in ["cmdline", "environ"] {
                let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
                let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
                assert!(
                    !holds(&key) && !holds(hex.as_bytes()),
                    "{launcher}: {pid}'s {file}"
                );
            }
        }
        let cmdline = std::fs::read(format!("/proc/{agent}/cmdline")).unwrap();
        assert!(cmdline.ends_with(b"\0--mp-proc-remote\0"), "{launcher}");
        drop(here);
        assert_eq!(p.join().unwrap(), 0);
    }
}
