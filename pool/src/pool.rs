//! `Pool` and `PoolBuilder`: the thin generic shell over the core.

use std::fmt;
use std::sync::Arc;

use mp_proc::plumbing::{ErasedFunction, StarFunction};
use mp_proc::{Function, Payload};

use crate::codec;
use crate::core::Core;
use crate::decode;
use crate::error::{Error, Result};
use crate::imap::{Feed, IMap};
use crate::input;
use crate::job::{JobId, Task, Work};
use crate::result::{AsyncResult, Read};

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
/// A replacement that cannot start (its host is down or cut off, this
/// machine is out of processes or descriptors) does not break the pool
/// while other workers live: the pool goes on with them, logs one warning
/// for the streak of failures (with how many workers it runs), and tries
/// the start again after 100 ms, then after twice as long each time, up to
/// every 5 s (from its scheduler's own wait: no thread, no busy loop); when
/// a start succeeds it is whole again (logged at `INFO`). With no worker
/// left and calls waiting, three starts in a row (the first and two more,
/// 100 and 200 ms apart) fail and then every waiting call fails with the
/// start's error ([`Error::Proc`], e.g. `mp_proc::Error::RemoteStart`) and
/// the pool is broken: a call never hangs on workers that cannot start.
/// (A pool of threads: a worker thread whose replacement cannot start stays
/// on in its place and tries again when it next retires.) The workers of
/// [`PoolBuilder::build`](crate::PoolBuilder::build) must all start, as before.
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
    pub(crate) method: Option<mp_proc::StartMethod>,
}

/// CPython's default chunk size for `map`: items over four chunks per worker.
pub(crate) fn default_chunksize(items: usize, processes: usize) -> usize {
    let (chunk, extra) = (items / (processes * 4), items % (processes * 4));
    (chunk + usize::from(extra > 0)).max(1)
}

impl Pool {
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
