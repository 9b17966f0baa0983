//! The mp workspace's test and benchmark helpers (not published): the
//! guard every integration test holds (no zombie, no leaked descriptor, no
//! leaked shared memory), process-table queries, scenario re-runs of a test
//! binary, values that refuse to encode or decode, in [`netns`] and [`sshd`]
//! hosts on one machine (network namespaces, a real sshd in each), in
//! [`mpi`] a real Open MPI `mpirun` placing copies in them, and in
//! [`bench`] what the
//! benchmarks share.

#![allow(missing_docs, missing_debug_implementations)]

pub mod bench;
pub mod corpus;
mod drip;
pub mod mpi;
pub mod netns;
pub mod sshd;
pub use drip::Dripper;

use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use mp_proc::{Process, StartMethod};

/// Instantiates a test body `fn(StartMethod)` once per start method:
/// `fork::name`, `spawn::name` and `forkserver::name`.
#[macro_export]
macro_rules! for_each_method {
    ($($name:ident),* $(,)?) => {
        mod fork {
            $( #[test] fn $name() { super::$name(mp_proc::StartMethod::Fork) } )*
        }
        mod spawn {
            $( #[test] fn $name() { super::$name(mp_proc::StartMethod::Spawn) } )*
        }
        mod forkserver {
            $( #[test] fn $name() { super::$name(mp_proc::StartMethod::Forkserver) } )*
        }
    };
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by every test: tests of one binary run one at a time (under
/// `cargo test`; nextest runs each in its own process anyway), and on drop it
/// checks that the test left no zombie and no descriptor behind.
pub struct Guard {
    _serial: MutexGuard<'static, ()>,
    fds: Vec<String>,
}

fn noop(_: ()) {}

/// Takes the test lock and records the open descriptors. It first starts one
/// child with fork and one with forkserver, so that the process-wide helpers
/// (the alive pipe, the fork server's socket, the resource tracker, the
/// sharer of tickets) exist before the count.
pub fn guard() -> Guard {
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for method in [StartMethod::Fork, StartMethod::Forkserver] {
        let mut p = Process::new(noop, ()).start_method(method);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    }
    // And the resource tracker.
    mp_proc::SharedMemory::create(None, 1)
        .unwrap()
        .unlink()
        .unwrap();
    // And the sharer (handles sent as tickets): a ticket issued and redeemed.
    {
        let lock = mp_proc::Lock::new().unwrap();
        let bytes = mp_proc::codec::encode(&lock).unwrap();
        let _: mp_proc::Lock = mp_proc::codec::decode(&bytes).unwrap();
    }
    Guard {
        _serial: serial,
        fds: quiet_fds(),
    }
}

/// The open descriptors, counted while no host probe of mp-proc runs (an
/// earlier test's down host may be tried in the background).
fn quiet_fds() -> Vec<String> {
    let _quiet = mp_proc::plumbing::hold_host_probes();
    open_fds()
}

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        assert_eq!(
            zombies(),
            Vec::<u32>::new(),
            "the test left zombie children"
        );
        assert_eq!(
            our_shm(std::process::id()),
            Vec::<String>::new(),
            "the test left shared memory"
        );
        let now = quiet_fds();
        assert_eq!(
            now.len(),
            self.fds.len(),
            "descriptors leaked: before {:?}, after {:?}",
            self.fds,
            now
        );
    }
}

/// The descriptors open in this process, as `fd -> target` strings.
pub fn open_fds() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(entry.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !target.starts_with("/proc/") {
            out.push(format!(
                "{}->{}",
                entry.file_name().to_string_lossy(),
                target
            ));
        }
    }
    out.sort();
    out
}

/// Every descendant of `pid` (children, theirs, ...).
///
/// ```
/// let mine = mp_testkit::descendants(std::process::id());
/// assert!(!mine.contains(&std::process::id()));
/// ```
pub fn descendants(pid: u32) -> Vec<u32> {
    let table = processes();
    let mut out = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for &(p, pp, _) in &table {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                parents.push(p);
            }
        }
    }
    out
}

/// `(pid, ppid, state)` of every process on the machine.
pub fn processes() -> Vec<(u32, u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state));
    }
    out
}

/// This process's zombie children.
pub fn zombies() -> Vec<u32> {
    let me = std::process::id();
    processes()
        .into_iter()
        .filter(|&(_, ppid, s)| ppid == me && s == 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Whether process `pid` exists (and is not a zombie).
pub fn exists(pid: u32) -> bool {
    processes()
        .into_iter()
        .any(|(p, _, s)| p == pid && s != 'Z')
}

/// Env var that selects a scenario in a re-run of this test binary.
pub const SCENARIO: &str = "MP_TEST_SCENARIO";

/// In a re-run made by [`scenario`]: the scenario asked for, `what` or
/// `what:method` (fork when no method is given). `None` in a normal run,
/// where the dispatching `scenarios::scenario` test does nothing.
pub fn requested_scenario() -> Option<(String, StartMethod)> {
    let name = std::env::var(SCENARIO).ok()?;
    let (what, method) = name.split_once(':').unwrap_or((&name, "fork"));
    Some((what.to_owned(), method.parse().expect("a start method")))
}

/// Runs the `scenarios::scenario` test of this binary in a child process with
/// `SCENARIO=name`, and returns what it printed.
pub fn scenario(name: &str) -> Output {
    let out = scenario_output(name);
    assert!(
        out.status.success(),
        "scenario {name} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// As [`scenario`], for a scenario that is meant to fail or die.
pub fn scenario_output(name: &str) -> Output {
    scenario_command(name)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The command that runs the `scenarios::scenario` test of this binary
/// with `SCENARIO=name`, for a test that talks to it while it runs.
///
/// ```no_run
/// let child = mp_testkit::scenario_command("coordinator:fork")
///     .stdout(std::process::Stdio::piped())
///     .spawn()
///     .unwrap();
/// ```
pub fn scenario_command(name: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "scenarios::scenario",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(SCENARIO, name)
    .env("RUST_BACKTRACE", "0");
    c
}

/// The log records (lines that start with `[`) in a scenario's stderr.
pub fn records(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

/// Serializes to an error.
pub struct Unserializable;

impl serde::Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

/// Serializes fine and refuses to deserialize.
pub struct Undecodable;

impl serde::Serialize for Undecodable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> serde::Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "this value refuses to be deserialized",
        ))
    }
}

/// The `/dev/shm` entries made up by process `pid` (`psm_<pid>_...`).
pub fn our_shm(pid: u32) -> Vec<String> {
    let prefix = format!("psm_{pid}_");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks `ready` until it is true (`true`) or `limit` has passed (`false`),
/// yielding between checks: a test waiting for a state it cannot be told
/// of (a process gone from `/proc`, a count settled). The limit only turns
/// a bug into a failure instead of a hang; it is never a timing assertion.
pub fn wait_until(limit: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now().checked_add(limit);
    loop {
        if ready() {
            return true;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return false;
        }
        std::thread::yield_now();
    }
}

/// This process's (soft, hard) limit on open descriptors.
pub fn descriptor_limits() -> (u64, u64) {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit")
}

/// Sets this process's soft limit on open descriptors (at most the hard
/// one): a test that runs a process out of descriptors on purpose.
pub fn limit_descriptors(soft: u64) {
    use nix::sys::resource::{Resource, setrlimit};
    let (_, hard) = descriptor_limits();
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard).expect("setrlimit");
}
