//! The bootstrap variables under attack, across real processes: re-runs of
//! this very test binary (whose `probe` test is the "main" that must run).
//!
//! - A setuid-root copy of the binary, run by `nobody` with each variable set
//!   and hostile stdin, runs its main and nothing else, and refuses spawn,
//!   forkserver and the resource tracker while fork works (needs root: run as
//!   root, as the CI does, or set `MP_SKIP_SETUID_TEST=1` to skip it loudly).
//! - A bootstrap channel that is not what a parent sets up ends the process
//!   at once with a message on stderr and a non-zero exit code: never a
//!   target run, a file deleted, a spin or a wait forever.

// The probe talks to the test that runs it through its stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::rt::child::Bootstrap;
use crate::rt::helper::{ENV_ALL, ENV_CHILD, ENV_FORKSERVER, ENV_TRACKER};
use crate::wire::payload;
use crate::{Error, StartMethod, get_context, sys};

/// Selects the probe in a re-run: `main` (print the marker) or `secure` (also
/// try every start method and the resource tracker).
const PROBE: &str = "MP_PROC_TEST_PROBE";
const MAIN_RAN: &str = "probe: main ran";
const EVIL_RAN: &str = "probe: the attacker's function ran";
/// Only so that a spin or a wait forever shows as a failure, not a hang.
const DEADLINE: Duration = Duration::from_secs(60);
/// `nobody`.
const NOBODY: u32 = 65534;

/// What an attacker would like a privileged process to run before `main`.
fn evil(_: ()) {
    println!("{EVIL_RAN}");
    std::process::exit(42);
}

fn add((a, b): (u32, u32)) -> u32 {
    a + b
}

/// The re-run's main. Does nothing in a normal test run.
#[test]
fn probe() {
    let Some(mode) = std::env::var_os(PROBE) else {
        return;
    };
    println!("probe: AT_SECURE={}", at_secure());
    println!("{MAIN_RAN}");
    let left: Vec<&str> = ENV_ALL
        .iter()
        .copied()
        .filter(|v| std::env::var_os(v).is_some())
        .collect();
    println!("probe: bootstrap variables left: {left:?}");
    if mode != "secure" {
        return;
    }
    for method in StartMethod::ALL {
        match get_context(method)
            .spawn(add, (2, 3))
            .and_then(|h| h.join())
        {
            Ok(v) => println!("probe: {method}: ran, {v}"),
            Err(e) => println!(
                "probe: {method}: refused (secure execution error: {}): {e}",
                matches!(e, Error::SecureExecution { .. })
            ),
        }
    }
    match crate::SharedMemory::create(None, 1) {
        Ok(shm) => {
            let _ = shm.unlink();
            println!("probe: shared memory: created");
        }
        Err(e) => println!(
            "probe: shared memory: refused (secure execution error: {}): {e}",
            matches!(e, Error::SecureExecution { .. })
        ),
    }
}

/// `AT_SECURE` as the kernel passed it, read from `/proc/self/auxv` (not
/// through the code under test).
fn at_secure() -> u64 {
    const AT_SECURE: u64 = 23;
    let auxv = std::fs::read("/proc/self/auxv").expect("read /proc/self/auxv");
    let words: Vec<u64> = auxv
        .chunks_exact(8)
        .map(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")))
        .collect();
    words
        .chunks_exact(2)
        .find(|pair| pair[0] == AT_SECURE)
        .map(|pair| pair[1])
        .expect("AT_SECURE in the auxiliary vector")
}

/// A valid bootstrap for the executable at `exe` (a copy of this binary)
/// that runs `evil`: what an attacker who can read the binary can write.
fn crafted_bootstrap(exe: &Path) -> Vec<u8> {
    let meta = std::fs::metadata(exe).expect("stat the executable");
    let logger = mp_logging::get_logger();
    let boot = Bootstrap {
        name: "evil".to_owned(),
        identity: vec![1],
        daemon: false,
        authkey: vec![0; 32],
        parent_name: "MainProcess".to_owned(),
        parent_pid: 1,
        start_method: StartMethod::Fork,
        log_level: logger.level() as u8,
        log_stderr: false,
        log_propagate: false,
        fingerprint: (meta.dev(), meta.ino(), sys::image::fingerprint().2),
        runner: sys::image::offset_of(crate::wire::runners::process_runner::<()>() as usize),
        target: sys::image::offset_of(evil as fn(()) as usize),
        args: payload::encode(&()).expect("encode ()"),
        nfds: 0,
        fd_types: Vec::new(),
        has_result: false,
    };
    payload::encode(&boot).expect("encode the bootstrap")
}

/// A re-run of `exe` as the probe: no bootstrap variable of ours, `PROBE`
/// set to `mode`.
fn probe_command(exe: &Path, mode: &str) -> Command {
    // This module's path without the crate's name, as the harness names tests.
    let here = module_path!().split_once("::").map_or("", |(_, p)| p);
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        &format!("{here}::probe"),
        "--nocapture",
        "--test-threads=1",
    ])
    .env(PROBE, mode)
    .env("RUST_BACKTRACE", "0")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for var in ENV_ALL {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to its end. A process still running after [`DEADLINE`] is
/// killed and the test fails: that is a spin or a wait forever.
fn run(cmd: &mut Command) -> Output {
    let child = cmd.spawn().expect("start the re-run");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for the re-run"),
        Err(_) => {
            // Not reaped yet (the waiting thread has not returned), so the
            // pid is still this child's.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let out = rx.recv().expect("the waiting thread").expect("wait");
            panic!(
                "still running after {DEADLINE:?} (a spin or a wait forever); killed. \
                 stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in /dev/shm (what the resource tracker unlinks), removed on drop.
struct ShmFile(PathBuf);

impl ShmFile {
    fn new(tag: &str) -> ShmFile {
        let name = format!("mp-proc-test-{tag}-{}", std::process::id());
        let path = Path::new("/dev/shm").join(&name);
        std::fs::File::create(&path).expect("create a file in /dev/shm");
        ShmFile(path)
    }

    fn name(&self) -> String {
        self.0.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A pipe holding `bytes` then end of file: `(read end for the child, our
/// own copy of the read end)`.
fn pipe_with(bytes: &[u8]) -> (std::io::PipeReader, std::io::PipeReader) {
    let (r, mut w) = std::io::pipe().expect("pipe");
    w.write_all(bytes).expect("fill the pipe");
    drop(w);
    let ours = r.try_clone().expect("dup the read end");
    (r, ours)
}

// ---------------------------------------------------------------------------
// A setuid-root binary run by another user.
// ---------------------------------------------------------------------------

/// This process's effective uid, from /proc/self/status.
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("the Uid line of /proc/self/status")
}

/// Whether `dir` is on a mount without `nosuid`, per /proc/self/mountinfo.
fn suid_allowed(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let mut best: Option<(usize, bool)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let point = point.replace("\\040", " ");
        if dir.starts_with(&point) && best.is_none_or(|(len, _)| point.len() >= len) {
            best = Some((point.len(), !options.split(',').any(|o| o == "nosuid")));
        }
    }
    best.is_some_and(|(_, allowed)| allowed)
}

/// Whether `nobody` can reach files in `dir` (every ancestor searchable).
fn world_traversable(dir: &Path) -> bool {
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A fresh directory, reachable by `nobody`, on a filesystem that honours
/// the setuid bit; it holds the setuid copy and goes with it.
fn suid_dir() -> tempfile::TempDir {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let candidates = [
        Some(std::env::temp_dir()),
        Some(PathBuf::from("/var/tmp")),
        exe_dir,
    ];
    let mut tried = Vec::new();
    for base in candidates.into_iter().flatten() {
        let Ok(base) = base.canonicalize() else {
            continue;
        };
        let Ok(dir) = tempfile::Builder::new()
            .prefix("mp-suid-")
            .tempdir_in(&base)
        else {
            tried.push(format!("{}: cannot create a directory", base.display()));
            continue;
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 755");
        if !suid_allowed(dir.path()) {
            tried.push(format!("{}: mounted nosuid", base.display()));
        } else if !world_traversable(dir.path()) {
            tried.push(format!("{}: not reachable by nobody", base.display()));
        } else {
            return dir;
        }
    }
    panic!("no directory where a setuid binary can run: {tried:?}");
}

/// Everything the setuid run of one variable must show.
fn check_secure_run(var: &str, out: &Output) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let context = format!(
        "{var}: status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains(EVIL_RAN),
        "a function ran before main. {context}"
    );
    assert!(stdout.contains(MAIN_RAN), "main did not run. {context}");
    assert!(
        stdout.contains("probe: AT_SECURE=1"),
        "the binary did not run with AT_SECURE=1, so this proves nothing (setuid bit \
         not honoured: nosuid mount, no_new_privs?). {context}"
    );
    assert!(
        stdout.contains("probe: bootstrap variables left: []"),
        "{var} is still in the environment, for children to see. {context}"
    );
    assert!(out.status.success(), "the probe failed. {context}");
    assert!(
        stdout.contains("probe: fork: ran, 5"),
        "fork must work. {context}"
    );
    for what in ["spawn", "forkserver", "shared memory"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("probe: {what}: ")))
            .unwrap_or_else(|| panic!("no line for {what}. {context}"));
        assert!(
            line.contains("refused (secure execution error: true)")
                && line.contains("setuid/setcap process (secure execution)"),
            "{what} must be refused with Error::SecureExecution: {line:?}. {context}"
        );
    }
}

#[test]
fn a_setuid_binary_run_by_another_user_ignores_the_bootstrap_variables() {
    if effective_uid() != 0 {
        if std::env::var_os("MP_SKIP_SETUID_TEST").is_some() {
            eprintln!("SKIPPED: the setuid test needs root (MP_SKIP_SETUID_TEST is set)");
            return;
        }
        panic!(
            "the setuid test needs root (to install a setuid-root binary and run it as \
             nobody); run the tests as root, as the CI does, or set MP_SKIP_SETUID_TEST=1"
        );
    }
    let dir = suid_dir();
    let copy = dir.path().join("mp-proc-suid-probe");
    // Copied by `cp`, not by this process: a child that another test thread
    // forks meanwhile would inherit our writable descriptor of the copy, and
    // exec'ing the copy would then fail with ETXTBSY.
    let status = Command::new("cp")
        .arg(std::env::current_exe().expect("current_exe"))
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp failed: {status}");
    std::os::unix::fs::chown(&copy, Some(0), Some(0)).expect("chown root:root");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).expect("chmod 4755");

    // As nobody (std clears the supplementary groups when root sets a uid).
    let as_nobody = |mode: &str| {
        let mut cmd = probe_command(&copy, mode);
        cmd.uid(NOBODY).gid(NOBODY);
        cmd
    };

    // __MP_PROC_CHILD=0 with a valid bootstrap of an attacker's function on stdin.
    let boot_path = dir.path().join("bootstrap");
    std::fs::write(&boot_path, crafted_bootstrap(&copy)).expect("write the bootstrap");
    let boot = std::fs::File::open(&boot_path).expect("open the bootstrap");
    let ours = boot.try_clone().expect("dup");
    let out = run(as_nobody("secure").env(ENV_CHILD, "0").stdin(boot));
    check_secure_run(ENV_CHILD, &out);
    let mut ours = ours;
    assert_eq!(
        ours.stream_position().expect("offset"),
        0,
        "the bootstrap on stdin was read"
    );

    // __MP_PROC_TRACKER=0 with `R<name>` on stdin: the name must survive.
    let shm = ShmFile::new("suid");
    let line = format!("R{}\n", shm.name());
    let (theirs, mut ours) = pipe_with(line.as_bytes());
    let out = run(as_nobody("secure").env(ENV_TRACKER, "0").stdin(theirs));
    check_secure_run(ENV_TRACKER, &out);
    assert!(shm.0.exists(), "{} was deleted", shm.0.display());
    let mut left = Vec::new();
    ours.read_to_end(&mut left).expect("read the pipe");
    assert_eq!(
        left,
        line.as_bytes(),
        "the tracker's line on stdin was read"
    );

    // __MP_PROC_FORKSERVER=0 with /dev/null on stdin: no spin, main runs.
    let out = run(as_nobody("secure")
        .env(ENV_FORKSERVER, "0")
        .stdin(Stdio::null()));
    check_secure_run(ENV_FORKSERVER, &out);
}

// ---------------------------------------------------------------------------
// A bootstrap channel that is not what a parent sets up.
// ---------------------------------------------------------------------------

/// Runs this binary with `var=value` and `stdin`, and checks that it ended at
/// once, non-zero, with a message naming `expect`, and that main did not run.
fn ends_at_once(var: &str, value: &str, stdin: Stdio, expect: &str) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let out = run(probe_command(&exe, "main").env(var, value).stdin(stdin));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let context = format!(
        "{var}={value}: status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stdout.contains(EVIL_RAN), "the target ran. {context}");
    assert!(!stdout.contains(MAIN_RAN), "main ran. {context}");
    assert!(!out.status.success(), "exit status 0. {context}");
    assert!(
        stderr.contains("mp-proc: ") && stderr.contains(expect),
        "no clear message (expected {expect:?}). {context}"
    );
    out
}

#[test]
fn a_child_bootstrap_that_is_a_regular_file_ends_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bootstrap");
    let exe = std::env::current_exe().expect("current_exe");
    std::fs::write(&path, crafted_bootstrap(&exe)).expect("write");
    let file = std::fs::File::open(&path).expect("open");
    ends_at_once(ENV_CHILD, "0", file.into(), "a regular file");
}

#[test]
fn a_child_bootstrap_on_dev_null_ends_the_process() {
    ends_at_once(ENV_CHILD, "0", Stdio::null(), "a character device");
}

#[test]
fn a_child_bootstrap_on_a_pipe_of_garbage_ends_the_process() {
    let (theirs, _ours) = pipe_with(b"\xff\xff\xff\xffgarbage");
    ends_at_once(ENV_CHILD, "0", theirs.into(), "a pipe");
}

/// A sealed memfd holding `bytes`: the kind of descriptor a parent makes.
fn sealed(bytes: &[u8]) -> Stdio {
    sys::spawn::sealed_memfd(c"mp-proc-test", bytes)
        .expect("sealed memfd")
        .into()
}

#[test]
fn an_empty_child_bootstrap_ends_the_process() {
    ends_at_once(ENV_CHILD, "0", sealed(b""), "the bootstrap is empty");
}

#[test]
fn a_child_bootstrap_of_garbage_ends_the_process() {
    ends_at_once(
        ENV_CHILD,
        "0",
        sealed(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xffgarbage"),
        "the bootstrap does not decode",
    );
}

#[test]
fn a_child_bootstrap_without_its_alive_pipe_ends_the_process() {
    let exe = std::env::current_exe().expect("current_exe");
    // fd 1, where the alive pipe belongs, is the test's stdout pipe's write end.
    ends_at_once(
        ENV_CHILD,
        "0",
        sealed(&crafted_bootstrap(&exe)),
        "the alive pipe",
    );
}

#[test]
fn a_child_bootstrap_on_a_closed_fd_ends_the_process() {
    ends_at_once(ENV_CHILD, "987", Stdio::null(), "fd 987 is not open");
}

#[test]
fn a_bootstrap_variable_that_is_not_a_descriptor_ends_the_process() {
    for var in ENV_ALL {
        ends_at_once(var, "three", Stdio::null(), "not a descriptor number");
    }
}

#[test]
fn a_fork_server_on_dev_null_ends_the_process() {
    ends_at_once(ENV_FORKSERVER, "0", Stdio::null(), "a character device");
}

#[test]
fn a_fork_server_on_a_pipe_ends_the_process() {
    let (theirs, _ours) = pipe_with(b"F");
    ends_at_once(ENV_FORKSERVER, "0", theirs.into(), "a pipe");
}

#[test]
fn a_resource_tracker_on_a_regular_file_ends_the_process_and_deletes_nothing() {
    let shm = ShmFile::new("file");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lines");
    std::fs::write(&path, format!("R{}\n", shm.name())).expect("write");
    let file = std::fs::File::open(&path).expect("open");
    ends_at_once(ENV_TRACKER, "0", file.into(), "a regular file");
    assert!(shm.0.exists(), "{} was deleted", shm.0.display());
}

#[test]
fn a_resource_tracker_fed_garbage_ends_the_process_and_deletes_nothing() {
    let shm = ShmFile::new("garbage");
    let cases: Vec<Vec<u8>> = vec![
        format!("R{}\nXjunk\n", shm.name()).into_bytes(),
        format!("R{}\nR../../etc/passwd\n", shm.name()).into_bytes(),
        [
            format!("R{}\nR", shm.name()).into_bytes(),
            vec![b'a'; 50_000],
        ]
        .concat(),
        format!("R{}\nR\n", shm.name()).into_bytes(),
    ];
    for bytes in cases {
        let (theirs, _ours) = pipe_with(&bytes);
        ends_at_once(ENV_TRACKER, "0", theirs.into(), "resource tracker");
        assert!(shm.0.exists(), "{} was deleted", shm.0.display());
    }
}

#[test]
fn two_bootstrap_variables_at_once_end_the_process() {
    let exe = std::env::current_exe().expect("current_exe");
    let out = run(probe_command(&exe, "main")
        .env(ENV_TRACKER, "0")
        .env(ENV_FORKSERVER, "0")
        .stdin(Stdio::null()));
    let stderr = text(&out.stderr);
    assert!(!text(&out.stdout).contains(MAIN_RAN), "main ran: {stderr}");
    assert!(!out.status.success());
    assert!(stderr.contains("more than one"), "{stderr}");
}
