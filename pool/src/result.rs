//! `AsyncResult` and `IMap`: results that arrive later.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_proc::Payload;
use mp_proc::plumbing::ErasedFunction;

use crate::core::{Chunk, Core, ItemResult, Job, JobId};
use crate::error::{Error, Result};

/// Turns a job's outcomes (`items` of them, by index) into the caller's value.
pub(crate) type Decode<R> = fn(&Job, usize) -> Result<R>;

/// The result of a call that runs in the pool, Python's `AsyncResult`.
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let pool = mp_pool::Pool::new(Some(2))?;
/// let r = pool.apply_async(square, 7);
/// assert_eq!(r.get()?, 49);
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub struct AsyncResult<R> {
    core: Option<Arc<Core>>,
    job: JobId,
    items: usize,
    decode: Decode<R>,
    failed: Option<Error>,
}

impl<R: Payload> AsyncResult<R> {
    pub(crate) fn new(
        core: Arc<Core>,
        job: JobId,
        items: usize,
        decode: Decode<R>,
    ) -> AsyncResult<R> {
        AsyncResult {
            core: Some(core),
            job,
            items,
            decode,
            failed: None,
        }
    }

    /// A result that failed before it ran (the pool was not running).
    pub(crate) fn failed(error: Error, decode: Decode<R>) -> AsyncResult<R> {
        AsyncResult {
            core: None,
            job: 0,
            items: 0,
            decode,
            failed: Some(error),
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        match &self.core {
            None => true,
            Some(core) => core.wait_until(deadline, |st| {
                st.jobs.get(&self.job).is_none_or(|j| j.settled())
            }),
        }
    }

    /// Waits for the result and returns it (Python's `get()`): the value, or
    /// the first error among its items (a panic's message, a dead worker, ...).
    pub fn get(self) -> Result<R> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.wait_until(None);
        let core = self
            .core
            .as_ref()
            .expect("a result that did not fail has a pool");
        match core.take_job(self.job) {
            Some(job) => (self.decode)(&job, self.items),
            None => Err(Error::Terminated),
        }
    }

    /// As [`get`](Self::get), waiting at most `timeout`: then
    /// [`Error::Timeout`], and it may be called again later.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.wait_until(mp_proc::plumbing::deadline_after(timeout)) {
            return Err(Error::Timeout);
        }
        self.with_job(|job| (self.decode)(job, self.items))
    }

    fn with_job<T>(&self, f: impl FnOnce(&Job) -> Result<T>) -> Result<T> {
        let core = self
            .core
            .as_ref()
            .expect("a result that did not fail has a pool");
        let st = core.shared.lock();
        match st.jobs.get(&self.job) {
            Some(job) => f(job),
            None => Err(Error::Terminated),
        }
    }

    /// Waits until the result is ready or `timeout` passes (`None`: as long as
    /// it takes); returns whether it is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.wait_until(timeout.and_then(mp_proc::plumbing::deadline_after))
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        self.wait_until(Some(Instant::now()))
    }

    /// Whether it is ready and succeeded; [`Error::NotReady`] before that.
    pub fn successful(&self) -> Result<bool> {
        if self.failed.is_some() {
            return Ok(false);
        }
        if !self.ready() {
            return Err(Error::NotReady);
        }
        self.with_job(|job| {
            let mut ok = true;
            job.each(self.items, |r| ok &= r.is_ok());
            Ok(ok)
        })
    }

    /// Calls `callback` with the value once it is ready, on the pool's
    /// thread (Python's `callback=`). Not called if the call failed.
    pub fn on_success(self, callback: impl FnOnce(R) + Send + 'static) -> Self {
        let decode = self.decode;
        let items = self.items;
        self.on_complete(move |job| {
            if let Ok(v) = decode(job, items) {
                callback(v);
            }
        })
    }

    /// Calls `callback` with the error if the call fails (Python's `error_callback=`).
    pub fn on_error(self, callback: impl FnOnce(Error) + Send + 'static) -> Self {
        let decode = self.decode;
        let items = self.items;
        if let Some(e) = self.failed.clone() {
            callback(e);
            return self;
        }
        self.on_complete(move |job| {
            if let Err(e) = decode(job, items) {
                callback(e);
            }
        })
    }

    fn on_complete(self, f: impl FnOnce(&Job) + Send + 'static) -> Self {
        if let Some(core) = &self.core {
            core.on_complete(self.job, Box::new(f));
        }
        self
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        if let Some(core) = &self.core {
            core.forget(self.job);
        }
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .field("items", &self.items)
            .finish()
    }
}

/// The least look-ahead of an `imap`, in items.
const LOOKAHEAD_MIN: usize = 256;

/// Python's `imap` and `imap_unordered`: an iterator of results that pulls
/// its input as workers free up, so an endless input works in bounded memory.
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let pool = mp_pool::Pool::new(Some(2))?;
/// let squares: Vec<u64> = pool.imap(square, 1..).take(5).collect::<Result<_, _>>()?;
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub struct IMap<R> {
    core: Option<Arc<Core>>,
    job: JobId,
    func: ErasedFunction,
    source: Option<Box<dyn Iterator<Item = ItemResult> + Send>>,
    chunksize: usize,
    lookahead: usize,
    submitted: usize,
    yielded: usize,
    next: usize,
    ordered: bool,
    failed: Option<Error>,
    /// The outcomes of the task being handed out, and how many are left.
    local: Option<(Chunk, usize)>,
    _r: PhantomData<fn() -> R>,
}

impl<R: Payload> IMap<R> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        core: Arc<Core>,
        job: JobId,
        func: ErasedFunction,
        source: Box<dyn Iterator<Item = ItemResult> + Send>,
        chunksize: usize,
        ordered: bool,
    ) -> IMap<R> {
        let lookahead = (core.processes * 4 * chunksize).max(LOOKAHEAD_MIN);
        let mut m = IMap {
            core: Some(core),
            job,
            func,
            source: Some(source),
            chunksize,
            lookahead,
            submitted: 0,
            yielded: 0,
            next: 0,
            ordered,
            failed: None,
            local: None,
            _r: PhantomData,
        };
        m.top_up();
        m
    }

    pub(crate) fn failed(error: Error) -> IMap<R> {
        IMap {
            core: None,
            job: 0,
            func: mp_proc::Function::new(|()| ()).erased(),
            source: None,
            chunksize: 1,
            lookahead: 0,
            submitted: 0,
            yielded: 0,
            next: 0,
            ordered: true,
            failed: Some(error),
            local: None,
            _r: PhantomData,
        }
    }

    /// Pulls input until `lookahead` items are in the pool or it ends; in
    /// whole chunks, once half the look-ahead is free, so that tasks keep
    /// their chunksize and a refill costs one submission, not one per item.
    fn top_up(&mut self) {
        let (Some(core), Some(source)) = (&self.core, &mut self.source) else {
            return;
        };
        let room = (self.yielded + self.lookahead).saturating_sub(self.submitted);
        let room = room - room % self.chunksize;
        if room == 0 || (self.submitted > 0 && room < self.lookahead / 2) {
            return;
        }
        let batch: Vec<ItemResult> = source.by_ref().take(room).collect();
        let got = batch.len();
        if got > 0 {
            core.submit(self.job, self.func, self.submitted, batch, self.chunksize);
            self.submitted += got;
        }
        if got < room {
            self.source = None;
            core.set_expected(self.job, self.submitted);
        }
    }
}

impl<R: Payload> Iterator for IMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let core = self.core.clone()?;
        self.top_up();
        if self.source.is_none() && self.yielded >= self.submitted {
            return None;
        }
        if self.local.is_none() {
            // Take the next task's outcomes whole (one lock per task), then
            // hand them out one by one.
            let (job, ordered, want) = (self.job, self.ordered, self.next);
            let mut taken = None;
            core.wait_until(None, |st| {
                let Some(j) = st.jobs.get_mut(&job) else {
                    return true;
                };
                match j.take_chunk(ordered.then_some(want)) {
                    Some(c) => {
                        taken = Some(c);
                        true
                    }
                    None => j.abort.is_some(),
                }
            });
            self.local = taken.map(|(_, count, chunk)| (chunk, count));
        }
        let outcome = match &mut self.local {
            Some((chunk, left)) => {
                let r = chunk.take();
                *left -= 1;
                if *left == 0 {
                    self.local = None;
                }
                r
            }
            None => {
                let abort = core
                    .shared
                    .lock()
                    .jobs
                    .get(&self.job)
                    .and_then(|j| j.abort.clone());
                // The pool ended: report it once, then stop.
                self.source = None;
                self.submitted = self.yielded;
                return Some(Err(abort.unwrap_or(Error::Terminated)));
            }
        };
        self.yielded += 1;
        self.next += 1;
        self.top_up();
        Some(outcome.and_then(|bytes| crate::pool::decode_result::<R>(&bytes)))
    }
}

impl<R> Drop for IMap<R> {
    fn drop(&mut self) {
        if let Some(core) = &self.core {
            core.discard(self.job);
        }
    }
}

impl<R> fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish()
    }
}
