//! `ThreadPool`: mp-pool's `Pool` over [`ThreadContext`], also taking
//! closures and arguments that are not serializable.
//!
//! The pool's scheduler, workers, chunking, error handling and lifecycle
//! are mp-pool's, unchanged: its workers are threads running mp-pool's
//! worker loop. A closure call is one task of that pool whose argument is
//! the id of a chunk of work kept in this process: the worker thread takes
//! the chunk (the closure and its items, never encoded), runs it, and
//! leaves the results where the caller reads them.
//!
//! A caller waiting in `get` (`map`, `apply`) does not only wait: it runs
//! the chunks of its call that no worker has started, in order, as the
//! workers take them (task inlining, as in .NET's `Task.Wait` and Java's
//! `ForkJoinTask.join`). The pool's `processes` permits bound how many
//! chunks run at once, whoever runs them, so a `ThreadPool(1)` still runs
//! one task at a time. A small `map` then costs about a loop on the caller
//! instead of four thread wake-ups (caller to scheduler to worker to
//! scheduler to caller), and the chunk at the front writes its results
//! straight into the output `Vec`.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mp_pool::in_process::{Waiting, catch_task};
use mp_pool::{Error, PoolBuilder, Result};

use crate::ThreadContext;
use crate::sync::{lock, wait_until};

/// A chunk of work: runs its items and leaves their outcome with its call.
type Chunk = Box<dyn FnOnce() + Send>;

/// A chunk not run yet, and the permits of its pool.
struct Entry {
    permits: Arc<Permits>,
    chunk: Chunk,
}

/// The chunks submitted and not yet run, by id.
static CHUNKS: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn chunks() -> MutexGuard<'static, Option<HashMap<u64, Entry>>> {
    lock(&CHUNKS)
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

/// Takes chunk `id` to run it, if nobody has.
fn take_chunk(id: u64) -> Option<Chunk> {
    chunks().as_mut()?.remove(&id).map(|e| e.chunk)
}

/// The task every closure call is, run by a worker thread of the pool: it
/// takes a permit, then the chunk (a caller may have run it meanwhile).
fn run_chunk(id: u64) -> u64 {
    let permits = chunks()
        .as_ref()
        .and_then(|m| m.get(&id))
        .map(|e| e.permits.clone());
    if let Some(permits) = permits {
        let _permit = permits.acquire(true);
        if let Some(chunk) = take_chunk(id) {
            chunk();
        }
    }
    id
}

/// Registers chunks, under one lock.
fn register(permits: &Arc<Permits>, made: Vec<(u64, Chunk)>) {
    let entries = made.into_iter().map(|(id, chunk)| {
        let permits = permits.clone();
        (id, Entry { permits, chunk })
    });
    chunks().get_or_insert_with(HashMap::new).extend(entries);
}

/// How many chunks of a pool may run at once: its `processes`, whichever
/// threads run them (its workers, or callers that help while they wait).
#[derive(Debug)]
struct Permits {
    id: u64,
    free: Mutex<usize>,
    freed: Condvar,
}

thread_local! {
    /// The permits (by id) this thread holds: what it runs meanwhile takes
    /// no other (a task that maps on its own pool runs that map's chunks
    /// under the permit it has).
    static HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A permit held (or the one this thread already held, then `None`).
struct Permit<'a>(Option<&'a Permits>);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            HELD.with(|h| {
                let mut h = h.borrow_mut();
                if let Some(i) = h.iter().rposition(|&id| id == p.id) {
                    h.remove(i);
                }
            });
            *lock(&p.free) += 1;
            p.freed.notify_one();
        }
    }
}

impl Permits {
    fn new(n: usize) -> Arc<Permits> {
        Arc::new(Permits {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            free: Mutex::new(n),
            freed: Condvar::new(),
        })
    }

    fn held(&self) -> bool {
        HELD.with(|h| h.borrow().contains(&self.id))
    }

    /// A permit: the one this thread holds, else a free one, waiting for
    /// it if `wait` (else `None` when none is free).
    fn acquire(&self, wait: bool) -> Option<Permit<'_>> {
        if self.held() {
            return Some(Permit(None));
        }
        let until = if wait { None } else { Some(Instant::now()) };
        let (mut free, got) = wait_until(&self.freed, lock(&self.free), until, |f| *f > 0);
        if !got {
            return None;
        }
        *free -= 1;
        drop(free);
        HELD.with(|h| h.borrow_mut().push(self.id));
        Some(Permit(Some(self)))
    }
}

/// Emptied input buffers of chunks, kept by a pool for the chunks of its
/// next calls: a `map` then does not allocate (and fault in) its input anew
/// every call, and a call's memory is about its output's. (Without it, a
/// call's input and output together sat right at glibc's trim threshold,
/// which then gave the heap back and faulted it in again in every call, ten
/// times slower.) Only buffers of at least [`SPARE_MIN`] bytes are kept,
/// [`SPARE_COUNT`] of them at most, and [`SPARE_BYTES`] in all.
///
/// A buffer is kept with the thread that touched it last (the one that
/// gives it back), and a thread takes its own first: memory another CPU
/// touched last is in that CPU's cache, and writing it again costs a
/// transfer or an invalidation per cache line. (A caller that read its
/// input into buffers a worker had filled with results took ten times as
/// long to read it.)
#[derive(Debug, Default)]
struct Spare {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The buffers: their item type, size, last toucher ([`toucher`]).
    bufs: Vec<(TypeId, usize, u64, Box<dyn Any + Send>)>,
    bytes: usize,
}

/// This thread, as the last toucher of a spare buffer.
fn toucher() -> u64 {
    thread_local! {
        static TOUCHER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOUCHER.with(|w| *w)
}

/// The smallest buffer worth keeping.
const SPARE_MIN: usize = 4 << 10;
/// The most buffers a pool keeps.
const SPARE_COUNT: usize = 64;
/// The most memory a pool keeps in spare buffers.
const SPARE_BYTES: usize = 8 << 20;

impl Spare {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        lock(&self.kept)
    }

    /// An empty buffer for items of type `A` (a spare one if there is,
    /// one this thread touched last if there is).
    fn take<A: Send + 'static>(&self) -> Vec<A> {
        let (ty, me) = (TypeId::of::<A>(), toucher());
        let mut kept = self.lock();
        let found = (kept.bufs.iter())
            .rposition(|(t, _, w, _)| *t == ty && *w == me)
            .or_else(|| kept.bufs.iter().rposition(|(t, ..)| *t == ty));
        let Some(i) = found else {
            return Vec::new();
        };
        let (_, bytes, _, buf) = kept.bufs.swap_remove(i);
        kept.bytes -= bytes;
        drop(kept);
        buf.downcast::<Vec<A>>().map(|b| *b).unwrap_or_default()
    }

    /// Keeps `buf`'s memory, last touched by this thread, for a later
    /// chunk, if it is worth it and there is room.
    fn give<A: Send + 'static>(&self, mut buf: Vec<A>) {
        buf.clear();
        let bytes = buf.capacity().saturating_mul(std::mem::size_of::<A>());
        if bytes < SPARE_MIN {
            return;
        }
        let mut kept = self.lock();
        if kept.bufs.len() < SPARE_COUNT && kept.bytes.saturating_add(bytes) <= SPARE_BYTES {
            kept.bytes += bytes;
            kept.bufs
                .push((TypeId::of::<A>(), bytes, toucher(), Box::new(buf)));
        }
    }
}

/// What the chunks of one `map` or `apply` leave: their results in order,
/// or the first failure (a chunk's panic, or the pool's: terminated, not
/// running).
///
/// The results of the chunk at the front go straight into the output, as
/// they are computed (chunks are taken in order, so the front is mostly
/// being computed); a chunk done out of order waits in `parts` and joins the
/// output when the front reaches it.
struct Call<R> {
    progress: Mutex<Progress<R>>,
    settled: Condvar,
    /// `progress.settled()`, readable without the lock (set with it held).
    done: AtomicBool,
}

struct Progress<R> {
    /// The results of the chunks before `front`, in order (`None` while the
    /// chunk at `front` writes into it).
    out: Option<Vec<R>>,
    front: usize,
    /// The results of chunks done out of order, by their place.
    parts: Vec<Option<Vec<R>>>,
    /// Chunks not run yet.
    left: usize,
    failed: Option<Error>,
}

impl<R> Progress<R> {
    fn settled(&self) -> bool {
        self.left == 0 || self.failed.is_some()
    }

    /// Chunk `i` ran and left `v` (`None`: it was the front, and wrote
    /// its results into `out`); the buffers of parts that join the output
    /// go to `spare`.
    fn done(&mut self, i: usize, v: Option<Vec<R>>, spare: &Spare)
    where
        R: Send + 'static,
    {
        if let Some(slot) = self.parts.get_mut(i) {
            self.left = self.left.saturating_sub(1);
            match v {
                Some(v) => *slot = Some(v),
                None => self.front += 1,
            }
        }
        // What waited for the front joins the output.
        while let Some(out) = self.out.as_mut() {
            match self.parts.get_mut(self.front).and_then(Option::take) {
                Some(mut part) => {
                    out.append(&mut part);
                    spare.give(part);
                    self.front += 1;
                }
                None => break,
            }
        }
    }
}

impl<R> Call<R> {
    /// A call of `chunks` chunks and `items` results in all.
    fn new(chunks: usize, items: usize) -> Arc<Call<R>> {
        Arc::new(Call {
            progress: Mutex::new(Progress {
                out: Some(Vec::with_capacity(items)),
                front: 0,
                parts: (0..chunks).map(|_| None).collect(),
                left: chunks,
                failed: None,
            }),
            settled: Condvar::new(),
            done: AtomicBool::new(chunks == 0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Progress<R>> {
        lock(&self.progress)
    }

    /// Runs chunk `i`, whose `results` are computed as a worker runs a task
    /// (out of order, into a buffer from `spare`).
    fn run<I: Iterator<Item = R>>(&self, i: usize, spare: &Spare, results: impl FnOnce() -> I)
    where
        R: Send + 'static,
    {
        let front = {
            let mut p = self.lock();
            if p.front == i { p.out.take() } else { None }
        };
        let outcome = match front {
            Some(mut out) => catch_task(|| out.extend(results())).map(|()| (Some(out), None)),
            None => catch_task(|| {
                let mut part: Vec<R> = spare.take();
                part.extend(results());
                part
            })
            .map(|v| (None, Some(v))),
        };
        let mut p = self.lock();
        match outcome {
            Ok((out, part)) => {
                if out.is_some() {
                    p.out = out;
                }
                p.done(i, part, spare);
            }
            Err(e) => {
                p.failed.get_or_insert(e);
            }
        }
        if p.settled() {
            self.done.store(true, Ordering::Release);
            self.settled.notify_all();
        }
    }

    /// The pool failed the call.
    fn fail(&self, e: Error) {
        self.lock().failed.get_or_insert(e);
        self.done.store(true, Ordering::Release);
        self.settled.notify_all();
    }

    fn is_settled(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until the call is settled or `deadline` passes; whether it is.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let p = self.lock();
        if p.settled() {
            return true;
        }
        let _waiting = Waiting::new();
        wait_until(&self.settled, p, deadline, |p| p.settled()).1
    }

    /// The results in order, once settled (taken: a second time is
    /// [`Error::Terminated`]).
    fn take(&self) -> Result<Vec<R>> {
        let mut p = self.lock();
        if let Some(e) = &p.failed {
            return Err(e.clone());
        }
        match p.out.take() {
            Some(out) if p.front == p.parts.len() => Ok(out),
            _ => Err(Error::Terminated),
        }
    }
}

/// Chunk `i` of `call`: `f` on `items`, whose buffer goes to `spare` after.
fn make_chunk<A, R, F>(
    f: &Arc<F>,
    mut items: Vec<A>,
    call: &Arc<Call<R>>,
    i: usize,
    spare: &Arc<Spare>,
) -> (u64, Chunk)
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let (f, call, spare) = (f.clone(), call.clone(), spare.clone());
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let chunk: Chunk = Box::new(move || {
        call.run(i, &spare, || items.drain(..).map(|a| f(a)));
        spare.give(items);
    });
    (id, chunk)
}

/// Where an imap's chunks leave their outcomes, by chunk id.
type Slots<R> = Arc<Mutex<HashMap<u64, Result<Vec<R>>>>>;

/// An imap's chunk of `f` over `items`, registered; returns its id.
fn imap_chunk<A, R, F>(permits: &Arc<Permits>, f: &Arc<F>, items: Vec<A>, slots: &Slots<R>) -> u64
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let (f, s) = (f.clone(), slots.clone());
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let chunk: Chunk = Box::new(move || {
        let out = catch_task(|| items.into_iter().map(|a| f(a)).collect::<Vec<R>>());
        lock(&s).insert(id, out);
    });
    register(permits, vec![(id, chunk)]);
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
/// While `map`, `apply` or [`AsyncResult::get`] waits, the calling thread
/// runs the call's tasks that no worker has started yet, as one of the
/// pool's `processes`: never more than `processes` tasks run at once, but a
/// task may run on the caller's thread (its `current_process()` is then the
/// caller's). A pool with an `initializer` leaves every task to its
/// workers, which ran it. So a task may also map on its own pool, even a
/// pool of one thread (CPython's deadlocks). A pool keeps the emptied
/// buffers of a `map`'s input (up to 8 MiB) for its next calls.
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
    permits: Arc<Permits>,
    spare: Arc<Spare>,
    /// Callers run chunks no worker has started while they wait (not when
    /// the pool has an initializer: its tasks run where it ran).
    helps: bool,
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
        let helps = !builder.has_initializer();
        let pool = builder.context(ThreadContext).build()?;
        Ok(ThreadPool {
            permits: Permits::new(pool.processes()),
            spare: Arc::default(),
            pool,
            helps,
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
        let call = Call::new(1, 1);
        let c = call.clone();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let spare = self.spare.clone();
        let chunk: Chunk = Box::new(move || c.run(0, &spare, || std::iter::once_with(|| f(args))));
        register(&self.permits, vec![(id, chunk)]);
        self.start(vec![id], 1, call, |mut v| v.pop().ok_or(Error::Terminated))
    }

    /// Hands the chunks `ids` of `call` to the pool, `batch` per task.
    fn start<R, T>(
        &self,
        ids: Vec<u64>,
        batch: usize,
        call: Arc<Call<R>>,
        finish: fn(Vec<R>) -> Result<T>,
    ) -> AsyncResult<T>
    where
        R: Send + 'static,
        T: 'static,
    {
        let c = call.clone();
        let tasks = self
            .pool
            .map_async_chunked(run_chunk, ids.clone(), batch)
            .on_error(move |e| c.fail(e));
        let permits = self.helps.then(|| self.permits.clone());
        AsyncResult {
            _tasks: tasks,
            ids,
            permits,
            settled: call.clone(),
            finish: Box::new(move || finish(call.take()?)),
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
        let per = chunksize.unwrap_or_else(|| n.div_ceil(self.processes() * 4).max(1));
        if per == 0 {
            // The pool's own answer to a chunk size of 0 (an error, at once).
            return self.start(Vec::new(), 0, Call::new(0, 0), Ok);
        }
        let mut parts = Vec::new();
        let mut items = items.peekable();
        while items.peek().is_some() {
            let mut part: Vec<A> = self.spare.take();
            part.extend(items.by_ref().take(per));
            parts.push(part);
        }
        let total = parts.iter().map(Vec::len).sum();
        let (f, call) = (Arc::new(f), Call::new(parts.len(), total));
        let made: Vec<(u64, Chunk)> = parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| make_chunk(&f, part, &call, i, &self.spare))
            .collect();
        let ids: Vec<u64> = made.iter().map(|(id, _)| *id).collect();
        register(&self.permits, made);
        // With the default chunk size (four chunks per worker), the pool
        // sends them two at a time: half the round trips, and a worker that
        // is slow still leaves half its share to the others. A chunk size
        // the caller gave is one pool task per chunk, as asked.
        let batch = match chunksize {
            None => ids.len().div_ceil(2 * self.processes()).max(1),
            Some(_) => 1,
        };
        self.start(ids, batch, call, Ok)
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
        let (f, permits) = (Arc::new(f), self.permits.clone());
        let per = chunksize.max(1);
        let mut items = items.into_iter();
        let (s, issued) = (slots.clone(), Arc::new(Mutex::new(HashSet::new())));
        let record = issued.clone();
        let ids = std::iter::from_fn(move || {
            let chunk: Vec<A> = items.by_ref().take(per).collect();
            if chunk.is_empty() {
                return None;
            }
            let id = imap_chunk(&permits, &f, chunk, &s);
            lock(&record).insert(id);
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
///
/// [`get`](Self::get) does not only wait: while no worker has started some
/// of the call's chunks, the calling thread runs them itself, as one of the
/// pool's `processes` (no more than that many chunks run at once, whichever
/// threads run them). A small `map` then costs about what a plain loop
/// would, instead of a round of thread wake-ups. A pool with an
/// `initializer` leaves every chunk to its workers, which ran it.
pub struct AsyncResult<T> {
    /// The pool's side of the call (its errors reach `settled`).
    _tasks: mp_pool::AsyncResult<Vec<u64>>,
    /// The call's chunks, in order.
    ids: Vec<u64>,
    /// The pool's permits, if callers help it.
    permits: Option<Arc<Permits>>,
    settled: Arc<dyn Settled>,
    /// Reads the results the chunks left.
    finish: Box<dyn Fn() -> Result<T> + Send + Sync>,
}

/// A call that ends: waiting for it, without its result's type.
trait Settled: Send + Sync {
    fn is_settled(&self) -> bool;
    fn wait_until(&self, deadline: Option<Instant>) -> bool;
}

impl<R: Send> Settled for Call<R> {
    fn is_settled(&self) -> bool {
        Call::is_settled(self)
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        Call::wait_until(self, deadline)
    }
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
    /// Whether it is done.
    pub fn ready(&self) -> bool {
        self.settled.is_settled()
    }

    /// Waits at most `timeout` (`None`: forever); whether it is done.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(mp_proc::plumbing::deadline_after);
        self.settled.wait_until(deadline)
    }

    /// Waits for the result, running the chunks no worker has started yet.
    pub fn get(self) -> Result<T> {
        // After helping, the chunks left are running on workers and mostly
        // end within a thread wake-up's time: the caller watches for the
        // end that long before it sleeps. In a loop of short maps, callers
        // that went to sleep there ran 15% slower on average, and some
        // whole processes at two thirds of the speed (the kernel's placement
        // of the woken caller, we think).
        if self.help() {
            mp_proc::plumbing::spin_until_ready(|| self.settled.is_settled());
        }
        self.settled.wait_until(None);
        (self.finish)()
    }

    /// Runs the call's chunks that nobody has taken, in order, if a permit
    /// is free; whether it could.
    fn help(&self) -> bool {
        let Some(permits) = &self.permits else {
            return false;
        };
        let Some(_permit) = permits.acquire(false) else {
            return false;
        };
        for &id in &self.ids {
            if self.settled.is_settled() {
                return true;
            }
            if let Some(chunk) = take_chunk(id) {
                chunk();
            }
        }
        true
    }

    /// Waits at most `timeout` ([`Error::Timeout`] then, and it may be
    /// asked again); the result can be taken once.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        if !self.wait(Some(timeout)) {
            return Err(Error::Timeout);
        }
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
        let issued = std::mem::take(&mut *lock(&self.issued));
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
                    lock(&self.issued).remove(&id);
                    let outcome = lock(&self.slots).remove(&id);
                    match outcome.unwrap_or(Err(Error::Terminated)) {
                        Ok(v) => self.ready.extend(v),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffers_are_kept_by_type_and_bounded() {
        let spare = Spare::default();
        assert_eq!(spare.take::<u64>().capacity(), 0);
        // Too small to keep.
        spare.give(vec![1u64; 8]);
        assert_eq!(spare.take::<u64>().capacity(), 0);
        // Kept, emptied, and only for its own item type.
        spare.give(vec![7u64; 4096]);
        assert_eq!(spare.take::<u32>().capacity(), 0);
        let again = spare.take::<u64>();
        assert!(again.is_empty() && again.capacity() >= 4096);
        // At most SPARE_BYTES in all.
        for _ in 0..4 {
            spare.give(Vec::<u8>::with_capacity(SPARE_BYTES / 2));
        }
        assert_eq!(spare.lock().bufs.len(), 2);
        assert!(spare.lock().bytes <= SPARE_BYTES);
        // And SPARE_COUNT buffers.
        let spare = Spare::default();
        for _ in 0..SPARE_COUNT + 5 {
            spare.give(Vec::<u8>::with_capacity(SPARE_MIN));
        }
        assert_eq!(spare.lock().bufs.len(), SPARE_COUNT);
    }

    #[test]
    fn a_thread_takes_the_spare_buffers_it_touched_last_first() {
        let spare = Spare::default();
        spare.give(Vec::<u64>::with_capacity(8192));
        std::thread::scope(|s| {
            s.spawn(|| spare.give(Vec::<u64>::with_capacity(4096)));
        });
        // Its own, though another's was kept after.
        assert!(spare.take::<u64>().capacity() >= 8192);
        // Then another's rather than none.
        let next = spare.take::<u64>();
        assert!(next.capacity() >= 4096 && next.capacity() < 8192);
        assert_eq!(spare.take::<u64>().capacity(), 0);
    }
}
