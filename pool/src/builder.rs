//! `PoolBuilder`: a pool's optional settings (Python's keyword arguments,
//! and the limits of a pool for code that crashes, hangs or leaks), checked
//! and turned into a started core by `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::plumbing::{ErasedFunction, Packed};
use mp_proc::{Context, Function, Payload, Workers};

use crate::core::Core;
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::scheduler::Limits;
use crate::transport::process::Processes;
use crate::transport::thread::Threads;

impl Pool {
    /// A pool of `processes` workers (`None`: [`mp_proc::available_cpus`]) with
    /// the default start method (Python's `Pool(processes)`).
    pub fn new(processes: Option<usize>) -> Result<Pool> {
        let b = Pool::builder();
        match processes {
            Some(n) => b.processes(n).build(),
            None => b.build(),
        }
    }

    /// The settings of a pool to build.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

/// Optional settings of a [`Pool`], Python's keyword arguments.
///
/// ```
/// fn init(greeting: String) {
///     let _ = greeting; // runs once in each worker
/// }
/// fn id(x: u8) -> u8 {
///     x
/// }
/// let pool = mp_pool::Pool::builder()
///     .processes(2)
///     .initializer(init, "hello".to_string())
///     .maxtasksperchild(100)
///     .context(mp_proc::get_context(mp_proc::StartMethod::Spawn))
///     .build()?;
/// assert_eq!(pool.map(id, [1, 2, 3])?, [1, 2, 3]);
/// # Ok::<(), mp_pool::Error>(())
/// ```
#[derive(Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<(ErasedFunction, Result<Packed>)>,
    maxtasks: Option<usize>,
    task_timeout: Option<Duration>,
    max_memory: Option<u64>,
    idle_timeout: Option<Duration>,
    /// Starts the pool's core over its context's transport, its start
    /// method (`None`: threads), and its context's CPU count.
    start: Option<(Starter, Option<mp_proc::StartMethod>, usize)>,
}

/// Starts a pool's core: `(processes, initializer, limits)`.
type Starter =
    Box<dyn FnOnce(usize, Option<(ErasedFunction, Packed)>, Limits) -> Result<Core> + Send>;

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("maxtasks", &self.maxtasks)
            .field("task_timeout", &self.task_timeout)
            .field("max_memory", &self.max_memory)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of workers (Python's `processes`; by default
    /// [`mp_proc::available_cpus`]: the affinity mask bounded by the cgroup
    /// CPU quota).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// Runs `f(args)` first thing in every worker (Python's `initializer`,
    /// `initargs`). The arguments may hold handles (a `Value`, a `Queue`, a
    /// `Lock`): each worker gets them, the usual way to share those with a
    /// pool. If `f` panics the pool is broken: calls fail with
    /// [`Error::InitializerFailed`] instead of workers starting and dying forever.
    pub fn initializer<A: Payload>(mut self, f: fn(A), args: A) -> PoolBuilder {
        let erased = Function::new(f).erased();
        self.initializer = Some((erased, Packed::pack(&args).map_err(Error::from)));
        self
    }

    /// Replaces each worker after it has run `n` tasks (Python's `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: usize) -> PoolBuilder {
        self.maxtasks = Some(n);
        self
    }

    /// Kills a worker whose call of the task's function has run for
    /// `limit` (each item's call, also inside a chunk): that item fails with
    /// [`Error::TaskTimeout`], the worker is killed (`SIGKILL`: a hung task
    /// may ignore `SIGTERM`), reaped and replaced, and every other task goes
    /// on. A `map`, `map_async` or `starmap` fails with the error as soon
    /// as one of its items times out (its other tasks still run; their
    /// outcomes are dropped); an `imap` yields it in the item's place and
    /// goes on. A huge `limit` (`Duration::MAX`) is no limit; zero is an
    /// [`Error::InvalidArgument`] from [`build`](Self::build), as is a
    /// context whose workers are threads (threads cannot be killed).
    ///
    /// A chunk's items may run again after its worker was killed (the items
    /// before and after the one that timed out are queued again, whether they
    /// had run or not): use chunksize 1 for tasks with side effects. An item
    /// whose arguments hold a handle (a `Queue`, an `Event`) cannot run a
    /// second time (its handle travels as a ticket, redeemed once): run
    /// again, it fails with [`Error::Encoding`]; pass handles through the
    /// pool's `initializer` instead.
    ///
    /// It costs the worker one clock read (vDSO, no system call, 23 ns
    /// here) and one more store to shared memory per call; the scheduler
    /// then wakes for the earliest deadline. Without it, no clock is read. It is not a sandbox: workers hold the
    /// authkey and run with the caller's rights.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn hang(x: u64) -> u64 {
    ///     if x == 3 {
    ///         loop {
    ///             std::thread::park();
    ///         }
    ///     }
    ///     x
    /// }
    /// let pool = mp_pool::Pool::builder()
    ///     .processes(2)
    ///     .task_timeout(Duration::from_millis(200))
    ///     .build()?;
    /// let outcomes: Vec<_> = pool.imap(hang, 0..5).collect();
    /// assert!(matches!(outcomes[3], Err(mp_pool::Error::TaskTimeout { item: 3, .. })));
    /// assert_eq!(outcomes[4].as_ref().ok(), Some(&4));
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn task_timeout(mut self, limit: Duration) -> PoolBuilder {
        self.task_timeout = Some(limit);
        self
    }

    /// Replaces a worker whose resident memory is above `bytes` after a
    /// task (billiard's `max_memory_per_child`, in bytes): it reports the
    /// task (which succeeds), gives back the tasks it holds, and exits; a
    /// fresh one takes its place. Nothing fails. Zero is an
    /// [`Error::InvalidArgument`] from [`build`](Self::build), as is a
    /// context whose workers are threads (they share one process's memory).
    ///
    /// It replaces a worker after the fact: it does not cap memory during a
    /// task. For a hard cap, set `RLIMIT_AS` in an initializer (an
    /// allocation past it then fails in the task). The measure is one
    /// `pread(2)` of `/proc/self/statm` (kept open) after each task, about
    /// 1 µs; without the setting, none.
    ///
    /// ```
    /// fn cap(bytes: u64) {
    ///     use nix::sys::resource::{Resource, setrlimit};
    ///     setrlimit(Resource::RLIMIT_AS, bytes, bytes).expect("a hard cap");
    /// }
    /// fn id(x: u64) -> u64 {
    ///     x
    /// }
    /// let pool = mp_pool::Pool::builder()
    ///     .processes(2)
    ///     .max_memory_per_child(512 << 20)
    ///     .initializer(cap, 4 << 30) // a hard cap of 4 GiB of address space
    ///     .build()?;
    /// assert_eq!(pool.map(id, 0..4)?, [0, 1, 2, 3]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn max_memory_per_child(mut self, bytes: u64) -> PoolBuilder {
        self.max_memory = Some(bytes);
        self
    }

    /// Stops a worker that has held no task for `idle`; new ones start
    /// when tasks come, up to [`processes`](Self::processes). A pool left
    /// idle keeps no worker process ([`Pool::processes`] still reports the
    /// configured number). Zero is an [`Error::InvalidArgument`] from
    /// [`build`](Self::build). On a pool of threads it does nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = mp_pool::Pool::builder()
    ///     .processes(2)
    ///     .idle_timeout(Duration::from_millis(50))
    ///     .build()?;
    /// assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
    /// // Later, with its workers gone, a call starts them again.
    /// assert_eq!(pool.apply(square, 5)?, 25);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> PoolBuilder {
        self.idle_timeout = Some(idle);
        self
    }

    /// The context whose processes (or threads) the workers are (by default,
    /// the default start method's). Its [`workers`](Context::workers) pick
    /// how tasks travel: encoded over connections to processes, or as
    /// closures to threads of this process.
    ///
    /// [`Workers::Hosts`] (processes on other hosts, e.g. an
    /// `mp_manager::ClusterContext`): tasks travel as to processes, and a
    /// worker's only handle is its connection (no shared memory with the
    /// pool). What changes:
    ///
    /// - With a [`task_timeout`](Self::task_timeout), a worker sends a small
    ///   message before each call, and a call's time runs from when the pool
    ///   gets it (so a slow link delays a timeout, never hastens it).
    /// - Without one it sends nothing per call (a trivial `map` stays fast),
    ///   so the pool does not know which call a worker was in: a worker that
    ///   dies fails every task it held and had not reported done, whole
    ///   (locally, only the item it was running fails and the rest run
    ///   again). For per-item blame, set a task timeout.
    /// - Functions (tasks, initializer) must live in the main executable,
    ///   as under spawn; the initializer's arguments cannot hold handles of
    ///   this machine.
    ///
    /// The rest is as for local processes: a worker that dies is replaced
    /// (while its host cannot start one, the pool goes on with the workers
    /// of the other hosts and tries again later: see [`Pool`]'s
    /// documentation),
    /// [`max_memory_per_child`](Self::max_memory_per_child) (the worker
    /// measures itself), [`idle_timeout`](Self::idle_timeout), lazy `imap`,
    /// [`Pool::terminate_workers`] and [`Pool::kill_workers`] (forwarded to
    /// the hosts by the context's processes).
    ///
    /// ```
    /// use mp_proc::{Context, StartMethod, Workers, get_context};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// // Any context: its `workers()` picks the transport.
    /// let ctx = get_context(StartMethod::Spawn);
    /// assert_eq!(ctx.workers(), Workers::Processes(StartMethod::Spawn));
    /// let pool = mp_pool::Pool::builder().processes(2).context(ctx).build()?;
    /// assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn context<C: Context>(mut self, ctx: C) -> PoolBuilder {
        let workers = ctx.workers();
        let cpus = ctx.available_cpus();
        let (start, method): (Starter, _) = match workers {
            Workers::Processes(method) => (
                Box::new(move |n, init, limits| {
                    Core::start(Processes::new(ctx, n, init, limits)?, n)
                }),
                Some(method),
            ),
            // A process on another host runs a fresh copy of this
            // executable, as spawn's children do: functions are checked as
            // for spawn, and the process limits apply.
            Workers::Hosts => (
                Box::new(move |n, init, limits| {
                    Core::start(Processes::new(ctx, n, init, limits)?, n)
                }),
                Some(mp_proc::StartMethod::Spawn),
            ),
            Workers::Threads => (
                Box::new(move |n, init, limits: Limits| {
                    Core::start(Threads::new(n, init, limits.maxtasks), n)
                }),
                None,
            ),
            other => (
                Box::new(move |_, _, _| {
                    Err(Error::InvalidArgument {
                        what: format!("no pool transport for workers {other:?}"),
                    })
                }),
                None,
            ),
        };
        self.start = Some((start, method, cpus));
        self
    }

    /// Starts the pool.
    pub fn build(self) -> Result<Pool> {
        let (start, method, cpus) = match self.start {
            Some(s) => s,
            None => {
                let ctx = mp_proc::get_context(mp_proc::get_start_method());
                let b = PoolBuilder::default().context(ctx);
                b.start.expect("just set")
            }
        };
        let processes = self.processes.unwrap_or(cpus);
        if processes == 0 {
            return Err(Error::InvalidArgument {
                what: "processes must be at least 1".into(),
            });
        }
        if self.maxtasks == Some(0) {
            return Err(Error::InvalidArgument {
                what: "maxtasksperchild must be at least 1".into(),
            });
        }
        let invalid = |what: &str| {
            Err(Error::InvalidArgument {
                what: what.to_owned(),
            })
        };
        if self.task_timeout == Some(Duration::ZERO) {
            return invalid("task_timeout must be longer than zero");
        }
        if self.max_memory == Some(0) {
            return invalid("max_memory_per_child must be at least 1 byte");
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return invalid("idle_timeout must be longer than zero");
        }
        if method.is_none() && self.task_timeout.is_some() {
            return invalid("task_timeout needs worker processes: threads cannot be killed");
        }
        if method.is_none() && self.max_memory.is_some() {
            return invalid(
                "max_memory_per_child needs worker processes: threads share one process's memory",
            );
        }
        let limits = Limits {
            maxtasks: self.maxtasks,
            task_timeout: self.task_timeout,
            max_memory: self.max_memory,
            idle: self.idle_timeout,
        };
        let initializer = match self.initializer {
            Some((f, args)) => {
                if let Some(m) = method {
                    f.check(m, "the pool's initializer")?;
                }
                Some((f, args?))
            }
            None => None,
        };
        let core = start(processes, initializer, limits)?;
        Ok(Pool {
            core: Arc::new(core),
            method,
        })
    }
}

#[cfg(test)]
mod limits {
    use super::*;

    /// A builder whose context's workers are threads (as
    /// `mp_dummy::ThreadContext`'s), which never starts.
    fn threads() -> PoolBuilder {
        PoolBuilder {
            start: Some((Box::new(|_, _, _| Err(Error::Terminated)), None, 1)),
            ..PoolBuilder::default()
        }
    }

    fn refused(b: PoolBuilder, setting: &str) {
        match b.build() {
            Err(Error::InvalidArgument { what }) => assert!(what.contains(setting), "{what}"),
            other => panic!("{setting}: expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn process_limits_on_threads_are_refused() {
        refused(
            threads().task_timeout(Duration::from_secs(1)),
            "threads cannot be killed",
        );
        refused(threads().max_memory_per_child(1 << 30), "share one process");
        // An idle timeout is fine on threads (it does nothing there).
        assert!(matches!(
            threads().idle_timeout(Duration::from_secs(1)).build(),
            Err(Error::Terminated)
        ));
    }

    #[test]
    fn zero_limits_are_refused() {
        refused(threads().task_timeout(Duration::ZERO), "task_timeout");
        refused(threads().max_memory_per_child(0), "max_memory_per_child");
        refused(threads().idle_timeout(Duration::ZERO), "idle_timeout");
    }
}
