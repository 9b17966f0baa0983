//! Issue 18: the pool over a context whose workers are on other hosts
//! ([`Workers::Hosts`]). A worker then shares no memory with the pool: its
//! only handle is its connection, and it reports its calls over it when
//! the pool is timed. The context here is mp-proc's processes of one start
//! method that say they are on other hosts, so that the pool takes that
//! path on one machine; the lead runs the same checks on a real cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_pool::{Error, Pool, PoolBuilder};
use mp_proc::{
    Barrier, BoundedSemaphore, Condition, Connection, Context, Event, JoinableQueue, Lock, Payload,
    Process, ProcessContext, Queue, RLock, Result, Semaphore, Shareable, StartMethod, Value,
    Workers,
};
use mp_testkit::{exists, guard, open_fds, wait_until, zombies};

use crate::tasks::{add, pid, square};

mp_testkit::for_each_method!(
    results_across_hosts,
    a_worker_killed_mid_task_fails_only_its_tasks,
    a_timed_pool_blames_the_item_a_killed_worker_ran,
    task_timeout_fails_the_hung_item_and_the_rest_succeed,
    kill_workers_ends_a_hanging_task_and_the_pool_goes_on,
    lazy_imap_keeps_its_window,
    idle_workers_stop_and_nothing_is_left_behind,
);

/// mp-proc's processes of one start method, presented as processes on
/// other hosts.
#[derive(Clone)]
struct Hosts(ProcessContext);

impl Context for Hosts {
    type Process = Process;
    type Queue<T: Payload> = Queue<T>;
    type JoinableQueue<T: Payload> = JoinableQueue<T>;
    type Lock = Lock;
    type RLock = RLock;
    type Condition = Condition;
    type Semaphore = Semaphore;
    type BoundedSemaphore = BoundedSemaphore;
    type Event = Event;
    type Barrier = Barrier;
    type Value<T: Shareable + Payload> = Value<T>;
    type Connection = Connection;

    fn name(&self) -> &'static str {
        "hosts"
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        self.0.process(target, args)
    }
    fn workers(&self) -> Workers {
        Workers::Hosts
    }
    fn queue<T: Payload>(&self) -> Result<Queue<T>> {
        self.0.queue()
    }
    fn queue_with_maxsize<T: Payload>(&self, maxsize: usize) -> Result<Queue<T>> {
        self.0.queue_with_maxsize(maxsize)
    }
    fn joinable_queue<T: Payload>(&self) -> Result<JoinableQueue<T>> {
        self.0.joinable_queue()
    }
    fn lock(&self) -> Result<Lock> {
        Context::lock(&self.0)
    }
    fn rlock(&self) -> Result<RLock> {
        self.0.rlock()
    }
    fn condition(&self, lock: Option<Lock>) -> Result<Condition> {
        self.0.condition(lock)
    }
    fn semaphore(&self, value: usize) -> Result<Semaphore> {
        self.0.semaphore(value)
    }
    fn bounded_semaphore(&self, value: usize) -> Result<BoundedSemaphore> {
        self.0.bounded_semaphore(value)
    }
    fn event(&self) -> Result<Event> {
        self.0.event()
    }
    fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<Barrier> {
        self.0.barrier(parties, timeout)
    }
    fn value<T: Shareable + Payload>(&self, value: T) -> Result<Value<T>> {
        self.0.value(value)
    }
    fn pipe(&self, duplex: bool) -> Result<(Connection, Connection)> {
        Context::pipe(&self.0, duplex)
    }
    fn cpu_count(&self) -> usize {
        Context::cpu_count(&self.0)
    }
}

/// A pool builder of `n` workers "on other hosts", started by `method`.
fn hosts(method: StartMethod, n: usize) -> PoolBuilder {
    let ctx = Hosts(mp_proc::get_context(method));
    assert_eq!(ctx.start_method(), None);
    Pool::builder().processes(n).context(ctx)
}

/// The test's task timeout.
const LIMIT: Duration = Duration::from_millis(500);
/// A task timeout that never expires here: timed, without timeouts.
const NEVER: Duration = Duration::from_secs(3600);

/// The pools a behaviour is checked on: untimed (no message per call) and
/// timed (a message per call).
fn both(method: StartMethod, n: usize) -> [(&'static str, Pool); 2] {
    [
        ("untimed", hosts(method, n).build().unwrap()),
        (
            "timed",
            hosts(method, n).task_timeout(NEVER).build().unwrap(),
        ),
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

/// Sets `started`, then hangs.
fn signal_then_hang(started: Event) -> u64 {
    started.set();
    loop {
        std::thread::park();
    }
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(|x| x * x).collect()
}

fn results_across_hosts(method: StartMethod) {
    let _g = guard();
    for (how, pool) in both(method, 2) {
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
    let pool = hosts(method, 2)
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
fn a_worker_killed_mid_task_fails_only_its_tasks(method: StartMethod) {
    let _g = guard();
    let pool = hosts(method, 2).build().unwrap();
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
fn a_timed_pool_blames_the_item_a_killed_worker_ran(method: StartMethod) {
    let _g = guard();
    let pool = hosts(method, 2).task_timeout(NEVER).build().unwrap();
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

fn task_timeout_fails_the_hung_item_and_the_rest_succeed(method: StartMethod) {
    let _g = guard();
    let pool = hosts(method, 2).task_timeout(LIMIT).build().unwrap();
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

fn kill_workers_ends_a_hanging_task_and_the_pool_goes_on(method: StartMethod) {
    let _g = guard();
    for (how, pool) in both(method, 2) {
        let started = Event::new().unwrap();
        let r = pool.apply_async(signal_then_hang, started.clone());
        started.wait(None).unwrap();
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

fn lazy_imap_keeps_its_window(method: StartMethod) {
    let _g = guard();
    for (how, pool) in both(method, 2) {
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
fn idle_workers_stop_and_nothing_is_left_behind(method: StartMethod) {
    let _g = guard();
    let fds = open_fds().len();
    let pool = hosts(method, 2)
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
