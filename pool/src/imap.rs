//! `IMap`: the results of a lazy call (`imap`, `imap_unordered`), pulled
//! from the pool as the consumer asks for them.

use std::fmt;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::core::Core;
use crate::error::{Error, Result};
use crate::job::{JobId, Outcomes, State, Task};

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
///
/// With the `async` feature it is also a `futures_core::Stream` of the same
/// items, for any executor. Its input is pulled inside `poll_next`, on the
/// executor's thread: an input that blocks blocks the executor.
pub struct IMap<R> {
    core: Option<Arc<Core>>,
    job: JobId,
    feed: Option<Box<dyn Feed>>,
    chunksize: usize,
    /// How many items may be submitted ahead of the consumer.
    lookahead: usize,
    /// The look-ahead is the caller's bound (`buffersize`): refill as soon
    /// as a task's room is free, not once half of it is.
    buffered: bool,
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

/// How [`IMap::advance`] waits for the next outcome.
enum Wait<'a> {
    /// Blocks until the deadline (`None`: as long as it takes).
    Until(Option<Instant>),
    /// Does not block: leaves the waker in the job, woken by its next
    /// outcome (the `Stream`'s poll, with the `async` feature).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    Register(&'a Waker),
}

/// The error of an imap whose window is `buffersize(0)`.
pub(crate) fn zero_buffersize() -> Error {
    Error::InvalidArgument {
        what: "buffersize must be at least 1".into(),
    }
}

impl<R> IMap<R> {
    /// An imap of `job`, reading `feed`; at most `buffersize` tasks ahead of
    /// the consumer (`None`: `max(4 * processes * chunksize, 256)` items).
    pub(crate) fn new(
        core: Arc<Core>,
        job: JobId,
        feed: Box<dyn Feed>,
        (chunksize, buffersize): (usize, Option<usize>),
        ordered: bool,
        take: fn(&mut Outcomes) -> Result<R>,
    ) -> IMap<R> {
        let lookahead = match buffersize {
            Some(n) => n.saturating_mul(chunksize),
            None => core
                .processes
                .saturating_mul(4)
                .saturating_mul(chunksize)
                .max(LOOKAHEAD_MIN),
        };
        let mut m = IMap {
            core: Some(core),
            job,
            feed: Some(feed),
            chunksize,
            lookahead,
            buffered: buffersize.is_some(),
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
            buffered: false,
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
    /// whole chunks, once half the look-ahead is free (a buffered imap: as
    /// soon as a chunk's room is), so that tasks keep their chunksize and a
    /// refill costs one submission, not one per item.
    fn top_up(&mut self) {
        let (Some(core), Some(feed)) = (&self.core, &mut self.feed) else {
            return;
        };
        let room = self
            .yielded
            .saturating_add(self.lookahead)
            .saturating_sub(self.submitted);
        let room = room - room % self.chunksize;
        let wait_for_half = !self.buffered && self.submitted > 0;
        if room == 0 || (wait_for_half && room < self.lookahead / 2) {
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

    /// The next result, waiting at most `timeout` for it (Python's
    /// `it.next(timeout)`): `Some(Err(Error::Timeout))` if none arrived in
    /// time, and the iterator stays as it was (a later call may return that
    /// very item: nothing is skipped, the order is kept); `None` at the end,
    /// as [`next`](Iterator::next).
    ///
    /// ```
    /// use std::time::Duration;
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// let mut it = pool.imap(square, 0..3);
    /// let mut got = Vec::new();
    /// while let Some(r) = it.next_timeout(Duration::from_secs(60)) {
    ///     got.push(r?);
    /// }
    /// assert_eq!(got, [0, 1, 4]);
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        let deadline = mp_proc::plumbing::deadline_after(timeout);
        match self.advance(Wait::Until(deadline)) {
            Poll::Ready(r) => r,
            Poll::Pending => Some(Err(Error::Timeout)),
        }
    }

    /// The next result if it is there, or once it is (`Wait::Until`), else
    /// `Pending`: the state is left as it was.
    fn advance(&mut self, wait: Wait<'_>) -> Poll<Option<Result<R>>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(core) = self.core.clone() else {
            return Poll::Ready(None);
        };
        self.top_up();
        if self.feed.is_none() && self.yielded >= self.submitted {
            return Poll::Ready(self.input_error.take().map(Err));
        }
        if self.local.is_none() {
            // Take the next task's outcomes whole (one lock per task), then
            // hand them out one by one.
            let (job, ordered, want) = (self.job, self.ordered, self.next);
            let mut taken = None;
            let mut done = |st: &mut State| {
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
            };
            let arrived = match wait {
                Wait::Until(deadline) => core.wait_until(deadline, done),
                Wait::Register(waker) => {
                    let mut st = core.shared.lock();
                    let arrived = done(&mut st);
                    if !arrived && let Some(j) = st.jobs.get_mut(&job) {
                        j.set_waker(waker);
                    }
                    arrived
                }
            };
            if !arrived {
                return Poll::Pending;
            }
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
                return Poll::Ready(Some(Err(abort.unwrap_or(Error::Terminated))));
            }
        };
        self.yielded += 1;
        self.next += 1;
        self.top_up();
        Poll::Ready(Some(outcome))
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        match self.advance(Wait::Until(None)) {
            Poll::Ready(r) => r,
            Poll::Pending => Some(Err(Error::Timeout)),
        }
    }
}

/// The same items as the iterator, without blocking: a result not there
/// yet leaves the task's waker in the pool, woken by the call's next outcome
/// (or the pool's end). The input is pulled here, on the executor's thread.
#[cfg(feature = "async")]
impl<R> futures_core::Stream for IMap<R> {
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<R>>> {
        self.get_mut().advance(Wait::Register(cx.waker()))
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
