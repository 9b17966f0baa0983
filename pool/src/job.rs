//! The pool's bookkeeping, whatever the transport: the queue of tasks not
//! handed out yet, and the jobs (one per call) whose outcomes arrive task by
//! task, with their callbacks. Everything here is under one lock
//! ([`Shared::lock`]), held briefly.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;

use mp_proc::plumbing::ErasedFunction;

use crate::codec;
use crate::error::{Error, Result};

pub(crate) type JobId = u64;

/// Values of calls taken out of the pool's state under its lock (jobs with
/// their outcomes, tasks with their items, outcomes nobody waits for), to
/// drop once the lock is let go: their `Drop` may use the pool (which takes
/// the lock) or panic (which would unwind through the pool's bookkeeping).
/// Also the wakers of futures whose job settled, to wake without the lock
/// (a waker may poll the future at once, on this thread: it takes the lock).
#[derive(Default)]
#[must_use = "values taken out under the lock are dropped without it"]
pub(crate) struct Garbage(Vec<Box<dyn Any + Send>>, Vec<Waker>);

impl Garbage {
    pub(crate) fn put(&mut self, value: impl Any + Send) {
        self.0.push(Box::new(value));
    }

    /// A waker to wake once the lock is let go.
    pub(crate) fn wake(&mut self, waker: Option<Waker>) {
        self.1.extend(waker);
    }

    /// Wakes the wakers, then drops the values (call it without the lock),
    /// each on its own: a panicking `Drop` or `wake` ends that one only, not
    /// the thread's work for the pool.
    pub(crate) fn dispose(self) {
        for waker in self.1 {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
        }
        for value in self.0 {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(value)));
        }
    }
}

/// Called once when a job completes, with its outcomes (it may take them).
pub(crate) type Callback = Box<dyn FnOnce(&mut Job) + Send>;
/// A task's code that runs in this process, returning its outcomes.
pub(crate) type Closure = Box<dyn FnOnce() -> Outcomes + Send>;

/// The outcomes of a task that ran in this process, typed (see
/// `local::Ran`); the job table sees only whether they all succeeded.
pub(crate) trait Values: Send {
    /// Whether every item succeeded.
    fn all_ok(&self) -> bool;
    /// The first failure, if any (left in place for the call's reader).
    fn first_error(&self) -> Option<Error>;
    /// The typed outcomes, to downcast.
    fn as_any(&mut self) -> &mut dyn Any;
}

/// What a task runs.
pub(crate) enum Work {
    /// A function reference and its items' encoded arguments (records, see
    /// [`codec`]): it runs in any process that has the same executable.
    Encoded {
        func: ErasedFunction,
        items: Vec<u8>,
    },
    /// A closure and its items, in memory: it runs only in this process.
    Local(Closure),
}

/// A piece of a job: `count` items from item `start`.
pub(crate) struct Task {
    pub(crate) job: JobId,
    pub(crate) start: usize,
    pub(crate) count: usize,
    pub(crate) work: Work,
}

/// The outcomes of one task, one per item.
pub(crate) enum Outcomes {
    /// Encoded outcome records, read from `pos` (items before it were taken).
    Records { buf: Vec<u8>, pos: usize },
    /// Values of this process (a `local::Ran<R>`, read by the typed side).
    Local(Box<dyn Values>),
    /// Every item failed the same way (a dead worker).
    Failed(Error),
}

impl Outcomes {
    /// Whether every item succeeded.
    fn all_ok(&self) -> bool {
        match self {
            Outcomes::Records { buf, pos } => {
                codec::iter(&buf[(*pos).min(buf.len())..]).all(|(tag, _)| tag == codec::VALUE)
            }
            Outcomes::Local(values) => values.all_ok(),
            Outcomes::Failed(_) => false,
        }
    }
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) enum Run {
    Running,
    Closed,
    Terminated,
}

pub(crate) struct Job {
    /// Outcomes by the index of their first item: `(count, outcomes)`.
    pub(crate) chunks: BTreeMap<usize, (usize, Outcomes)>,
    /// The number of items, once known (an imap learns it at the end).
    pub(crate) expected: Option<usize>,
    pub(crate) received: usize,
    /// Set when the pool ended (terminated, interrupted, broken): every item
    /// not received yet has this error.
    pub(crate) abort: Option<Error>,
    callbacks: Vec<Callback>,
    /// Its callbacks are running (on its outcomes, moved out, without the
    /// lock): waiters see it as not settled until they have run, as
    /// CPython's `get()` returns after the callback.
    in_callbacks: bool,
    /// Its handle is gone: forget the job once complete.
    orphaned: bool,
    /// An imap's: its consumer takes outcomes one by one, so it is woken for
    /// each (others only when the job completes).
    pub(crate) lazy: bool,
    /// The waker of the future (or stream) that waits for it: woken when it
    /// settles (a lazy job's: on each outcome), after the lock is let go.
    waker: Option<Waker>,
}

impl Job {
    fn new(expected: Option<usize>) -> Job {
        Job {
            chunks: BTreeMap::new(),
            expected,
            received: 0,
            abort: None,
            callbacks: Vec::new(),
            in_callbacks: false,
            orphaned: false,
            lazy: expected.is_none(),
            waker: None,
        }
    }

    /// Takes the waker out (its future is gone: drop it without the lock).
    pub(crate) fn take_waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    /// Leaves the waker of the task that polls its handle (replacing the
    /// one of a previous poll, unless it wakes the same task).
    pub(crate) fn set_waker(&mut self, waker: &Waker) {
        match &mut self.waker {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        }
    }

    /// Every outcome is in (or the pool ended).
    pub(crate) fn complete(&self) -> bool {
        self.abort.is_some() || self.expected.is_some_and(|n| self.received >= n)
    }

    /// Complete, and its callbacks have run: what `get()` waits for.
    pub(crate) fn settled(&self) -> bool {
        self.complete() && !self.in_callbacks
    }

    /// The error of an item that never ran (the pool ended first).
    pub(crate) fn missing(&self) -> Error {
        self.abort.clone().unwrap_or(Error::Terminated)
    }

    /// Whether all of its first `items` items succeeded.
    pub(crate) fn all_ok(&self, items: usize) -> bool {
        let mut next = 0;
        for (&start, (count, outcomes)) in &self.chunks {
            if start > next || !outcomes.all_ok() {
                return false;
            }
            next = start + count;
        }
        next >= items
    }

    /// The error a read of its first `items` items gives, if any, without
    /// taking anything: for an error callback of a call whose values are
    /// moved out by the read (its `get` reads them after the callback).
    pub(crate) fn first_error(&self, items: usize) -> Option<Error> {
        let mut next = 0;
        for (&start, (count, outcomes)) in &self.chunks {
            if start > next {
                return Some(self.missing());
            }
            let error = match outcomes {
                Outcomes::Local(values) => values.first_error(),
                Outcomes::Failed(e) => Some(e.clone()),
                Outcomes::Records { .. } => None,
            };
            if error.is_some() {
                return error;
            }
            next = start + count;
        }
        (next < items).then(|| self.missing())
    }

    /// Takes the outcomes of the task that starts at item `start`, or of
    /// any task for `None`: `(count, outcomes)`.
    pub(crate) fn take_chunk(&mut self, start: Option<usize>) -> Option<(usize, Outcomes)> {
        match start {
            Some(s) => self.chunks.remove(&s),
            None => self.chunks.pop_first().map(|(_, c)| c),
        }
    }
}

pub(crate) struct State {
    pub(crate) run: Run,
    /// Tasks not handed out yet, in order.
    pub(crate) pending: VecDeque<Task>,
    pub(crate) jobs: HashMap<JobId, Job>,
    next_job: JobId,
    /// Why the pool can run nothing (its initializer failed).
    pub(crate) broken: Option<Error>,
    /// The workers have ended.
    pub(crate) finished: bool,
    /// Why it was terminated, for the jobs it failed.
    pub(crate) end: Option<Error>,
}

/// The pool's state and its waiters, shared by the pool's handles and its
/// transport.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled whenever outcomes arrive or the state changes.
    pub(crate) changed: Condvar,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            state: Mutex::new(State {
                run: Run::Running,
                pending: VecDeque::new(),
                jobs: HashMap::new(),
                next_job: 0,
                broken: None,
                finished: false,
                end: None,
            }),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        mp_proc::plumbing::lock(&self.state)
    }

    /// Records what tasks left (`(job, start, count)` and their outcomes)
    /// and wakes who waits for them: the consumer of an imap for any
    /// outcome, others when their job completes.
    pub(crate) fn record_all(
        &self,
        outcomes: impl IntoIterator<Item = ((JobId, usize, usize), Outcomes)>,
    ) {
        let mut st = self.lock();
        let mut callbacks = Vec::new();
        let mut notify = false;
        let mut garbage = Garbage::default();
        for ((job, start, count), o) in outcomes {
            notify |= st.jobs.get(&job).is_some_and(|j| j.lazy);
            callbacks.extend(record(&mut st, job, start, count, o, &mut garbage));
            notify |= st.jobs.get(&job).is_none_or(|j| j.complete());
        }
        drop(st);
        for cb in callbacks {
            run_callbacks(Some(cb), self);
        }
        if notify {
            self.changed.notify_all();
        }
        garbage.dispose();
    }

    /// Drops what is queued and fails every unfinished job with `why`; runs
    /// the callbacks now due (without the lock) and wakes the waiters.
    pub(crate) fn abort_all(&self, mut st: MutexGuard<'_, State>, why: Error) {
        let mut garbage = Garbage::default();
        garbage.put(std::mem::take(&mut st.pending));
        let ids: Vec<JobId> = st.jobs.keys().copied().collect();
        for id in &ids {
            if let Some(j) = st.jobs.get_mut(id)
                && !j.complete()
            {
                j.abort = Some(why.clone());
            }
        }
        let callbacks: Vec<_> = ids
            .into_iter()
            .filter_map(|id| completed(&mut st, id, &mut garbage))
            .collect();
        drop(st);
        for cb in callbacks {
            run_callbacks(Some(cb), self);
        }
        self.changed.notify_all();
        garbage.dispose();
    }

    /// The pool can run nothing any more: fail what is queued and every job.
    pub(crate) fn fail_everything(&self, why: Error) {
        let mut st = self.lock();
        st.broken.get_or_insert(why.clone());
        self.abort_all(st, why);
    }
}

impl State {
    /// Registers a new job of `expected` items.
    pub(crate) fn new_job(&mut self, expected: Option<usize>) -> Result<JobId> {
        if self.run != Run::Running {
            return Err(Error::NotRunning);
        }
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, Job::new(expected));
        Ok(id)
    }

    /// Adds a callback to a job; returns the job if its callbacks are due.
    pub(crate) fn add_callback(
        &mut self,
        job: JobId,
        callback: Callback,
        garbage: &mut Garbage,
    ) -> Option<JobId> {
        let Some(j) = self.jobs.get_mut(&job) else {
            garbage.put(callback);
            return None;
        };
        j.callbacks.push(callback);
        completed(self, job, garbage)
    }

    /// Sets the number of items of a job whose input has ended; returns the
    /// job if its callbacks are due.
    pub(crate) fn set_expected(
        &mut self,
        job: JobId,
        n: usize,
        garbage: &mut Garbage,
    ) -> Option<JobId> {
        self.jobs.get_mut(&job)?.expected = Some(n);
        completed(self, job, garbage)
    }

    /// Cancels a job none of whose items has started: all of them are still
    /// queued (`pending`) and none has an outcome. Its tasks go to
    /// `garbage` and it fails with [`Error::Cancelled`]. `None` if it could
    /// not be cancelled (started, complete, gone); else whether its
    /// callbacks are due (the job to run them for).
    pub(crate) fn cancel(&mut self, job: JobId, garbage: &mut Garbage) -> Option<Option<JobId>> {
        let j = self.jobs.get(&job)?;
        if j.complete() || j.received > 0 {
            return None;
        }
        let queued: usize = self
            .pending
            .iter()
            .filter(|t| t.job == job)
            .map(|t| t.count)
            .sum();
        if j.expected != Some(queued) {
            return None;
        }
        let (dropped, kept): (VecDeque<Task>, VecDeque<Task>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|t| t.job == job);
        self.pending = kept;
        garbage.put(dropped);
        self.jobs.get_mut(&job)?.abort = Some(Error::Cancelled);
        Some(completed(self, job, garbage))
    }

    /// Forgets a job whose handle is gone: returns it if complete (for the
    /// caller to drop once it let go of the lock: its values' `Drop` may use
    /// the pool, or panic), else marks it to be forgotten when it is.
    #[must_use = "a forgotten job's values are dropped without the lock"]
    pub(crate) fn forget(&mut self, job: JobId) -> Option<Job> {
        let j = self.jobs.get_mut(&job)?;
        if j.settled() && j.callbacks.is_empty() {
            self.jobs.remove(&job)
        } else {
            j.orphaned = true;
            None
        }
    }
}

/// Records a task's outcomes; returns the job if its callbacks are now due.
/// Outcomes nobody waits for (the job is gone) go to `garbage`.
pub(crate) fn record(
    st: &mut State,
    job: JobId,
    start: usize,
    count: usize,
    outcomes: Outcomes,
    garbage: &mut Garbage,
) -> Option<JobId> {
    let Some(j) = st.jobs.get_mut(&job) else {
        garbage.put(outcomes);
        return None;
    };
    // A call's item that ran past the task timeout fails the call at once
    // (the other items' outcomes, still to come, are dropped); an imap
    // yields it in the item's place and goes on.
    if let Outcomes::Failed(e @ Error::TaskTimeout { .. }) = &outcomes
        && !j.lazy
        && j.abort.is_none()
    {
        j.abort = Some(e.clone());
    }
    if let Some(twice) = j.chunks.insert(start, (count, outcomes)) {
        garbage.put(twice);
    }
    j.received += count;
    if j.lazy {
        garbage.wake(j.waker.take());
    }
    completed(st, job, garbage)
}

/// A complete job with callbacks is marked as running them and returned
/// (the caller runs them with [`run_callbacks`] once it let go of the lock);
/// a complete job nobody waits for is forgotten (into `garbage`).
fn completed(st: &mut State, job: JobId, garbage: &mut Garbage) -> Option<JobId> {
    let j = st.jobs.get_mut(&job)?;
    if !j.complete() || j.in_callbacks {
        return None;
    }
    if !j.callbacks.is_empty() {
        j.in_callbacks = true;
        return Some(job);
    }
    garbage.wake(j.waker.take());
    if j.orphaned
        && let Some(j) = st.jobs.remove(&job)
    {
        garbage.put(j);
    }
    None
}

/// Runs a job's callbacks (on the thread that completed it, as CPython's
/// result handler does), without the lock, so that they may use the pool;
/// then lets its waiters see it settled.
pub(crate) fn run_callbacks(job: Option<JobId>, shared: &Shared) {
    let Some(id) = job else {
        return;
    };
    loop {
        let mut st = shared.lock();
        let Some(j) = st.jobs.get_mut(&id) else {
            return;
        };
        if j.callbacks.is_empty() {
            j.in_callbacks = false;
            let mut garbage = Garbage::default();
            garbage.wake(j.waker.take());
            if j.orphaned
                && let Some(gone) = st.jobs.remove(&id)
            {
                garbage.put(gone);
            }
            drop(st);
            shared.changed.notify_all();
            garbage.dispose();
            return;
        }
        let callbacks = std::mem::take(&mut j.callbacks);
        // The outcomes move out while the callbacks read them; the entry
        // stays, unsettled, so waiters keep waiting.
        let mut job = Job::new(j.expected);
        job.chunks = std::mem::take(&mut j.chunks);
        job.received = j.received;
        job.abort = j.abort.clone();
        drop(st);
        for cb in callbacks {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&mut job)));
        }
        // Outcomes that came meanwhile (after the pool ended) are replaced,
        // and dropped after the lock, as the job is if it is gone.
        let mut garbage = Garbage::default();
        let mut st = shared.lock();
        match st.jobs.get_mut(&id) {
            Some(j) => garbage.put(std::mem::replace(&mut j.chunks, job.chunks)),
            None => garbage.put(job),
        }
        drop(st);
        garbage.dispose();
    }
}
