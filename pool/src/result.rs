//! `AsyncResult` and `IMap`: results that arrive later, whatever the
//! transport (their outcomes are read by a function chosen by the call).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_proc::Payload;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::job::{Job, JobId};

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

    /// Whether it is settled; if not, leaves `waker` in its job, to be
    /// woken (without the pool's lock) once it is. For its future.
    pub(crate) fn poll_settled(&self, waker: &std::task::Waker) -> bool {
        let Some(core) = &self.core else {
            return true;
        };
        let mut st = core.shared.lock();
        match st.jobs.get_mut(&self.job) {
            Some(j) if !j.settled() => {
                j.set_waker(waker);
                false
            }
            _ => true,
        }
    }

    /// The value of a settled result, as [`get`](Self::get) gives it
    /// (without helping or waiting: it is settled).
    pub(crate) fn take_settled(self) -> Result<R> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(core) = self.core.as_ref() else {
            return Err(Error::Terminated);
        };
        match core.take_job(self.job) {
            Some(mut job) => (self.read.read)(&mut job, self.items),
            None => Err(Error::Terminated),
        }
    }

    /// Cancels the call if none of its tasks has started (they are all
    /// still queued): they are dropped, the call fails with
    /// [`Error::Cancelled`] (its error callback gets it, its waiters and
    /// future wake), and it returns true. If a task has started (or the call
    /// finished, failed, or was cancelled already): false, and nothing
    /// changes (a running task is stopped only by its pool's end). A task
    /// sent ahead to a busy worker process counts as started.
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = mp_pool::Pool::new(Some(1))?;
    /// let r = pool.apply_async(square, 3);
    /// if r.cancel() {
    ///     assert!(matches!(r.get(), Err(mp_pool::Error::Cancelled)));
    /// } else {
    ///     assert_eq!(r.get()?, 9); // it had started
    /// }
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.failed.is_none() && self.core.as_ref().is_some_and(|c| c.cancel(self.job))
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
