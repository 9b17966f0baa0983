//! The proxy to a pool in the manager's server (Python's `Manager().Pool()`),
//! its later results ([`PoolResult`]) and its `imap` ([`PoolIter`]). The
//! server side is in [`pool`](super::pool).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

use mp_pool::{Error, Result};
use mp_proc::codec::decode;
use mp_proc::plumbing::{ErasedFunction, StarFunction};
use mp_proc::{Function, Payload};

use super::pool::{Answer, Fault, Op};
use crate::link::unexpected;
use crate::protocol::{Bytes, Reply, Request};
use crate::proxy::{Reference, count, enc, proxy_handle};

/// A `multiprocessing.Pool` in the manager's server process (Python's
/// `Manager().Pool()`), made by [`SyncManager::pool`](crate::SyncManager::pool):
/// any process that holds the proxy (a child it was passed to, a process
/// that [`connect`](crate::SyncManager::connect)ed) submits work to the one
/// pool, whose workers are children of the server.
///
/// Its methods are mp-pool's [`Pool`](mp_pool::Pool)'s, with
/// [`mp_pool::Error`] as their error (a call the manager could not carry
/// is [`Error::Proc`]). Functions are plain `fn(A) -> R` and travel as
/// signed references: the server runs only those sent by processes of the
/// program and process tree that started it; another program's (or another
/// process tree's) call fails with [`Error::InvalidArgument`].
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     mp_proc::init();
///     let m = mp_manager::SyncManager::start()?;
///     let pool = m.pool(Some(2))?;
///     assert_eq!(pool.apply(square, 7)?, 49);
///     assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
///     let r = pool.apply_async(square, 3);
///     assert_eq!(r.get()?, 9);
///     pool.close()?;
///     pool.join()?;
///     Ok(())
/// }
/// ```
pub struct PoolProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(PoolProxy);

/// Turns a call's outcomes into its value.
type Read<R> = fn(Vec<Result<Bytes, Fault>>) -> Result<R>;

fn decode_result<R: Payload>(bytes: &[u8]) -> Result<R> {
    decode(bytes).map_err(|e| Error::Encoding {
        message: format!(
            "the result does not decode as {}: {e}",
            std::any::type_name::<R>()
        ),
    })
}

fn read_one<R: Payload>(outcomes: Vec<Result<Bytes, Fault>>) -> Result<R> {
    match outcomes.into_iter().next() {
        Some(Ok(b)) => decode_result(&b),
        Some(Err(f)) => Err(f.into_error()),
        None => Err(Error::Terminated),
    }
}

fn read_all<R: Payload>(outcomes: Vec<Result<Bytes, Fault>>) -> Result<Vec<R>> {
    outcomes
        .into_iter()
        .map(|o| o.map_err(Fault::into_error).and_then(|b| decode_result(&b)))
        .collect()
}

fn read_each<R: Payload>(outcomes: Vec<Result<Bytes, Fault>>) -> Result<Vec<Result<R>>> {
    Ok(outcomes
        .into_iter()
        .map(|o| o.map_err(Fault::into_error).and_then(|b| decode_result(&b)))
        .collect())
}

/// A call's outcomes from the server's reply.
fn answer<R>(reply: Reply, read: Read<R>) -> Result<R> {
    match reply {
        Reply::Value(b) => match decode::<Answer>(&b)? {
            Ok(outcomes) => read(outcomes),
            Err(f) => Err(f.into_error()),
        },
        r => Err(unexpected(r).into()),
    }
}

/// The error of a reply that is not the expected one: the call's failure,
/// or a reply of the wrong shape.
fn refusal(reply: Reply) -> Error {
    if let Reply::Value(b) = &reply
        && let Ok(Err(f)) = decode::<Answer>(b)
    {
        return f.into_error();
    }
    unexpected(reply).into()
}

/// A function reference, encoded for a request.
fn function(f: ErasedFunction) -> Result<Bytes> {
    Ok(enc(&f)?)
}

/// All of `items`, each encoded (the input's panic is
/// [`Error::InputPanicked`]).
fn encode_items<A: Payload>(items: impl IntoIterator<Item = A>) -> Result<Vec<Bytes>> {
    let items = mp_pool::plumbing::pull_input(&mut items.into_iter(), usize::MAX)?;
    items.iter().map(|a| Ok(enc(a)?)).collect()
}

impl PoolProxy {
    fn call(&self, op: Op) -> Result<Reply> {
        Ok(self.inner.call(&Request::Pool(self.inner.id, op))?)
    }

    /// Runs a call and waits for its outcomes (one round trip).
    fn run<R>(
        &self,
        func: Result<Bytes>,
        items: Result<Vec<Bytes>>,
        chunksize: Option<usize>,
        read: Read<R>,
    ) -> Result<R> {
        let op = Op::Submit {
            func: func?,
            items: items?,
            chunksize: chunksize.map(|c| c as u64),
            wait: true,
        };
        answer(self.call(op)?, read)
    }

    /// Submits a call whose outcomes are collected later.
    fn start<R>(
        &self,
        func: Result<Bytes>,
        items: Result<Vec<Bytes>>,
        chunksize: Option<usize>,
        read: Read<R>,
    ) -> PoolResult<R> {
        let submitted = (|| {
            let op = Op::Submit {
                func: func?,
                items: items?,
                chunksize: chunksize.map(|c| c as u64),
                wait: false,
            };
            match self.call(op)? {
                Reply::Id(job) => Ok(job),
                r => Err(refusal(r)),
            }
        })();
        PoolResult {
            state: submitted.map(|job| (self.clone(), job)),
            read,
            taken: false,
        }
    }

    /// The number of workers (an error if the pool could not start).
    pub fn processes(&self) -> Result<usize> {
        Ok(count(self.call(Op::Processes)?)?)
    }

    /// Calls `f(args)` in a worker and waits for the result (Python's `apply`).
    pub fn apply<A: Payload, R: Payload>(&self, f: fn(A) -> R, args: A) -> Result<R> {
        let func = function(Function::new(f).erased());
        self.run(func, encode_items([args]), Some(1), read_one)
    }

    /// Calls `f(args)` in a worker (Python's `apply_async`): its result is
    /// collected later.
    pub fn apply_async<A: Payload, R: Payload>(&self, f: fn(A) -> R, args: A) -> PoolResult<R> {
        let func = function(Function::new(f).erased());
        self.start(func, encode_items([args]), Some(1), read_one)
    }

    /// `f` on every item, results in input order, or the first error
    /// (Python's `map`, with its default chunk size). The input is read
    /// first, here: if it panics the call fails with
    /// [`Error::InputPanicked`] and runs nothing.
    pub fn map<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>> {
        let func = function(Function::new(f).erased());
        self.run(func, encode_items(items), None, read_all)
    }

    /// As [`map`](Self::map), `chunksize` items per task.
    pub fn map_chunked<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>> {
        let func = function(Function::new(f).erased());
        self.run(func, encode_items(items), Some(chunksize), read_all)
    }

    /// As [`map`](Self::map), without waiting (Python's `map_async`).
    pub fn map_async<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> PoolResult<Vec<R>> {
        let func = function(Function::new(f).erased());
        self.start(func, encode_items(items), None, read_all)
    }

    /// As [`map_async`](Self::map_async), `chunksize` items per task.
    pub fn map_async_chunked<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> PoolResult<Vec<R>> {
        let func = function(Function::new(f).erased());
        self.start(func, encode_items(items), Some(chunksize), read_all)
    }

    /// `f` applied to each tuple's parts (Python's `starmap`).
    pub fn starmap<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<Vec<R>> {
        self.run(function(f.erase()), encode_items(items), None, read_all)
    }

    /// As [`starmap`](Self::starmap), `chunksize` tuples per task.
    pub fn starmap_chunked<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> Result<Vec<R>> {
        let func = function(f.erase());
        self.run(func, encode_items(items), Some(chunksize), read_all)
    }

    /// As [`starmap`](Self::starmap), without waiting (Python's `starmap_async`).
    pub fn starmap_async<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
    ) -> PoolResult<Vec<R>> {
        self.start(function(f.erase()), encode_items(items), None, read_all)
    }

    /// As [`starmap_async`](Self::starmap_async), `chunksize` tuples per task.
    pub fn starmap_async_chunked<Args: Payload, R: Payload>(
        &self,
        f: impl StarFunction<Args, R>,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> PoolResult<Vec<R>> {
        let func = function(f.erase());
        self.start(func, encode_items(items), Some(chunksize), read_all)
    }

    /// `f` on every item, as an iterator of results in input order (Python's
    /// `imap`): each item's result or its error.
    ///
    /// The input is read here in batches of `max(256, 4 * processes)`
    /// items, up to three batches in the pool at a time; the iterator yields a
    /// batch's results once the whole batch is done. If pulling the input
    /// panics, the iterator yields the results of the batches before, then
    /// [`Error::InputPanicked`], then ends (as a local pool's `imap`).
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let m = mp_manager::SyncManager::start()?;
    /// let pool = m.pool(Some(2))?;
    /// let squares: Vec<u64> = pool.imap(square, 0..300).collect::<Result<_, _>>()?;
    /// assert_eq!(squares[299], 299 * 299);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap<A: Payload, R: Payload, I>(&self, f: fn(A) -> R, items: I) -> PoolIter<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
    {
        self.lazy(f, items, 1)
    }

    /// As [`imap`](Self::imap), `chunksize` items per task (and batches of
    /// at least `4 * processes * chunksize` items).
    pub fn imap_chunked<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> PoolIter<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
    {
        self.lazy(f, items, chunksize)
    }

    /// Python's `imap_unordered`: as [`imap`](Self::imap), whose batches
    /// come back in the order any one of them may (input order within each
    /// batch, a batch once it is done).
    pub fn imap_unordered<A: Payload, R: Payload, I>(&self, f: fn(A) -> R, items: I) -> PoolIter<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
    {
        self.lazy(f, items, 1)
    }

    /// As [`imap_unordered`](Self::imap_unordered), `chunksize` items per task.
    pub fn imap_unordered_chunked<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> PoolIter<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
    {
        self.lazy(f, items, chunksize)
    }

    fn lazy<A: Payload, R: Payload, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> PoolIter<R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
    {
        let mut it = PoolIter {
            proxy: self.clone(),
            func: Bytes::new(),
            chunksize,
            batch: 0,
            pull: None,
            batches: VecDeque::new(),
            ready: VecDeque::new(),
        };
        let setup = (|| {
            if chunksize == 0 {
                return Err(Error::InvalidArgument {
                    what: "chunksize must be at least 1".into(),
                });
            }
            let func = function(Function::new(f).erased())?;
            let processes = self.processes()?;
            Ok((func, processes))
        })();
        match setup {
            Ok((func, processes)) => {
                it.func = func;
                it.batch = processes
                    .saturating_mul(4)
                    .saturating_mul(chunksize)
                    .max(BATCH_MIN);
                let mut items = items.into_iter();
                it.pull = Some(Box::new(move |max| {
                    let chunk = mp_pool::plumbing::pull_input(&mut items, max)?;
                    chunk.iter().map(|a| Ok(enc(a)?)).collect()
                }));
            }
            Err(e) => it.batches.push_back(Batch::Failed(e)),
        }
        it
    }

    /// Takes no more work; the workers finish what was submitted, then exit
    /// (Python's `close`).
    pub fn close(&self) -> Result<()> {
        ok(self.call(Op::Close)?)
    }

    /// Stops the workers now; unfinished calls fail with
    /// [`Error::Terminated`] (Python's `terminate`).
    pub fn terminate(&self) -> Result<()> {
        ok(self.call(Op::Terminate)?)
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) ([`Error::StillRunning`] before).
    pub fn join(&self) -> Result<()> {
        match self.call(Op::Join)? {
            Reply::Ok => Ok(()),
            r => Err(refusal(r)),
        }
    }
}

fn ok(r: Reply) -> Result<()> {
    Ok(crate::proxy::ok(r)?)
}

/// The result of a call submitted to a [`PoolProxy`] and collected later
/// (Python's `AsyncResult`, through the manager): [`get`](Self::get) waits
/// for it. The server keeps it until it is collected or this handle is
/// dropped (or this process ends).
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let m = mp_manager::SyncManager::start()?;
/// let pool = m.pool(Some(1))?;
/// let r = pool.map_async(square, [1, 2, 3]);
/// assert!(r.wait(None)?);
/// assert!(r.ready()? && r.successful()?);
/// assert_eq!(r.get_timeout(std::time::Duration::from_secs(60))?, [1, 4, 9]);
/// assert_eq!(r.get()?, [1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PoolResult<R> {
    /// Its pool and job, or why it was never submitted.
    state: Result<(PoolProxy, u64)>,
    read: Read<R>,
    /// Collected by `get`: nothing to forget.
    taken: bool,
}

impl<R> PoolResult<R> {
    fn get_with(&self, wait: Option<Duration>, take: bool) -> Result<R> {
        match &self.state {
            Ok((pool, job)) => {
                let op = Op::Get {
                    job: *job,
                    wait,
                    take,
                };
                answer(pool.call(op)?, self.read)
            }
            Err(e) => Err(e.clone()),
        }
    }

    /// Waits for the result and returns it (Python's `get()`): the value, or
    /// the first error among its items.
    pub fn get(mut self) -> Result<R> {
        let r = self.get_with(None, true);
        self.taken = true;
        r
    }

    /// As [`get`](Self::get), waiting at most `timeout`: then
    /// [`Error::Timeout`], and it may be called again.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        self.get_with(Some(timeout), false)
    }

    /// Waits until the result is ready or `timeout` passes (`None`: as long
    /// as it takes); whether it is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        match &self.state {
            Ok((pool, job)) => Ok(crate::proxy::flag(pool.call(Op::Ready {
                job: *job,
                wait: timeout,
            })?)?),
            Err(_) => Ok(true),
        }
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> Result<bool> {
        self.wait(Some(Duration::ZERO))
    }

    /// Whether it is ready and succeeded; [`Error::NotReady`] before that.
    pub fn successful(&self) -> Result<bool> {
        if !self.ready()? {
            return Err(Error::NotReady);
        }
        Ok(self.get_timeout(Duration::ZERO).is_ok())
    }
}

impl<R> Drop for PoolResult<R> {
    /// The server forgets a result that was not collected.
    fn drop(&mut self) {
        if let (Ok((pool, job)), false) = (&self.state, self.taken) {
            let _ = pool.call(Op::Forget(*job));
        }
    }
}

impl<R> std::fmt::Debug for PoolResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("PoolResult");
        match &self.state {
            Ok((pool, job)) => d.field("pool", pool).field("job", job),
            Err(e) => d.field("failed", e),
        };
        d.finish()
    }
}

/// The least batch of an `imap` through the manager, in items.
const BATCH_MIN: usize = 256;

/// Batches of an `imap` submitted ahead of the one being read.
const IN_FLIGHT: usize = 2;

/// A batch of an `imap`: submitted, or the error in its place.
enum Batch<R> {
    Running(PoolResult<Vec<Result<R>>>),
    Failed(Error),
}

/// Pulls at most `max` more items of an `imap`'s input, encoded.
type Pull = Box<dyn FnMut(usize) -> Result<Vec<Bytes>>>;

/// The results of [`PoolProxy::imap`] and its variants, in input order:
/// each item's value or its error.
pub struct PoolIter<R> {
    proxy: PoolProxy,
    func: Bytes,
    chunksize: usize,
    batch: usize,
    /// The input, until it ends (or panics).
    pull: Option<Pull>,
    batches: VecDeque<Batch<R>>,
    ready: VecDeque<Result<R>>,
}

impl<R: Payload> PoolIter<R> {
    /// Submits batches until [`IN_FLIGHT`] wait to be read, or the input ends.
    fn fill(&mut self) {
        while self.batches.len() < IN_FLIGHT {
            let Some(pull) = self.pull.as_mut() else {
                return;
            };
            match pull(self.batch) {
                Ok(items) => {
                    if items.len() < self.batch {
                        self.pull = None;
                    }
                    if items.is_empty() {
                        return;
                    }
                    let r = self.proxy.start(
                        Ok(self.func.clone()),
                        Ok(items),
                        Some(self.chunksize),
                        read_each,
                    );
                    self.batches.push_back(Batch::Running(r));
                }
                Err(e) => {
                    self.pull = None;
                    self.batches.push_back(Batch::Failed(e));
                }
            }
        }
    }

    /// Ends the iteration after an error of a whole batch.
    fn stop(&mut self) {
        self.pull = None;
        self.batches.clear();
    }
}

impl<R: Payload> Iterator for PoolIter<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            self.fill();
            let front = self.batches.pop_front()?;
            // The next batch runs while this one is read.
            self.fill();
            match front {
                Batch::Running(r) => match r.get() {
                    Ok(values) => self.ready.extend(values),
                    Err(e) => {
                        self.stop();
                        return Some(Err(e));
                    }
                },
                Batch::Failed(e) => {
                    self.stop();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<R> std::fmt::Debug for PoolIter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolIter")
            .field("pool", &self.proxy)
            .field("batches", &self.batches.len())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}
