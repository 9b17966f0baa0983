//! `ThreadPool`: mp-pool's `Pool` over [`ThreadContext`], whose workers are
//! threads of this process: its tasks are closures (and their items and
//! results need not be serializable). The scheduling, the caller that
//! helps while it waits, the chunking and the results are mp-pool's (its
//! thread transport); this is the typed front of it.

use mp_pool::plumbing;
use mp_pool::{PoolBuilder, Result};

use crate::ThreadContext;

/// The pending result of [`ThreadPool::apply_async`] (a value) or
/// [`ThreadPool::map_async`] (the values in order): mp-pool's. Its
/// [`get`](mp_pool::AsyncResult::get) runs the call's tasks that no worker
/// has started while it waits; its value can be taken once. It can be
/// awaited (its future only polls: the tasks run on the workers, never on
/// the executor's thread) and [cancelled](mp_pool::AsyncResult::cancel)
/// before it starts.
pub type AsyncResult<T> = mp_pool::AsyncResult<T>;

/// The results of [`ThreadPool::imap`] and friends, in input order or as
/// they finish: mp-pool's.
/// [`next_timeout`](mp_pool::IMap::next_timeout) waits for one at most so
/// long.
pub type IMap<R> = mp_pool::IMap<R>;

/// A pool of worker threads: Python's `multiprocessing.dummy.Pool` (and
/// `multiprocessing.pool.ThreadPool`).
///
/// It *is* mp-pool's [`Pool`](mp_pool::Pool) over [`ThreadContext`]
/// ([`pool`](Self::pool) gives it, with its `fn`-pointer methods); its
/// methods take closures (`Fn + Send + Sync`, `apply`: `FnOnce`) and
/// items and results that need not be serializable. A panicking task fails
/// that call with its message; the pool goes on.
///
/// While `map`, `apply` or [`AsyncResult::get`](mp_pool::AsyncResult::get) waits, the calling thread
/// runs the call's tasks that no worker has started yet, as one of the
/// pool's `processes`: never more than `processes` tasks run at once, but a
/// task may run on the caller's thread (its `current_process()` is then the
/// caller's). A pool with an `initializer` leaves every task to its
/// workers, which ran it. So a task may also map on its own pool, even a
/// pool of one thread (CPython's deadlocks).
///
/// ```
/// let pool = mp_dummy::ThreadPool::new(Some(2))?;
/// let offset = 10; // captured
/// assert_eq!(pool.map(move |x: u64| x + offset, 0..4)?, [10, 11, 12, 13]);
/// // Not serializable: an Rc made and dropped inside, a Box<dyn Fn> passed in.
/// let f: Box<dyn Fn() -> u32 + Send> = Box::new(|| 7);
/// assert_eq!(pool.apply(|f: Box<dyn Fn() -> u32 + Send>| f(), f)?, 7);
/// assert!(pool.map(|x: u32| if x == 2 { panic!("two") } else { x }, 0..4).is_err());
/// assert_eq!(pool.map(|x: u32| x, 0..3)?, [0, 1, 2]); // it goes on
/// # Ok::<(), mp_pool::Error>(())
/// ```
///
/// A closure that captures data that is not `Send` does not compile:
///
/// ```compile_fail
/// let pool = mp_dummy::ThreadPool::new(Some(2)).unwrap();
/// let rc = std::rc::Rc::new(1u32);
/// pool.map(move |x: u32| x + *rc, 0..4).unwrap();
/// ```
#[derive(Debug)]
pub struct ThreadPool {
    pool: mp_pool::Pool,
}

/// `multiprocessing.dummy.Pool` is the same thing.
pub type Pool = ThreadPool;

impl ThreadPool {
    /// A pool of `threads` workers (`None`: [`mp_proc::available_cpus`], the
    /// CPUs this process may use, bounded by its cgroup quota).
    pub fn new(threads: Option<usize>) -> Result<ThreadPool> {
        let b = mp_pool::Pool::builder();
        Self::from_builder(match threads {
            Some(n) => b.processes(n),
            None => b,
        })
    }

    /// A pool with `builder`'s settings (`processes`, `initializer`,
    /// `maxtasksperchild`), on threads.
    pub fn from_builder(builder: PoolBuilder) -> Result<ThreadPool> {
        let pool = builder.context(ThreadContext).build()?;
        Ok(ThreadPool { pool })
    }

    /// The mp-pool `Pool` underneath (its `fn`-pointer methods work too).
    pub fn pool(&self) -> &mp_pool::Pool {
        &self.pool
    }

    /// The number of worker threads.
    pub fn processes(&self) -> usize {
        self.pool.processes()
    }

    /// Calls `f(args)` in the pool and waits (Python's `apply`).
    pub fn apply<A, R, F>(&self, f: F, args: A) -> Result<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: FnOnce(A) -> R + Send + 'static,
    {
        self.apply_async(f, args).get()
    }

    /// Calls `f(args)` in the pool (Python's `apply_async`).
    pub fn apply_async<A, R, F>(&self, f: F, args: A) -> AsyncResult<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: FnOnce(A) -> R + Send + 'static,
    {
        plumbing::apply_async(&self.pool, f, args)
    }

    /// `f` on every item; the results in input order (Python's `map`, with
    /// its default chunk size: items over four chunks per worker).
    pub fn map<A, R, F>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.map_async(f, items).get()
    }

    /// As [`map`](Self::map), `chunksize` items per task.
    pub fn map_chunked<A, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        plumbing::map_async(&self.pool, f, items, Some(chunksize)).get()
    }

    /// As [`map`](Self::map), without waiting (Python's `map_async`).
    pub fn map_async<A, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        plumbing::map_async(&self.pool, f, items, None)
    }

    /// `f` on every item, as an iterator of results in input order (Python's
    /// `imap`); the input is pulled lazily, so it may be endless.
    pub fn imap<A, R, F, I>(&self, f: F, items: I) -> IMap<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        plumbing::imap(&self.pool, f, items, 1, true)
    }

    /// As [`imap`](Self::imap), `chunksize` items per task.
    pub fn imap_chunked<A, R, F, I>(&self, f: F, items: I, chunksize: usize) -> IMap<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        plumbing::imap(&self.pool, f, items, chunksize, true)
    }

    /// As [`imap`](Self::imap), results as they finish (Python's `imap_unordered`).
    pub fn imap_unordered<A, R, F, I>(&self, f: F, items: I) -> IMap<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        plumbing::imap(&self.pool, f, items, 1, false)
    }

    /// As [`imap_unordered`](Self::imap_unordered), `chunksize` items per task.
    pub fn imap_unordered_chunked<A, R, F, I>(&self, f: F, items: I, chunksize: usize) -> IMap<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        plumbing::imap(&self.pool, f, items, chunksize, false)
    }

    /// As [`imap_chunked`](Self::imap_chunked), with at most `buffersize`
    /// tasks submitted ahead of the consumer (mp-pool's
    /// [`Pool::imap_buffered`](mp_pool::Pool::imap_buffered)).
    ///
    /// ```
    /// let pool = mp_dummy::ThreadPool::new(Some(2))?;
    /// let it = pool.imap_buffered(|x: u64| x * 2, 0..5, 1, 2);
    /// assert_eq!(it.collect::<Result<Vec<_>, _>>()?, [0, 2, 4, 6, 8]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn imap_buffered<A, R, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMap<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        plumbing::imap_buffered(&self.pool, f, items, (chunksize, Some(buffersize)), true)
    }

    /// As [`imap_unordered_chunked`](Self::imap_unordered_chunked), with at
    /// most `buffersize` tasks submitted ahead of the consumer.
    ///
    /// ```
    /// let pool = mp_dummy::ThreadPool::new(Some(2))?;
    /// let mut got = pool
    ///     .imap_unordered_buffered(|x: u64| x * 2, 0..5, 2, 1)
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// got.sort();
    /// assert_eq!(got, [0, 2, 4, 6, 8]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn imap_unordered_buffered<A, R, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMap<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        plumbing::imap_buffered(&self.pool, f, items, (chunksize, Some(buffersize)), false)
    }

    /// No more tasks; workers exit when the queued ones are done.
    pub fn close(&self) {
        self.pool.close()
    }

    /// Stops now: queued tasks fail. A task that is running finishes first
    /// (threads cannot be killed).
    pub fn terminate(&self) {
        self.pool.terminate()
    }

    /// Waits for the workers to exit (after `close` or `terminate`).
    pub fn join(&self) -> Result<()> {
        self.pool.join()
    }
}
