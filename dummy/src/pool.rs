//! `ThreadPool`: mp-pool's `Pool` over [`ThreadContext`], also taking
//! closures and arguments that are not serializable.
//!
//! The pool's scheduler, workers, chunking, error handling and lifecycle
//! are mp-pool's, unchanged: its workers are threads running mp-pool's
//! worker loop. A closure call is one task of that pool whose argument is
//! the id of a chunk of work kept in this process: the worker thread takes
//! the chunk (the closure and its items, never encoded), runs it, and
//! leaves the results where the caller reads them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_pool::{Error, PoolBuilder, Result};

use crate::ThreadContext;

/// A chunk of work: runs its items and stores their results.
type Chunk = Box<dyn FnOnce() + Send>;

/// The chunks submitted and not yet run, by id.
static CHUNKS: Mutex<Option<HashMap<u64, Chunk>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn chunks() -> std::sync::MutexGuard<'static, Option<HashMap<u64, Chunk>>> {
    CHUNKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets chunks that never ran (their call failed or was dropped).
fn forget(ids: impl IntoIterator<Item = u64>) {
    let mut all = chunks();
    if let Some(map) = all.as_mut() {
        for id in ids {
            map.remove(&id);
        }
    }
}

/// The task every closure call is, run by a worker thread of the pool.
fn run_chunk(id: u64) -> u64 {
    let chunk = chunks().as_mut().and_then(|m| m.remove(&id));
    if let Some(chunk) = chunk {
        chunk();
    }
    id
}

/// Where a chunk leaves its results.
type Slots<R> = Arc<Mutex<HashMap<u64, Vec<R>>>>;

fn take<R>(slots: &Slots<R>, id: u64) -> Result<Vec<R>> {
    slots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id)
        .ok_or(Error::Terminated)
}

/// A chunk that applies `f` to `items` and leaves the results in `slots`,
/// with its id.
fn make_chunk<A, R, F>(f: &Arc<F>, items: Vec<A>, slots: &Slots<R>) -> (u64, Chunk)
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let (f, slots) = (f.clone(), slots.clone());
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let chunk: Chunk = Box::new(move || {
        let out: Vec<R> = items.into_iter().map(|a| f(a)).collect();
        slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, out);
    });
    (id, chunk)
}

/// Registers chunks, under one lock.
fn register(made: Vec<(u64, Chunk)>) {
    chunks().get_or_insert_with(HashMap::new).extend(made);
}

/// Registers one chunk of `f` over `items`; returns its id.
fn chunk_of<A, R, F>(f: &Arc<F>, items: Vec<A>, slots: &Slots<R>) -> u64
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let (id, chunk) = make_chunk(f, items, slots);
    register(vec![(id, chunk)]);
    id
}

/// A pool of worker threads: Python's `multiprocessing.dummy.Pool` (and
/// `multiprocessing.pool.ThreadPool`).
///
/// It *is* mp-pool's [`Pool`](mp_pool::Pool) over [`ThreadContext`]
/// ([`pool`](Self::pool) gives it, with its `fn`-pointer methods); on top,
/// its methods take closures (`Fn + Send + Sync`, `apply`: `FnOnce`) and
/// items and results that need not be serializable. A panicking task fails
/// that call with its message; the pool goes on.
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
    /// A pool of `threads` workers (`None`: [`mp_proc::cpu_count`]).
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
        Ok(ThreadPool {
            pool: builder.context(ThreadContext).build()?,
        })
    }

    /// The mp-pool `Pool` underneath (its `fn`-pointer methods work too).
    pub fn pool(&self) -> &mp_pool::Pool {
        &self.pool
    }

    /// The number of worker threads.
    pub fn processes(&self) -> usize {
        self.pool.processes()
    }

    /// Calls `f(args)` on a worker thread and waits (Python's `apply`).
    pub fn apply<A, R, F>(&self, f: F, args: A) -> Result<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: FnOnce(A) -> R + Send + 'static,
    {
        self.apply_async(f, args).get()
    }

    /// Calls `f(args)` on a worker thread (Python's `apply_async`).
    pub fn apply_async<A, R, F>(&self, f: F, args: A) -> AsyncResult<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: FnOnce(A) -> R + Send + 'static,
    {
        let slots: Slots<R> = Arc::default();
        let s = slots.clone();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let chunk: Chunk = Box::new(move || {
            let r = f(args);
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, vec![r]);
        });
        chunks().get_or_insert_with(HashMap::new).insert(id, chunk);
        AsyncResult {
            inner: Some(self.pool.map_async_chunked(run_chunk, [id], 1)),
            ids: vec![id],
            finish: Box::new(move || take(&slots, id)?.pop().ok_or(Error::Terminated)),
        }
    }

    /// `f` on every item; the results in input order (Python's `map`, with
    /// its default chunk size: items over four chunks per worker).
    pub fn map<A, R, F>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.map_async_chunked(f, items, None).get()
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
        self.map_async_chunked(f, items, Some(chunksize)).get()
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
        self.map_async_chunked(f, items, None)
    }

    fn map_async_chunked<A, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        // The input is chunked as it is read; it is collected first only
        // when its length is not known (the default chunk size needs it).
        let items = items.into_iter();
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => self.submit(f, items, lo, chunksize),
            _ => {
                let all: Vec<A> = items.collect();
                let n = all.len();
                self.submit(f, all.into_iter(), n, chunksize)
            }
        }
    }

    /// Submits `f` over the `n` items of `items`, in chunks.
    fn submit<A, R, F>(
        &self,
        f: F,
        items: impl Iterator<Item = A>,
        n: usize,
        chunksize: Option<usize>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let slots: Slots<R> = Arc::default();
        let per = chunksize.unwrap_or_else(|| n.div_ceil(self.processes() * 4).max(1));
        if per == 0 {
            return AsyncResult {
                inner: Some(self.pool.map_async_chunked(run_chunk, Vec::new(), 0)),
                ids: Vec::new(),
                finish: Box::new(|| Err(Error::Terminated)),
            };
        }
        let f = Arc::new(f);
        let mut made = Vec::new();
        let mut items = items.peekable();
        while items.peek().is_some() {
            let chunk: Vec<A> = items.by_ref().take(per).collect();
            made.push(make_chunk(&f, chunk, &slots));
        }
        let ids: Vec<u64> = made.iter().map(|(id, _)| *id).collect();
        register(made);
        // With the default chunk size (four chunks per worker), the pool
        // sends them two at a time: half the round trips, and a worker that
        // is slow still leaves half its share to the others. A chunk size
        // the caller gave is one pool task per chunk, as asked.
        let batch = match chunksize {
            None => ids.len().div_ceil(2 * self.processes()).max(1),
            Some(_) => 1,
        };
        let order = ids.clone();
        AsyncResult {
            inner: Some(self.pool.map_async_chunked(run_chunk, ids.clone(), batch)),
            ids,
            finish: Box::new(move || {
                let mut done = slots.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = Vec::with_capacity(n);
                for id in &order {
                    out.extend(done.remove(id).ok_or(Error::Terminated)?);
                }
                Ok(out)
            }),
        }
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
        self.lazy(f, items, 1, true)
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
        self.lazy(f, items, chunksize, true)
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
        self.lazy(f, items, 1, false)
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
        self.lazy(f, items, chunksize, false)
    }

    fn lazy<A, R, F, I>(&self, f: F, items: I, chunksize: usize, ordered: bool) -> IMap<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        let slots: Slots<R> = Arc::default();
        let f = Arc::new(f);
        let per = chunksize.max(1);
        let mut items = items.into_iter();
        let (s, issued) = (slots.clone(), Arc::new(Mutex::new(HashSet::new())));
        let record = issued.clone();
        let ids = std::iter::from_fn(move || {
            let chunk: Vec<A> = items.by_ref().take(per).collect();
            if chunk.is_empty() {
                return None;
            }
            let id = chunk_of(&f, chunk, &s);
            record.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
            Some(id)
        });
        let inner = if chunksize == 0 {
            self.pool.imap_chunked(run_chunk, ids, 0)
        } else if ordered {
            self.pool.imap(run_chunk, ids)
        } else {
            self.pool.imap_unordered(run_chunk, ids)
        };
        IMap {
            inner,
            slots,
            ready: VecDeque::new(),
            issued,
        }
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

/// The pending result of [`ThreadPool::apply_async`] (a value) or
/// [`ThreadPool::map_async`] (the values in order).
pub struct AsyncResult<T> {
    inner: Option<mp_pool::AsyncResult<Vec<u64>>>,
    ids: Vec<u64>,
    /// Reads the results the chunks left.
    finish: Box<dyn Fn() -> Result<T> + Send + Sync>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").finish_non_exhaustive()
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        forget(self.ids.iter().copied());
    }
}

impl<T> AsyncResult<T> {
    fn inner(&self) -> &mp_pool::AsyncResult<Vec<u64>> {
        self.inner.as_ref().expect("present until get")
    }

    /// Whether it is done.
    pub fn ready(&self) -> bool {
        self.inner().ready()
    }

    /// Waits at most `timeout` (`None`: forever); whether it is done.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.inner().wait(timeout)
    }

    /// Waits for the result.
    pub fn get(mut self) -> Result<T> {
        self.inner.take().expect("present until get").get()?;
        (self.finish)()
    }

    /// Waits at most `timeout` ([`Error::Timeout`] then, and it may be
    /// asked again); the result can be taken once.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner().get_timeout(timeout)?;
        (self.finish)()
    }
}

/// The results of [`ThreadPool::imap`] and friends, in input order or as
/// they finish.
pub struct IMap<R> {
    inner: mp_pool::IMap<u64>,
    slots: Slots<R>,
    ready: VecDeque<R>,
    /// The chunks submitted and not yet read back (bounded by the pool's
    /// read-ahead), to forget if the iterator is dropped early.
    issued: Arc<Mutex<HashSet<u64>>>,
}

impl<R> std::fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap").finish_non_exhaustive()
    }
}

impl<R> Drop for IMap<R> {
    fn drop(&mut self) {
        let issued = std::mem::take(&mut *self.issued.lock().unwrap_or_else(|p| p.into_inner()));
        forget(issued);
    }
}

impl<R: Send + 'static> Iterator for IMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(Ok(r));
            }
            match self.inner.next()? {
                Ok(id) => {
                    self.issued
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    match take(&self.slots, id) {
                        Ok(v) => self.ready.extend(v),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
