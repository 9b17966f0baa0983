//! Issue 19: a replacement worker that cannot start (its host is down or
//! cut off) does not break the pool while other workers live: the pool
//! goes on with them and starts the replacement once it can; with no
//! worker left, the waiting calls fail instead of hanging.
//!
//! The hosts are [`Launcher::command`]s of this machine (the real remote
//! path: an agent of this executable over the launcher's standard input
//! and output) under a `mp_manager::ClusterContext`, whose manager serves
//! the barriers; a refusing host's prefix is a shell line that exits 7
//! while a flag file exists, so starts there fail as a host that is down
//! makes them fail (`mp_proc::Error::RemoteStart`). Each prefix sets
//! [`HOST`] in its agent's environment, where a task finds which host it
//! runs on (a worker is the agent's child).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_manager::{ClusterBarrier, ClusterContext};
use mp_pool::{Error, Pool};
use mp_proc::{
    BarrierLike, Context, Launcher, Payload, Process, ProcessContext, StartMethod, Workers,
};
use mp_testkit::{guard, wait_until};

mp_testkit::for_each_method!(
    a_host_that_cannot_start_a_replacement_leaves_the_pool_going_until_it_can,
    the_pool_warns_once_per_streak_of_failed_starts_and_says_when_it_is_whole,
    with_no_worker_able_to_start_the_waiting_calls_fail,
);

/// The variable each host's prefix sets in its agent's environment.
const HOST: &str = "MP_POOL_TEST_HOST";

/// A never-hang guard: far longer than any wait here should take.
const GUARD: Duration = Duration::from_secs(60);

/// A file whose existence makes a host refuse to start processes.
struct Flag(PathBuf);

impl Flag {
    fn new() -> Flag {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let name = format!("mp-pool-replace-{}-{n}.flag", std::process::id());
        let flag = Flag(std::env::temp_dir().join(name));
        flag.lower();
        flag
    }

    fn raise(&self) {
        std::fs::write(&self.0, b"").unwrap();
    }

    /// How many starts the host refused since the flag was raised (the
    /// prefix adds a line to the flag for each).
    fn refusals(&self) -> usize {
        std::fs::read(&self.0).map_or(0, |text| text.iter().filter(|&&b| b == b'\n').count())
    }

    fn lower(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        self.lower();
    }
}

/// A host named `name` (in its agents' [`HOST`]) that refuses to start
/// anything while `flag` is raised, counting its refusals in the flag.
fn host(name: &str, flag: &Flag) -> Launcher {
    let prefix: Vec<OsString> = vec![
        "env".into(),
        format!("{HOST}={name}").into(),
        "sh".into(),
        "-c".into(),
        r#"test -e "$0" && { echo refused >> "$0"; exit 7; }; exec "$@""#.into(),
        flag.0.clone().into(),
    ];
    Launcher::command(prefix)
}

/// The name of the host this worker runs on (its agent's [`HOST`]).
fn host_of() -> String {
    let agent = std::os::unix::process::parent_id();
    let environ = std::fs::read(format!("/proc/{agent}/environ")).unwrap_or_default();
    let prefix = format!("{HOST}=");
    environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_default()
}

/// Where the task ran: its host and its worker's pid.
fn whereabouts(_: u64) -> (String, u32) {
    (host_of(), std::process::id())
}

/// Waits at `barrier` (with the guard as its timeout), then ends its
/// worker with `SIGKILL` if it runs on host `die_on`; where it ran.
fn meet((barrier, die_on): (ClusterBarrier, String)) -> Result<(String, u32), String> {
    barrier.wait_timeout(GUARD).map_err(|e| e.to_string())?;
    if host_of() == die_on {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        unreachable!("SIGKILL ends the process");
    }
    Ok(whereabouts(0))
}

/// Ends its worker with `SIGKILL`.
fn die(_: u64) -> u64 {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL ends the process");
}

/// A cluster's hosts, each process placed by the test: the first on host 0,
/// the second on host 1, and every later one (the replacements) on host 0.
/// (The cluster's own turns would place the second try of a replacement on
/// the healthy host, which would hide whether the refusing one is tried
/// again.) Its primitives are mp-proc's; the pool needs only its processes.
#[derive(Clone)]
struct Placed {
    local: ProcessContext,
    cluster: ClusterContext,
    started: Arc<AtomicUsize>,
}

impl Context for Placed {
    type Process = Process;
    primitives_of!(local);

    fn name(&self) -> &'static str {
        "placed"
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        // The hosts' launchers as the cluster keeps them: they forward its
        // manager's address.
        let (launcher, _) = &self.cluster.hosts()[usize::from(n == 1)];
        self.cluster
            .process(target, args)
            .launcher(launcher.clone())
    }
    fn workers(&self) -> Workers {
        Workers::Hosts
    }
}

fn a_host_that_cannot_start_a_replacement_leaves_the_pool_going_until_it_can(method: StartMethod) {
    let _g = guard();
    goes_on(method);
}

/// [`goes_on`] in a fresh process that logs: one warning for the streak of
/// failed starts (however many tries it took), saying how many workers the
/// pool goes on with, and one record when the pool is whole again.
fn the_pool_warns_once_per_streak_of_failed_starts_and_says_when_it_is_whole(method: StartMethod) {
    let _g = guard();
    let out = mp_testkit::scenario(&format!("replace:{method}"));
    let got = mp_testkit::records(&out);
    let ours: Vec<&String> = got
        .iter()
        .filter(|l| l.starts_with("[WARNING/MainProcess]") || l.starts_with("[INFO/MainProcess]"))
        .filter(|l| l.contains("pool worker"))
        .collect();
    assert_eq!(ours.len(), 2, "{got:#?}");
    assert!(
        ours[0].starts_with("[WARNING/MainProcess] could not replace a pool worker: ")
            && ours[0].contains("exit code 7")
            && ours[0].contains("going on with 1 of 2 workers"),
        "{got:#?}"
    );
    let failed: usize = ours[1]
        .strip_prefix("[INFO/MainProcess] a pool worker started after ")
        .and_then(|rest| rest.strip_suffix(" failed start(s): 2 of 2 workers run"))
        .unwrap_or_else(|| panic!("{got:#?}"))
        .parse()
        .unwrap();
    assert!(failed >= 3, "{got:#?}");
}

/// A pool of two, one worker on a host that refuses (once its flag is
/// raised) and one on a healthy host: the refusing host's worker dies
/// while starts there fail; its task fails, the pool goes on with the
/// other worker alone, and once the host starts processes again the pool
/// is back to two workers.
pub(crate) fn goes_on(method: StartMethod) {
    let (refusing, healthy) = (Flag::new(), Flag::new());
    let cluster = ClusterContext::builder()
        .host(host("refusing", &refusing), 1)
        .host(host("healthy", &healthy), 1)
        .start_method(method)
        .build()
        .unwrap();
    let ctx = Placed {
        local: mp_proc::get_context(method),
        cluster: cluster.clone(),
        started: Arc::default(),
    };
    let pool = Pool::builder().processes(2).context(ctx).build().unwrap();

    // The host goes down; its worker dies in a task. Both tasks run at
    // once (each on its own worker, or the barrier would not open).
    refusing.raise();
    let barrier = cluster.barrier(2, None).unwrap();
    let args = (barrier, "refusing".to_string());
    let outcomes: Vec<_> = pool.imap_chunked(meet, [args.clone(), args], 1).collect();
    let mut died = 0;
    let mut survivor = None;
    for outcome in outcomes {
        match outcome {
            Err(Error::WorkerDied { exitcode, .. }) => {
                assert_eq!(exitcode, -libc::SIGKILL);
                died += 1;
            }
            Ok(Ok((host, pid))) => {
                assert_eq!(host, "healthy");
                survivor = Some(pid);
            }
            other => panic!("expected a death and a success, got {other:?}"),
        }
    }
    assert_eq!(died, 1);
    let survivor = survivor.expect("the healthy host's task succeeded");

    // Its replacement cannot start: the pool goes on, on the healthy host
    // alone, and is not broken.
    let ran = pool.map_chunked(whereabouts, 0..20, 1).unwrap();
    assert!(
        ran.iter()
            .all(|(host, pid)| host == "healthy" && *pid == survivor),
        "{ran:?}"
    );

    // The pool tries the start again by itself, while no call waits: the
    // first failure, then retries.
    assert!(
        wait_until(GUARD, || refusing.refusals() >= 3),
        "the start was tried again ({} refusals)",
        refusing.refusals()
    );

    // The host is back: the start succeeds at the next try. Two
    // tasks are spread over two idle workers, one each; until the
    // replacement runs, both go to the healthy one.
    refusing.lower();
    assert!(
        wait_until(GUARD, || pool
            .map_chunked(whereabouts, 0..2, 1)
            .unwrap()
            .iter()
            .any(|(host, _)| host == "refusing")),
        "the refusing host's replacement started once it could"
    );
    // Two workers at once: each task waits for the other at the barrier.
    let barrier = cluster.barrier(2, None).unwrap();
    let args = (barrier, String::new());
    let met = pool
        .map_chunked(meet, [args.clone(), args], 1)
        .unwrap()
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let mut hosts: Vec<&str> = met.iter().map(|(h, _)| h.as_str()).collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["healthy", "refusing"]);
    assert_ne!(met[0].1, met[1].1);
    assert_eq!(pool.map(crate::tasks::square, 0..50).unwrap().len(), 50);
    pool.close();
    pool.join().unwrap();
}

/// Every host refuses and every worker dies: the calls that wait end in
/// an error (the start's), never a hang, and the pool is broken.
fn with_no_worker_able_to_start_the_waiting_calls_fail(method: StartMethod) {
    let _g = guard();
    let (a, b) = (Flag::new(), Flag::new());
    let cluster = ClusterContext::builder()
        .host(host("a", &a), 1)
        .host(host("b", &b), 1)
        .start_method(method)
        .build()
        .unwrap();
    let pool = Pool::builder()
        .processes(2)
        .context(cluster.clone())
        .build()
        .unwrap();
    a.raise();
    b.raise();
    // Fresh workers take one task at a time: the first two calls end the
    // two workers, the others wait for workers that cannot start.
    let calls: Vec<_> = (0..8).map(|i| pool.apply_async(die, i)).collect();
    let outcomes: Vec<_> = calls.into_iter().map(|c| c.get()).collect();
    let mut died = 0;
    let mut refused = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Err(Error::WorkerDied { .. }) => died += 1,
            Err(Error::Proc(e)) => {
                assert!(
                    matches!(&*e.0, mp_proc::Error::RemoteStart { .. }),
                    "item {i}: {e}"
                );
                refused += 1;
            }
            other => panic!("item {i}: expected an error, got {other:?}"),
        }
    }
    assert_eq!(died, 2, "{outcomes:?}");
    assert_eq!(refused, 6, "{outcomes:?}");
    // With no worker left, three starts in a row were tried: each host's
    // launcher ran (then its host was down, and a start there failed at
    // once; a prober may have tried since).
    assert!(
        a.refusals() >= 1 && b.refusals() >= 1,
        "{} {}",
        a.refusals(),
        b.refusals()
    );
    assert!(matches!(
        pool.apply(crate::tasks::square, 3),
        Err(Error::Proc(_))
    ));
}

/// A context whose pools' workers are threads of this process (as
/// `mp_dummy::ThreadContext`'s).
#[derive(Clone)]
struct Threads {
    local: ProcessContext,
}

impl Context for Threads {
    type Process = Process;
    primitives_of!(local);

    fn name(&self) -> &'static str {
        "threads"
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        self.local.process(target, args)
    }
    fn workers(&self) -> Workers {
        Workers::Threads
    }
}

fn nothing(_: ()) {}

/// The threads' case, in a fresh process that logs (a scenario): worker
/// threads retire after each task, and this process may start no more
/// threads (`RLIMIT_NPROC` at 1, as `nobody` if it runs as root, whose
/// limit is not enforced); each retiring thread stays on in its place and
/// every call succeeds; once threads may start again, the next retirement
/// starts a replacement.
pub(crate) fn threads_stay_on() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    mp_logging::log_to_stderr(Some(mp_logging::Level::Debug));
    // An initializer: the caller leaves every task to the workers.
    let pool = Pool::builder()
        .processes(2)
        .context(Threads {
            local: mp_proc::get_context(StartMethod::Spawn),
        })
        .initializer(nothing, ())
        .maxtasksperchild(1)
        .build()
        .unwrap();
    assert_eq!(pool.map(crate::tasks::square, 0..4).unwrap(), [0, 1, 4, 9]);
    if nix::unistd::geteuid().is_root() {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).unwrap();
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NPROC).unwrap();
    setrlimit(Resource::RLIMIT_NPROC, 1, hard).unwrap();
    eprintln!("threads limited");
    let squares: Vec<u64> = (0..20).map(|x| x * x).collect();
    assert_eq!(
        pool.map_chunked(crate::tasks::square, 0..20, 1).unwrap(),
        squares
    );
    setrlimit(Resource::RLIMIT_NPROC, hard, hard).unwrap();
    eprintln!("threads unlimited");
    assert_eq!(
        pool.map_chunked(crate::tasks::square, 0..20, 1).unwrap(),
        squares
    );
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_worker_thread_whose_replacement_cannot_start_stays_on_in_its_place() {
    let _g = guard();
    let out = mp_testkit::scenario("threads_stay_on");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let at = |marker: &str| {
        lines
            .iter()
            .position(|l| *l == marker)
            .unwrap_or_else(|| panic!("no {marker:?} in {stderr}"))
    };
    let (limited, unlimited) = (at("threads limited"), at("threads unlimited"));
    let warnings: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("[WARNING/MainProcess] could not replace a pool worker"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(limited < warnings[0] && warnings[0] < unlimited, "{stderr}");
    let whole: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("[INFO/MainProcess] a pool worker thread started again"))
        .collect();
    assert_eq!(whole.len(), 1, "{stderr}");
    assert!(unlimited < whole[0], "{stderr}");
}
