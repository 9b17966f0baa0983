//! An attacker's review of issue 16's runtime (forkserver preloads, the
//! parent sentinel, SIGINT held in the fork server): each test pins down a
//! promise that a mistake in user code, or a hostile child, must not break.
//! Cases that need a process whose fork server has not started yet run in a
//! re-run of this binary, selected by [`SCENARIO`].

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use mp_proc::{Connection, Process, StartMethod, pipe, set_forkserver_preload};
use mp_testkit::guard;

/// The env var that selects a scenario of this file in a re-run.
const SCENARIO: &str = "MP_TEST_RT_ATTACK";

/// Not a test of its own: the body of this file's scenarios, in a re-run.
#[test]
fn rt_attack_scenario() {
    let Ok(what) = std::env::var(SCENARIO) else {
        return;
    };
    match what.as_str() {
        "preload_starts_a_process" => preload_starts_a_process(),
        "forkserver_start_without_descriptors" => forkserver_start_without_descriptors(),
        other => panic!("unknown scenario {other}"),
    }
}

fn run(name: &str) -> Output {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rt_attack::rt_attack_scenario",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, name)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scenario {name} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn noop(_: ()) {}

/// What [`starts_a_process`] saw: 0 not run, 1 its start succeeded, 2 its
/// start was refused.
static PRELOAD_START: AtomicU8 = AtomicU8::new(0);

/// Whether this process's parent is a fork server (so that the test itself
/// never recurses past one nested server, with or without the fix).
fn parent_is_a_fork_server() -> bool {
    let ppid = std::os::unix::process::parent_id();
    std::fs::read(format!("/proc/{ppid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .any(|a| a == b"--multiprocessing-forkserver")
        })
        .unwrap_or(true)
}

/// A preload that starts a process under forkserver (as one that warms up
/// a cache with a pool of its own would).
fn starts_a_process() {
    if parent_is_a_fork_server() {
        return;
    }
    let mut p = Process::new(noop, ()).start_method(StartMethod::Forkserver);
    match p.start() {
        Ok(()) => {
            PRELOAD_START.store(1, Ordering::Relaxed);
            let _ = p.join();
        }
        Err(_) => PRELOAD_START.store(2, Ordering::Relaxed),
    }
}

fn report_preload_start(conn: Connection) {
    conn.send(&PRELOAD_START.load(Ordering::Relaxed)).unwrap();
}

fn preload_starts_a_process() {
    set_forkserver_preload(&[starts_a_process]).unwrap();
    let (here, there) = pipe(false).unwrap();
    let mut p = Process::new(report_preload_start, there).start_method(StartMethod::Forkserver);
    p.start().unwrap();
    let seen: u8 = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    println!("preload start: {seen}");
}

/// A preload function that starts a process under forkserver must not get
/// one: the fork server would start a fork server of its own, which runs
/// the same preloads, which start another, without end (a chain of
/// processes that ends only when the system refuses to fork). Its start is
/// refused with an error instead, and the server serves.
#[test]
fn a_preload_cannot_start_a_fork_server_of_its_own() {
    let _g = guard();
    let out = run("preload_starts_a_process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("preload start: 2"),
        "the preload's start was not refused:\n{stdout}"
    );
}

mp_testkit::for_each_method!(
    no_thread_of_a_child_blocks_or_ignores_sigint,
    a_childs_parent_sentinel_never_reaches_an_exec,
);

/// Whether the line `field:\t<hex mask>` of a `/proc/.../status` text has
/// SIGINT's bit.
fn has_sigint(status: &str, field: &str) -> bool {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    let mask = u64::from_str_radix(line[field.len()..].trim(), 16).unwrap();
    mask & (1 << (libc::SIGINT - 1)) != 0
}

/// `(blocked, ignored)` for SIGINT in the thread whose status this is.
fn sigint_of(status: &str) -> (bool, bool) {
    (has_sigint(status, "SigBlk:"), has_sigint(status, "SigIgn:"))
}

/// A child's report: SIGINT in its main thread, in a thread it starts, and
/// in a program it runs (each `(blocked, ignored)`).
fn report_sigint(conn: Connection) {
    let main = sigint_of(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    let thread = std::thread::spawn(|| {
        sigint_of(&std::fs::read_to_string("/proc/thread-self/status").unwrap())
    })
    .join()
    .unwrap();
    let out = Command::new("cat")
        .arg("/proc/self/status")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let exec = sigint_of(&String::from_utf8_lossy(&out.stdout));
    conn.send(&[main, thread, exec]).unwrap();
}

/// The fork server holds SIGINT blocked (so that Ctrl-C does not end it):
/// none of that reaches its children, their threads or the programs they
/// run, under any start method (a blocked SIGINT there would make Ctrl-C
/// and `Process::interrupt` do nothing).
fn no_thread_of_a_child_blocks_or_ignores_sigint(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(false).unwrap();
    let mut p = Process::new(report_sigint, there).start_method(method);
    p.start().unwrap();
    let seen: [(bool, bool); 3] = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(
        seen.map(|s| s.0),
        [false; 3],
        "blocked in [main, thread, exec]"
    );
    // Ignored only where this program ignores it (a runner may start the
    // tests with SIGINT ignored, which fork and spawn children inherit).
    let (_, ignored_here) =
        sigint_of(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    if !ignored_here {
        assert_eq!(
            seen.map(|s| s.1),
            [false; 3],
            "ignored in [main, thread, exec]"
        );
    }
}

/// A child's report: whether its parent sentinel closes on exec, and
/// whether a program it runs holds that pipe.
fn report_sentinel_on_exec(conn: Connection) {
    use std::os::fd::AsRawFd;
    let parent = mp_proc::parent_process().unwrap();
    let fd = parent.sentinel().unwrap();
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    let out = Command::new("ls")
        .args(["-l", "/proc/self/fd/"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let held = listing.contains(&*target.to_string_lossy());
    conn.send(&(flags & libc::FD_CLOEXEC != 0, held)).unwrap();
}

/// The parent sentinel a child keeps is close-on-exec: a program the child
/// runs does not inherit its parent's alive pipe.
fn a_childs_parent_sentinel_never_reaches_an_exec(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(false).unwrap();
    let mut p = Process::new(report_sentinel_on_exec, there).start_method(method);
    p.start().unwrap();
    let (cloexec, held): (bool, bool) = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(cloexec, "the sentinel is inherited by exec");
    assert!(
        !held,
        "a program the child ran holds its parent's alive pipe"
    );
}

/// Whether a child of this process has ended and not been reaped: waits
/// for one to end if one runs (none runs here: a child either ended or
/// never started), `false` at once if there is none.
fn an_ended_child_unreaped() -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    // WNOWAIT: the child, if any, is left as it is (a zombie) to be seen.
    match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
        Ok(_) => true,
        Err(nix::errno::Errno::ECHILD) => false,
        Err(e) => panic!("waitid: {e}"),
    }
}

/// Forkserver starts with `free` descriptors left, for `free` = 0, 1, ...
/// until one starts: each failed start leaves no child behind.
fn forkserver_start_without_descriptors() {
    use std::os::fd::OwnedFd;
    // A spawn child first: the runtime's own descriptors (the alive pipe)
    // exist before the count starts.
    let mut first = Process::new(noop, ()).start_method(StartMethod::Spawn);
    first.start().unwrap();
    assert_eq!(first.join().unwrap(), 0);
    // Few descriptors, so that using them all up is quick (the fork
    // server inherits the limit: it needs far fewer).
    mp_testkit::limit_descriptors(256);
    let null = std::fs::File::open("/dev/null").unwrap();
    for free in 0..32 {
        let mut filler: Vec<OwnedFd> = Vec::new();
        while let Ok(fd) = null.try_clone() {
            filler.push(fd.into());
        }
        filler.truncate(filler.len().saturating_sub(free));
        let mut p = Process::new(noop, ()).start_method(StartMethod::Forkserver);
        let started = p.start();
        drop(filler);
        match started {
            Ok(()) => {
                assert_eq!(p.join().unwrap(), 0);
                println!("started with {free} free");
                return;
            }
            Err(e) => {
                drop(p);
                assert!(
                    !an_ended_child_unreaped(),
                    "a forkserver start that failed ({e}) with {free} free descriptors left \
                     a child unreaped"
                );
            }
        }
    }
    panic!("no forkserver start succeeded");
}

/// A forkserver start that fails for want of descriptors (after the server
/// started, before its preload list was sent) leaves no zombie: the server
/// it started is killed and reaped, not dropped with a non-blocking reap
/// that runs before it has ended.
#[test]
fn a_failed_forkserver_start_leaves_no_zombie() {
    let _g = guard();
    let out = run("forkserver_start_without_descriptors");
    assert!(String::from_utf8_lossy(&out.stdout).contains("started with"));
}
