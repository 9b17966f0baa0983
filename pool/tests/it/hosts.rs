//! Issue 18: the pool over a context whose workers are on other hosts
//! ([`Workers::Hosts`]). A worker then shares no memory with the pool: its
//! only handle is its connection, and it reports its calls over it when
//! the pool is timed. The contexts here run on one machine: mp-proc's
//! processes of one start method that say they are on other hosts (so
//! that the pool takes that path), and processes started through the real
//! remote path (`Launcher::command([])`: an agent of this executable over
//! its standard input and output, as ssh would run it), where whatever the
//! pool passes a worker must cross the link. The lead runs the same checks
//! on a real cluster.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_pool::{Error, Pool, PoolBuilder};
use mp_proc::{Context, Event, Launcher, Payload, Process, ProcessContext, StartMethod, Workers};
use mp_testkit::{exists, guard, open_fds, wait_until, zombies};

use crate::tasks::{add, pid, square};

/// Where a test's workers run: processes of this machine by a start
/// method, presented as on other hosts; or through the remote path.
#[derive(Clone, Copy, Debug)]
enum Where {
    Local(StartMethod),
    Remote,
}

/// One test per start method (the pool takes the hosts path over local
/// processes) and one over the remote path.
macro_rules! for_each_where {
    ($($name:ident),* $(,)?) => {
        mod fork {
            $( #[test] fn $name() { super::$name(super::Where::Local(mp_proc::StartMethod::Fork)) } )*
        }
        mod spawn {
            $( #[test] fn $name() { super::$name(super::Where::Local(mp_proc::StartMethod::Spawn)) } )*
        }
        mod forkserver {
            $( #[test] fn $name() {
                super::$name(super::Where::Local(mp_proc::StartMethod::Forkserver))
            } )*
        }
        mod remote {
            $( #[test] fn $name() { super::$name(super::Where::Remote) } )*
        }
    };
}

for_each_where!(
    results_across_hosts,
    a_worker_killed_mid_task_fails_only_its_tasks,
    a_timed_pool_blames_the_item_a_killed_worker_ran,
    task_timeout_fails_the_hung_item_and_the_rest_succeed,
    kill_workers_ends_a_hanging_task_and_the_pool_goes_on,
    lazy_imap_keeps_its_window,
    idle_workers_stop_and_nothing_is_left_behind,
    the_initializer_crosses_with_plain_data_not_with_handles,
);

/// mp-proc's processes of one start method, presented as processes on
/// other hosts; with `remote`, started through the remote path instead.
#[derive(Clone)]
struct Hosts {
    local: ProcessContext,
    remote: bool,
}

impl Context for Hosts {
    type Process = Process;
    primitives_of!(local);

    fn name(&self) -> &'static str {
        "hosts"
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        match self.remote {
            true => Process::new(target, args).launcher(Launcher::command(Vec::<&str>::new())),
            false => self.local.process(target, args),
        }
    }
    fn workers(&self) -> Workers {
        Workers::Hosts
    }
}

/// A pool builder of `n` workers "on other hosts", started as `at` says.
fn hosts(at: Where, n: usize) -> PoolBuilder {
    let ctx = match at {
        Where::Local(method) => Hosts {
            local: mp_proc::get_context(method),
            remote: false,
        },
        Where::Remote => Hosts {
            local: mp_proc::get_context(StartMethod::Spawn),
            remote: true,
        },
    };
    assert_eq!(ctx.start_method(), None);
    Pool::builder().processes(n).context(ctx)
}

/// The test's task timeout.
const LIMIT: Duration = Duration::from_millis(500);
/// A task timeout that never expires here: timed, without timeouts.
const NEVER: Duration = Duration::from_secs(3600);

/// The pools a behaviour is checked on: untimed (no message per call) and
/// timed (a message per call).
fn both(at: Where, n: usize) -> [(&'static str, Pool); 2] {
    [
        ("untimed", hosts(at, n).build().unwrap()),
        ("timed", hosts(at, n).task_timeout(NEVER).build().unwrap()),
    ]
}

/// SIGKILLs its own worker on item 5; squares the others.
fn square_or_die(x: u64) -> u64 {
    if x == 5 {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        unreachable!("SIGKILL ends the process");
    }
    x * x
}

/// Never returns on 1000 and above; squares the others.
fn square_or_hang(x: u64) -> u64 {
    if x >= 1000 {
        loop {
            std::thread::park();
        }
    }
    x * x
}

/// Connects to the socket at `path` and writes a byte (it has started),
/// then hangs. A path, not an `Event`: a task's arguments on another host
/// cannot hold a handle of this machine.
fn signal_then_hang(path: PathBuf) -> u64 {
    let mut told = UnixStream::connect(path).unwrap();
    told.write_all(b"!").unwrap();
    loop {
        std::thread::park();
    }
}

/// A socket to hear from [`signal_then_hang`] on, removed on drop.
struct Started {
    path: PathBuf,
    listener: UnixListener,
}

impl Started {
    fn new() -> Started {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let name = format!("mp-pool-hosts-{}-{n}.sock", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        Started { path, listener }
    }

    /// Returns once a task has said it started.
    fn wait(&self) {
        let (mut stream, _) = self.listener.accept().unwrap();
        let mut byte = [0u8];
        stream.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"!");
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The parent of process `pid` (from `/proc/<pid>/stat`).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(|x| x * x).collect()
}

fn results_across_hosts(at: Where) {
    let _g = guard();
    // The remote path really is taken: a worker there is the child of an
    // agent (this executable run by the launcher), not of this process.
    let pool = hosts(at, 1).build().unwrap();
    let worker = pool.apply(pid, 0).unwrap();
    let parent = parent_of(worker);
    let by_agent = std::fs::read(format!("/proc/{parent}/cmdline"))
        .unwrap()
        .split(|&b| b == 0)
        .any(|arg| arg == b"--mp-proc-remote");
    match at {
        Where::Remote => assert!(by_agent && parent != std::process::id(), "{parent}"),
        Where::Local(_) => assert!(!by_agent, "{parent}"),
    }
    pool.close();
    pool.join().unwrap();
    for (how, pool) in both(at, 2) {
        assert_eq!(pool.map(square, 0..1000).unwrap(), squares(1000), "{how}");
        assert_eq!(
            pool.map_chunked(square, 0..300, 1).unwrap(),
            squares(300),
            "{how}"
        );
        assert_eq!(pool.apply(square, 12).unwrap(), 144, "{how}");
        let add: fn(u64, u64) -> u64 = add;
        assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
        let got: Vec<u64> = pool
            .imap_chunked(square, 0..500, 3)
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(got, squares(500), "{how}");
        let mut got: Vec<u64> = pool
            .imap_unordered(square, 0..200)
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        got.sort_unstable();
        assert_eq!(got, squares(200), "{how}");
        pool.close();
        pool.join().unwrap();
    }
    // The process limits are allowed (they are processes): a limit of one
    // byte retires every worker after each task, and nothing fails.
    let pool = hosts(at, 2)
        .max_memory_per_child(1)
        .task_timeout(NEVER)
        .build()
        .unwrap();
    assert_eq!(pool.map_chunked(square, 0..20, 1).unwrap(), squares(20));
    pool.close();
    pool.join().unwrap();
}

/// Untimed, the pool does not know which call a dying worker was in: the
/// tasks it held and had not reported fail whole, and only those; the
/// pool replaces it and goes on.
fn a_worker_killed_mid_task_fails_only_its_tasks(at: Where) {
    let _g = guard();
    let pool = hosts(at, 2).build().unwrap();
    // Fresh workers are given one task at a time: the dying one holds
    // only its own.
    let died = pool.apply_async(square_or_die, 5);
    let beside = pool.apply_async(square, 3);
    match died.get() {
        Err(Error::WorkerDied { pid, exitcode, .. }) => {
            assert_eq!(exitcode, -libc::SIGKILL);
            assert!(!exists(pid), "the dead worker {pid} was reaped");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(beside.get().unwrap(), 9);
    // Among many: item 5 fails, and any other failure is a task the same
    // worker held; the rest succeed.
    let outcomes: Vec<_> = pool.imap_chunked(square_or_die, 0..40, 1).collect();
    assert_eq!(outcomes.len(), 40);
    let dead = match &outcomes[5] {
        Err(Error::WorkerDied { pid, exitcode, .. }) => {
            assert_eq!(*exitcode, -libc::SIGKILL);
            *pid
        }
        other => panic!("item 5: expected WorkerDied, got {other:?}"),
    };
    for (i, r) in outcomes.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, (i * i) as u64),
            Err(Error::WorkerDied { pid, .. }) => assert_eq!(*pid, dead, "item {i}"),
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    assert_eq!(pool.map(square, 0..100).unwrap(), squares(100));
    assert_eq!(pool.processes(), 2);
    pool.close();
    pool.join().unwrap();
}

/// Timed, the worker reports each call: a killed worker fails exactly the
/// item it was running, also inside a chunk; the others run again.
fn a_timed_pool_blames_the_item_a_killed_worker_ran(at: Where) {
    let _g = guard();
    let pool = hosts(at, 2).task_timeout(NEVER).build().unwrap();
    for chunksize in [1, 4] {
        let outcomes: Vec<_> = pool.imap_chunked(square_or_die, 0..20, chunksize).collect();
        assert_eq!(outcomes.len(), 20);
        for (i, r) in outcomes.iter().enumerate() {
            if i == 5 {
                assert!(
                    matches!(r, Err(Error::WorkerDied { exitcode: -9, .. })),
                    "chunksize {chunksize}: {r:?}"
                );
            } else {
                assert_eq!(r.as_ref().ok(), Some(&((i * i) as u64)), "item {i}: {r:?}");
            }
        }
    }
    assert_eq!(pool.map(square, 0..100).unwrap(), squares(100));
}

fn assert_timed_out(r: &std::result::Result<u64, Error>, index: usize) {
    match r {
        Err(Error::TaskTimeout {
            item, limit, pid, ..
        }) => {
            assert_eq!(*item, index);
            assert_eq!(*limit, LIMIT);
            assert!(!exists(*pid), "the killed worker {pid} was reaped");
        }
        other => panic!("item {index}: expected TaskTimeout, got {other:?}"),
    }
}

fn task_timeout_fails_the_hung_item_and_the_rest_succeed(at: Where) {
    let _g = guard();
    let pool = hosts(at, 2).task_timeout(LIMIT).build().unwrap();
    for chunksize in [1, 4] {
        let input = (0..12u64).map(|i| if i == 6 { 1000 } else { i });
        let outcomes: Vec<_> = pool
            .imap_chunked(square_or_hang, input, chunksize)
            .collect();
        assert_eq!(outcomes.len(), 12);
        for (i, r) in outcomes.iter().enumerate() {
            if i == 6 {
                assert_timed_out(r, 6);
            } else {
                assert_eq!(r.as_ref().ok(), Some(&((i * i) as u64)), "item {i}: {r:?}");
            }
        }
    }
    // A map fails with the timeout; the pool goes on.
    assert!(matches!(
        pool.map_chunked(square_or_hang, [1, 1000, 3], 1),
        Err(Error::TaskTimeout { item: 1, .. })
    ));
    assert_eq!(pool.map(square, 0..100).unwrap(), squares(100));
    assert_eq!(pool.processes(), 2);
}

fn kill_workers_ends_a_hanging_task_and_the_pool_goes_on(at: Where) {
    let _g = guard();
    for (how, pool) in both(at, 2) {
        let started = Started::new();
        let r = pool.apply_async(signal_then_hang, started.path.clone());
        started.wait();
        pool.kill_workers();
        match r.get() {
            Err(Error::WorkerDied { pid, exitcode, .. }) => {
                assert_eq!(exitcode, -libc::SIGKILL, "{how}");
                assert!(!exists(pid), "{how}");
            }
            other => panic!("{how}: expected WorkerDied, got {other:?}"),
        }
        assert_eq!(pool.map(square, 0..100).unwrap(), squares(100), "{how}");
        pool.close();
        pool.join().unwrap();
    }
}

fn lazy_imap_keeps_its_window(at: Where) {
    let _g = guard();
    for (how, pool) in both(at, 2) {
        // An endless input.
        let first: Vec<u64> = pool
            .imap(square, 0u64..)
            .take(1000)
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(first, squares(1000), "{how}");
        for (chunksize, buffersize) in [(1, 2), (3, 2)] {
            let pulled = Arc::new(AtomicUsize::new(0));
            let counter = pulled.clone();
            let input = (0u64..100).inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            let it = pool.imap_buffered(square, input, chunksize, buffersize);
            let window = chunksize * buffersize;
            let mut got = Vec::new();
            for r in it {
                got.push(r.unwrap());
                let ahead = pulled.load(Ordering::SeqCst) - got.len();
                assert!(ahead <= window, "{how}: {ahead} ahead, window {window}");
            }
            assert_eq!(got, squares(100), "{how}");
        }
        pool.close();
        pool.join().unwrap();
    }
}

/// Idle workers stop (told over their connection); and a pool that killed,
/// timed out and replaced workers leaves no process, zombie or descriptor
/// behind once joined (the guard checks shared memory too).
fn idle_workers_stop_and_nothing_is_left_behind(at: Where) {
    let _g = guard();
    let fds = open_fds().len();
    let pool = hosts(at, 2)
        .idle_timeout(Duration::from_millis(100))
        .task_timeout(LIMIT)
        .build()
        .unwrap();
    let first = pool.map_chunked(pid, 0..20, 1).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || first
            .iter()
            .all(|&p| !exists(p))),
        "the idle workers were stopped"
    );
    let outcomes: Vec<_> = pool.imap(square_or_hang, [1, 1000, 2]).collect();
    assert_timed_out(&outcomes[1], 1);
    let outcomes: Vec<_> = pool.imap(square_or_die, 3..7).collect();
    assert!(matches!(outcomes[2], Err(Error::WorkerDied { .. })));
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert!(zombies().is_empty());
    assert_eq!(open_fds().len(), fds, "no descriptor left behind");
}

static GREETING: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn greet(greeting: String) {
    let _ = GREETING.set(greeting);
}

fn greeting(_: u64) -> String {
    GREETING.get().cloned().unwrap_or_default()
}

fn holds_event(_: Event) {}

/// The initializer's arguments go to every worker: plain data crosses to
/// another host; a handle of this machine cannot, and the pool's
/// constructor says so (locally, the same pool starts).
fn the_initializer_crosses_with_plain_data_not_with_handles(at: Where) {
    let _g = guard();
    let pool = hosts(at, 2)
        .initializer(greet, "hello".to_string())
        .build()
        .unwrap();
    let got = pool.map_chunked(greeting, 0..8, 1).unwrap();
    assert!(got.iter().all(|g| g == "hello"), "{got:?}");
    pool.close();
    pool.join().unwrap();
    let built = hosts(at, 2)
        .initializer(holds_event, Event::new().unwrap())
        .build();
    match (at, built) {
        (Where::Remote, Err(Error::Proc(e))) => {
            assert!(
                matches!(&*e.0, mp_proc::Error::NotAcrossHosts { .. }),
                "{e}"
            );
        }
        (Where::Local(_), Ok(pool)) => {
            assert_eq!(pool.apply(square, 3).unwrap(), 9);
            pool.close();
            pool.join().unwrap();
        }
        (_, Err(e)) => panic!("{at:?}: {e}"),
        (_, Ok(_)) => panic!("{at:?}: a pool whose initializer holds an Event started"),
    }
}
