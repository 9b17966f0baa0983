//! `AsyncResult` and `IMap`: results that arrive later, whatever the
//! transport (their outcomes are read by a function chosen by the call).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_proc::Payload;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::job::{Job, JobId, Outcomes, Task};

/// Turns a job's outcomes (`items` of them, by index) into the call's value.
pub(crate) struct Read<R> {
    read: fn(&mut Job, usize) -> Result<R>,
    /// Reading leaves the outcomes in place (they are decoded, not moved), so
    /// the value may be read again.
    again: bool,
}

impl<R> Read<R> {
    /// Decodes encoded outcomes (the value can be read again).
    pub(crate) fn decoded(read: fn(&mut Job, usize) -> Result<R>) -> Read<R> {
        Read { read, again: true }
    }

    /// Moves values of this process out (the value can be read once).
    pub(crate) fn moved(read: fn(&mut Job, usize) -> Result<R>) -> Read<R> {
        Read { read, again: false }
    }
}

impl<R> Clone for Read<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Read<R> {}

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
    read: Read<R>,
    failed: Option<Error>,
}

impl<R: Send + 'static> AsyncResult<R> {
    pub(crate) fn new(core: Arc<Core>, job: JobId, items: usize, read: Read<R>) -> AsyncResult<R> {
        AsyncResult {
            core: Some(core),
            job,
            items,
            read,
            failed: None,
        }
    }

    /// A result that failed before it ran (the pool was not running).
    pub(crate) fn failed(error: Error, read: Read<R>) -> AsyncResult<R> {
        AsyncResult {
            core: None,
            job: 0,
            items: 0,
            read,
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

    fn settled(&self) -> bool {
        self.core.as_ref().is_none_or(|core| {
            let st = core.shared.lock();
            st.jobs.get(&self.job).is_none_or(|j| j.settled())
        })
    }

    /// Waits for the result and returns it (Python's `get()`): the value, or
    /// the first error among its items (a panic's message, a dead worker, ...).
    ///
    /// On a pool of threads, the calling thread meanwhile runs the call's
    /// tasks that no worker has started, as one of the pool's `processes`.
    pub fn get(self) -> Result<R> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(core) = self.core.as_ref() else {
            return Err(Error::Terminated);
        };
        // After helping, the tasks left are running on workers and mostly
        // end within a thread wake-up's time: watch for the end that long
        // before sleeping.
        if core.help(self.job) {
            mp_proc::plumbing::spin_until_ready(|| self.settled());
        }
        self.wait_until(None);
        match core.take_job(self.job) {
            Some(mut job) => (self.read.read)(&mut job, self.items),
            None => Err(Error::Terminated),
        }
    }

    /// As [`get`](Self::get), waiting at most `timeout`: then
    /// [`Error::Timeout`], and it may be called again later. A value of a
    /// pool of threads' closure can be taken once (then
    /// [`Error::Terminated`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.wait_until(mp_proc::plumbing::deadline_after(timeout)) {
            return Err(Error::Timeout);
        }
        let Some(core) = self.core.as_ref() else {
            return Err(Error::Terminated);
        };
        if !self.read.again {
            return match core.take_job(self.job) {
                Some(mut job) => (self.read.read)(&mut job, self.items),
                None => Err(Error::Terminated),
            };
        }
        let mut st = core.shared.lock();
        match st.jobs.get_mut(&self.job) {
            Some(job) => (self.read.read)(job, self.items),
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
        let Some(core) = self.core.as_ref() else {
            return Ok(false);
        };
        let st = core.shared.lock();
        match st.jobs.get(&self.job) {
            Some(job) => Ok(job.abort.is_none() && job.all_ok(self.items)),
            None => Err(Error::Terminated),
        }
    }

    fn on_complete(self, f: impl FnOnce(&mut Job) + Send + 'static) -> Self {
        if let Some(core) = &self.core {
            core.on_complete(self.job, Box::new(f));
        }
        self
    }
}

impl<R: Payload> AsyncResult<R> {
    /// Calls `callback` with the value once it is ready, on the thread that
    /// completes it (the pool's; Python's `callback=`). Not called if the
    /// call failed. On a pool whose results are not encoded (closures on
    /// threads, `mp_dummy::ThreadPool`), the callback takes the value: a
    /// later `get` is then `Err(Terminated)` (the value is not `Clone`);
    /// a process pool decodes it twice and `get` has it too.
    pub fn on_success(self, callback: impl FnOnce(R) + Send + 'static) -> Self {
        let (read, items) = (self.read.read, self.items);
        self.on_complete(move |job| {
            if let Ok(v) = read(job, items) {
                callback(v);
            }
        })
    }

    /// Calls `callback` with the error if the call fails (Python's `error_callback=`).
    pub fn on_error(self, callback: impl FnOnce(Error) + Send + 'static) -> Self {
        let (read, items) = (self.read.read, self.items);
        if let Some(e) = self.failed.clone() {
            callback(e);
            return self;
        }
        if !self.read.again {
            // Reading moves the values out: leave them to `get` and report
            // the failure, if any, without reading.
            return self.on_complete(move |job| {
                if let Some(e) = job.first_error(items) {
                    callback(e);
                }
            });
        }
        self.on_complete(move |job| {
            if let Err(e) = read(job, items) {
                callback(e);
            }
        })
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

/// Where an imap's tasks come from: its input, pulled a task at a time.
pub(crate) trait Feed: Send {
    /// The task of the next (at most) `max` items, from item `start` of
    /// `job`; `None` once the input has ended;
    /// [`Error::InputPanicked`] if pulling the input panicked.
    fn next_task(&mut self, job: JobId, start: usize, max: usize) -> Result<Option<Task>>;
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
    feed: Option<Box<dyn Feed>>,
    chunksize: usize,
    lookahead: usize,
    submitted: usize,
    yielded: usize,
    next: usize,
    ordered: bool,
    failed: Option<Error>,
    /// The outcomes of the task being handed out, and how many are left.
    local: Option<(Outcomes, usize)>,
    take: fn(&mut Outcomes) -> Result<R>,
    /// The input's panic, yielded after the items before it.
    input_error: Option<Error>,
}

impl<R> IMap<R> {
    pub(crate) fn new(
        core: Arc<Core>,
        job: JobId,
        feed: Box<dyn Feed>,
        chunksize: usize,
        ordered: bool,
        take: fn(&mut Outcomes) -> Result<R>,
    ) -> IMap<R> {
        let lookahead = (core.processes * 4 * chunksize).max(LOOKAHEAD_MIN);
        let mut m = IMap {
            core: Some(core),
            job,
            feed: Some(feed),
            chunksize,
            lookahead,
            submitted: 0,
            yielded: 0,
            next: 0,
            ordered,
            failed: None,
            local: None,
            take,
            input_error: None,
        };
        m.top_up();
        m
    }

    pub(crate) fn failed(error: Error, take: fn(&mut Outcomes) -> Result<R>) -> IMap<R> {
        IMap {
            core: None,
            job: 0,
            feed: None,
            chunksize: 1,
            lookahead: 0,
            submitted: 0,
            yielded: 0,
            next: 0,
            ordered: true,
            failed: Some(error),
            local: None,
            take,
            input_error: None,
        }
    }

    /// Pulls input until `lookahead` items are in the pool or it ends; in
    /// whole chunks, once half the look-ahead is free, so that tasks keep
    /// their chunksize and a refill costs one submission, not one per item.
    fn top_up(&mut self) {
        let (Some(core), Some(feed)) = (&self.core, &mut self.feed) else {
            return;
        };
        let room = (self.yielded + self.lookahead).saturating_sub(self.submitted);
        let room = room - room % self.chunksize;
        if room == 0 || (self.submitted > 0 && room < self.lookahead / 2) {
            return;
        }
        let mut tasks = Vec::new();
        let mut got = 0;
        let mut ended = false;
        while got < room {
            match feed.next_task(self.job, self.submitted + got, self.chunksize) {
                Ok(Some(t)) => {
                    got += t.count;
                    ended = t.count < self.chunksize;
                    tasks.push(t);
                    if ended {
                        break;
                    }
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) => {
                    // The input failed: it ends here, with its error after
                    // the items pulled before it.
                    self.input_error = Some(e);
                    ended = true;
                    break;
                }
            }
        }
        if !tasks.is_empty() {
            core.submit(tasks);
            self.submitted += got;
        }
        if ended {
            self.feed = None;
            core.set_expected(self.job, self.submitted);
        }
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let core = self.core.clone()?;
        self.top_up();
        if self.feed.is_none() && self.yielded >= self.submitted {
            return self.input_error.take().map(Err);
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
            self.local = taken.map(|(count, outcomes)| (outcomes, count));
        }
        let outcome = match &mut self.local {
            Some((outcomes, left)) => {
                let r = (self.take)(outcomes);
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
                self.feed = None;
                self.submitted = self.yielded;
                self.input_error = None;
                return Some(Err(abort.unwrap_or(Error::Terminated)));
            }
        };
        self.yielded += 1;
        self.next += 1;
        self.top_up();
        Some(outcome)
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
