//! `Pool` and `PoolBuilder`: the thin generic shell over the core.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mp_proc::plumbing::{ErasedFunction, Packed, StarFunction};
use mp_proc::{Context, Function, Payload, Workers};

use crate::codec;
use crate::core::Core;
use crate::decode;
use crate::error::{Error, Result};
use crate::imap::{Feed, IMap};
use crate::input;
use crate::job::{JobId, Task, Work};
use crate::result::{AsyncResult, Read};
use crate::scheduler::Limits;
use crate::transport::process::Processes;
use crate::transport::thread::Threads;

/// A pool of worker processes, Python's `multiprocessing.Pool`.
///
/// Tasks are plain functions (`fn(A) -> R`, as `Process` targets) and their
/// arguments and results travel encoded, so the same pool works under every
/// start method and over any [`mp_proc::Context`].
///
/// Beyond CPython: a task that panics fails with its message and the pool
/// goes on; a worker that dies fails only the tasks it held
/// ([`Error::WorkerDied`]) and is replaced, so no call ever hangs on a dead
/// worker; `imap` pulls its input lazily; Ctrl-C while a call waits is
/// [`Error::Interrupted`]. Dropping the pool terminates it, as leaving a
/// `with Pool()` block does.
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let pool = mp_pool::Pool::new(Some(2))?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 12)?, 144);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub struct Pool {
    pub(crate) core: Arc<Core>,
    method: Option<mp_proc::StartMethod>,
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
    /// had run or not): use chunksize 1 for tasks with side effects.
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
    ///     let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    ///     // SAFETY: setrlimit reads one rlimit we own.
    ///     unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
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

/// CPython's default chunk size for `map`: items over four chunks per worker.
pub(crate) fn default_chunksize(items: usize, processes: usize) -> usize {
    let (chunk, extra) = (items / (processes * 4), items % (processes * 4));
    (chunk + usize::from(extra > 0)).max(1)
}

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

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.core.processes
    }

    pub(crate) fn check(&self, func: &ErasedFunction) -> Result<()> {
        if let Some(m) = self.method {
            func.check(m, "a pool task")?;
        }
        Ok(())
    }

    /// Submits a call of `func` on every item, `chunksize` items per task
    /// (`None`: CPython's default). Each task's arguments are encoded into
    /// one buffer, with no allocation per item.
    fn submit<A: Payload, R: Send + 'static>(
        &self,
        func: ErasedFunction,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        read: Read<R>,
    ) -> AsyncResult<R> {
        if chunksize == Some(0) {
            return AsyncResult::failed(zero_chunksize(), read);
        }
        if let Err(e) = self.check(&func) {
            return AsyncResult::failed(e, read);
        }
        let items: Vec<A> = match input::collect(items) {
            Ok(items) => items,
            Err(e) => return AsyncResult::failed(e, read),
        };
        let n = items.len();
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(n, self.processes()));
        let job = match self.core.new_job(Some(n)) {
            Ok(job) => job,
            Err(e) => return AsyncResult::failed(e, read),
        };
        // Each task is queued as soon as it is encoded: the workers start on
        // the first while the rest are encoded (a map of 100k small items
        // ran at half the speed when queued all at once).
        for (c, chunk) in items.chunks(chunksize).enumerate() {
            self.core.submit([Task {
                job,
                start: c * chunksize,
                count: chunk.len(),
                work: Work::Encoded {
                    func,
                    items: codec::encode_items(chunk),
                },
            }]);
        }
        AsyncResult::new(self.core.clone(), job, n, read)
    }
}

pub(crate) fn zero_chunksize() -> Error {
    Error::InvalidArgument {
        what: "chunksize must be at least 1".into(),
    }
}

impl Pool {
    /// Calls `f(args)` in a worker and waits for the result (Python's `apply`).
    pub fn apply<A: Payload, R: Payload>(&self, f: fn(A) -> R, args: A) -> Result<R> {
        self.apply_async(f, args).get()
    }

    /// Calls `f(args)` in a worker (Python's `apply_async`).
    pub fn apply_async<A: Payload, R: Payload>(&self, f: fn(A) -> R, args: A) -> AsyncResult<R> {
        self.submit(
            Function::new(f).erased(),
            [args],
            Some(1),
            Read::decoded(decode::decode_one::<R>),
        )
    }

    /// `f` on every item, results in input order (Python's `map`, with its
    /// default chunk size). The input is read first, on the calling thread:
    /// if it panics the call fails with [`Error::InputPanicked`] and runs
    /// nothing.
    pub fn map<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>> {
        self.map_async(f, items).get()
    }

    /// As [`map`](Self::map), `chunksize` items per task.
    pub fn map_chunked<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>> {
        self.map_async_chunked(f, items, chunksize).get()
    }

    /// As [`map`](Self::map), without waiting (Python's `map_async`).
    pub fn map_async<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> AsyncResult<Vec<R>> {
        self.submit(
            Function::new(f).erased(),
            items,
            None,
            Read::decoded(decode::decode_all::<R>),
        )
    }

    /// As [`map_async`](Self::map_async), `chunksize` items per task.
    pub fn map_async_chunked<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> AsyncResult<Vec<R>> {
        self.submit(
            Function::new(f).erased(),
            items,
            Some(chunksize),
            Read::decoded(decode::decode_all::<R>),
        )
    }

    /// `f` applied to each tuple's parts (Python's `starmap`).
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 {
    ///     a + b
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// let f: fn(u32, u32) -> u32 = add;
    /// assert_eq!(pool.starmap(f, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn starmap<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<Vec<R>> {
        self.starmap_async(f, items).get()
    }

    /// As [`starmap`](Self::starmap), without waiting (Python's `starmap_async`).
    pub fn starmap_async<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
    ) -> AsyncResult<Vec<R>> {
        self.submit(
            f.erase(),
            items,
            None,
            Read::decoded(decode::decode_all::<R>),
        )
    }

    /// As [`starmap`](Self::starmap), `chunksize` tuples per task (Python's
    /// `starmap(func, iterable, chunksize)`).
    ///
    /// ```
    /// fn mul(a: u64, b: u64) -> u64 {
    ///     a * b
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// let f: fn(u64, u64) -> u64 = mul;
    /// let tuples: Vec<(u64, u64)> = (0..100).zip((0..100).rev()).collect();
    /// let expected: Vec<u64> = tuples.iter().map(|&(a, b)| a * b).collect();
    /// assert_eq!(pool.starmap_chunked(f, tuples, 20)?, expected);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn starmap_chunked<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> Result<Vec<R>> {
        self.starmap_async_chunked(f, items, chunksize).get()
    }

    /// As [`starmap_async`](Self::starmap_async), `chunksize` tuples per task
    /// (Python's `starmap_async(func, iterable, chunksize)`).
    ///
    /// ```
    /// fn mul(a: u64, b: u64) -> u64 {
    ///     a * b
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// let f: fn(u64, u64) -> u64 = mul;
    /// let r = pool.starmap_async_chunked(f, [(2, 3), (4, 5), (6, 7)], 2);
    /// assert_eq!(r.get()?, [6, 20, 42]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn starmap_async_chunked<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> AsyncResult<Vec<R>> {
        self.submit(
            f.erase(),
            items,
            Some(chunksize),
            Read::decoded(decode::decode_all::<R>),
        )
    }

    fn lazy<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        (chunksize, buffersize): (usize, Option<usize>),
        ordered: bool,
    ) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        let take = decode::take_decoded::<R>;
        if chunksize == 0 {
            return IMap::failed(zero_chunksize(), take);
        }
        if buffersize == Some(0) {
            return IMap::failed(crate::imap::zero_buffersize(), take);
        }
        let func = Function::new(f).erased();
        if let Err(e) = self.check(&func) {
            return IMap::failed(e, take);
        }
        match self.core.new_job(None) {
            Ok(job) => {
                let feed = Box::new(Encoded {
                    func,
                    items: items.into_iter(),
                });
                IMap::new(
                    self.core.clone(),
                    job,
                    feed,
                    (chunksize, buffersize),
                    ordered,
                    take,
                )
            }
            Err(e) => IMap::failed(e, take),
        }
    }

    /// `f` on every item, as an iterator of results in input order (Python's
    /// `imap`). The input is pulled as workers free up, a bounded number of
    /// items ahead (`max(4 * processes * chunksize, 256)`), so it may be endless.
    ///
    /// If pulling the input panics, the iterator yields the results of the
    /// tasks before, then [`Error::InputPanicked`] in place of the task being
    /// pulled (its items pulled so far are dropped, as CPython's chunk), then
    /// ends: as CPython's `next()` raises the input's exception at its
    /// position. The panic does not unwind out of `imap` or `next`.
    pub fn imap<A: Payload, R: Payload, I>(&self, f: fn(A) -> R, items: I) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.lazy(f, items, (1, None), true)
    }

    /// As [`imap`](Self::imap), `chunksize` items per task.
    pub fn imap_chunked<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.lazy(f, items, (chunksize, None), true)
    }

    /// As [`imap_chunked`](Self::imap_chunked), with at most `buffersize`
    /// tasks submitted ahead of the consumer (CPython 3.14's
    /// `Executor.map(buffersize=)`): the input is pulled only as results are
    /// taken, so it holds at most `buffersize * chunksize` items not yet
    /// yielded. `buffersize` 0 is [`Error::InvalidArgument`] (yielded by
    /// the iterator, as a `chunksize` of 0).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// let pulled = Arc::new(AtomicUsize::new(0));
    /// let counter = pulled.clone();
    /// let input = (0..100).inspect(move |_| {
    ///     counter.fetch_add(1, Ordering::SeqCst);
    /// });
    /// let mut it = pool.imap_buffered(square, input, 1, 3);
    /// assert_eq!(it.next().transpose()?, Some(0));
    /// assert!(pulled.load(Ordering::SeqCst) <= 1 + 3);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn imap_buffered<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.lazy(f, items, (chunksize, Some(buffersize)), true)
    }

    /// As [`imap`](Self::imap), results in the order they finish (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<A: Payload, R: Payload, I>(&self, f: fn(A) -> R, items: I) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.lazy(f, items, (1, None), false)
    }

    /// As [`imap_unordered`](Self::imap_unordered), `chunksize` items per task.
    pub fn imap_unordered_chunked<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.lazy(f, items, (chunksize, None), false)
    }

    /// As [`imap_unordered_chunked`](Self::imap_unordered_chunked), with at
    /// most `buffersize` tasks submitted ahead of the consumer (see
    /// [`imap_buffered`](Self::imap_buffered)).
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// let mut got: Vec<u64> = pool
    ///     .imap_unordered_buffered(square, 0..10, 2, 2)
    ///     .collect::<Result<_, _>>()?;
    /// got.sort();
    /// assert_eq!(got, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn imap_unordered_buffered<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMap<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.lazy(f, items, (chunksize, Some(buffersize)), false)
    }

    /// Takes no more work; the workers finish what was submitted, then exit
    /// (Python's `close`).
    pub fn close(&self) {
        self.core.close()
    }

    /// Stops the workers now; unfinished calls fail with [`Error::Terminated`]
    /// (Python's `terminate`).
    pub fn terminate(&self) {
        self.core.terminate(Error::Terminated)
    }

    /// Ends the current workers now with `SIGTERM` and goes on with fresh
    /// ones (the name of CPython 3.14's executors): the items they were
    /// running fail with [`Error::WorkerDied`] (exit code -15), tasks they
    /// held but had not started run on the new workers, and later calls
    /// succeed; fresh workers start at once. A task that ignores `SIGTERM`
    /// keeps its worker (and the tasks it holds) until it ends:
    /// [`kill_workers`](Self::kill_workers) ends it. On a pool of threads it
    /// does nothing: threads cannot be ended from outside.
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// pool.terminate_workers();
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn terminate_workers(&self) {
        self.core.end_workers(libc::SIGTERM)
    }

    /// As [`terminate_workers`](Self::terminate_workers), with `SIGKILL`
    /// (exit code -9), which a hung task cannot ignore.
    ///
    /// ```
    /// fn hang(started: mp_proc::Event) {
    ///     started.set();
    ///     loop {
    ///         std::thread::park();
    ///     }
    /// }
    /// let pool = mp_pool::Pool::new(Some(1))?;
    /// let started = mp_proc::Event::new()?;
    /// let hung = pool.apply_async(hang, started.clone());
    /// started.wait(None)?;
    /// pool.kill_workers();
    /// assert!(matches!(hung.get(), Err(mp_pool::Error::WorkerDied { exitcode: -9, .. })));
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn kill_workers(&self) {
        self.core.end_workers(libc::SIGKILL)
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) ([`Error::StillRunning`] before).
    pub fn join(&self) -> Result<()> {
        self.core.join()
    }
}

impl Drop for Pool {
    /// Terminates the pool and waits for its workers, as leaving a
    /// `with Pool()` block does: no process is left behind.
    fn drop(&mut self) {
        self.core.terminate(Error::Terminated);
        let _ = self.core.join();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.core.processes)
            .field("state", &self.core.run_state())
            .finish()
    }
}

/// An imap's input, encoded a task at a time.
struct Encoded<I> {
    func: ErasedFunction,
    items: I,
}

impl<A: Payload, I: Iterator<Item = A> + Send> Feed for Encoded<I> {
    fn next_task(&mut self, job: JobId, start: usize, max: usize) -> Result<Option<Task>> {
        let chunk: Vec<A> = input::pull(&mut self.items, max)?;
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some(Task {
            job,
            start,
            count: chunk.len(),
            work: Work::Encoded {
                func: self.func,
                items: codec::encode_items(&chunk),
            },
        }))
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
