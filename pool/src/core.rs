//! The pool's core, one for every transport: a pool's state and its
//! transport, and what the pool's handles (`Pool`, `AsyncResult`, `IMap`)
//! do with them. Non-generic: one copy is compiled whatever the item types.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::job::{Callback, Garbage, Job, JobId, Run, Shared, State, Task, run_callbacks};
use crate::transport::Transport;

pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    pub(crate) processes: usize,
    /// Buffers of calls whose items stay in this process, for the next ones.
    pub(crate) spare: Arc<crate::spare::Spare>,
}

/// How often a waiter of a pool whose transport does not watch for Ctrl-C
/// looks whether one came.
const INTERRUPT_CHECK: Duration = Duration::from_millis(50);

impl Core {
    /// Starts the pool's workers over `transport`.
    pub(crate) fn start<T: Transport>(transport: T, processes: usize) -> Result<Core> {
        let shared = Arc::new(Shared::new());
        let transport = Arc::new(transport);
        transport.clone().start(&shared)?;
        Ok(Core {
            shared,
            transport,
            processes,
            spare: Arc::default(),
        })
    }

    /// Whether tasks may be closures of this process.
    pub(crate) fn runs_closures(&self) -> bool {
        self.transport.runs_closures()
    }

    /// Registers a new job of `expected` items (`None`: an imap's, known at
    /// the end).
    pub(crate) fn new_job(&self, expected: Option<usize>) -> Result<JobId> {
        self.shared.lock().new_job(expected)
    }

    /// Tasks are about to be queued (see [`Transport::expect`]).
    pub(crate) fn expect(&self) {
        self.transport.expect();
    }

    /// Queues tasks, in order.
    pub(crate) fn submit(&self, tasks: impl IntoIterator<Item = Task>) {
        self.shared.lock().pending.extend(tasks);
        self.transport.queued();
    }

    /// Sets the number of items of a job whose input has ended.
    pub(crate) fn set_expected(&self, job: JobId, n: usize) {
        let mut garbage = Garbage::default();
        let due = self.shared.lock().set_expected(job, n, &mut garbage);
        garbage.dispose();
        run_callbacks(due, &self.shared);
        self.shared.changed.notify_all();
    }

    /// Adds a callback, run once the job is complete (now, on this thread,
    /// if it is).
    pub(crate) fn on_complete(&self, job: JobId, callback: Callback) {
        let mut garbage = Garbage::default();
        let due = self.shared.lock().add_callback(job, callback, &mut garbage);
        garbage.dispose();
        run_callbacks(due, &self.shared);
    }

    /// Takes a complete job out of the pool (its handle's `get`).
    pub(crate) fn take_job(&self, job: JobId) -> Option<Job> {
        self.shared.lock().jobs.remove(&job)
    }

    /// Forgets an imap's job whose iterator was dropped: its tasks not handed
    /// out yet are dropped, and outcomes still to come are ignored. Its
    /// values (outcomes not read, items not sent) are dropped after the lock
    /// is let go: their `Drop` may use the pool (or panic).
    pub(crate) fn discard(&self, job: JobId) {
        let mut garbage = Garbage::default();
        let mut st = self.shared.lock();
        garbage.put(st.jobs.remove(&job));
        let (dropped, kept): (VecDeque<Task>, VecDeque<Task>) = std::mem::take(&mut st.pending)
            .into_iter()
            .partition(|t| t.job == job);
        st.pending = kept;
        drop(st);
        garbage.put(dropped);
        garbage.dispose();
    }

    /// Cancels a job none of whose tasks has started (see
    /// [`State::cancel`]): runs its callbacks and wakes its waiters; whether
    /// it did.
    pub(crate) fn cancel(&self, job: JobId) -> bool {
        let mut garbage = Garbage::default();
        let cancelled = self.shared.lock().cancel(job, &mut garbage);
        garbage.dispose();
        let Some(due) = cancelled else {
            return false;
        };
        run_callbacks(due, &self.shared);
        self.shared.changed.notify_all();
        true
    }

    /// Forgets a job whose handle is gone (now if complete, else when it is).
    /// A complete one's values are dropped here, on this thread, after the
    /// lock is let go: their `Drop` may use the pool (or panic).
    pub(crate) fn forget(&self, job: JobId) {
        let mut st = self.shared.lock();
        // The waker of its future, if any, is let go now (not when the job
        // completes): the task that polled it may be gone too.
        let waker = st.jobs.get_mut(&job).and_then(Job::take_waker);
        let done = st.forget(job);
        drop(st);
        drop(waker);
        drop(done);
    }

    /// Runs tasks of `job` on this thread while no worker has started them,
    /// if the transport can; whether it did (its last ones are then running
    /// elsewhere and end soon).
    pub(crate) fn help(&self, job: JobId) -> bool {
        self.transport.help(&self.shared, job)
    }

    /// Waits until `done(state)` holds or `deadline` passes; false on timeout.
    /// Ctrl-C meanwhile terminates the pool ([`Error::Interrupted`]).
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut State) -> bool,
    ) -> bool {
        let _sigint = crate::sys::WaitGuard::new();
        let interrupts = crate::sys::interrupts();
        let watched = self.transport.watches_interrupts();
        let mut st = self.shared.lock();
        loop {
            if done(&mut st) {
                return true;
            }
            if !watched && crate::sys::interrupts() != interrupts {
                drop(st);
                self.terminate(Error::Interrupted);
                st = self.shared.lock();
                continue;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return done(&mut st);
            }
            let slice = match (left, watched) {
                (None, true) => None,
                (l, true) => l,
                (l, false) => Some(l.map_or(INTERRUPT_CHECK, |l| l.min(INTERRUPT_CHECK))),
            };
            st = match slice {
                None => self
                    .shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(s) => {
                    self.shared
                        .changed
                        .wait_timeout(st, s)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    pub(crate) fn close(&self) {
        let mut st = self.shared.lock();
        if st.run == Run::Running {
            mp_logging::get_logger().debug("closing pool");
            st.run = Run::Closed;
        }
        drop(st);
        self.transport.wake();
    }

    pub(crate) fn terminate(&self, why: Error) {
        let mut st = self.shared.lock();
        if st.run != Run::Terminated {
            mp_logging::get_logger().debug("terminating pool");
            st.run = Run::Terminated;
            st.end.get_or_insert(why);
        }
        drop(st);
        self.transport.wake();
    }

    /// Ends the current workers with `signal`; the pool goes on with fresh
    /// ones (see [`Transport::end_workers`]).
    pub(crate) fn end_workers(&self, signal: i32) {
        self.transport.end_workers(signal);
    }

    pub(crate) fn run_state(&self) -> Run {
        self.shared.lock().run
    }

    /// Waits for every worker to end.
    pub(crate) fn join(&self) -> Result<()> {
        self.join_until(None).map(|_| ())
    }

    /// Waits until `deadline` (`None`: no limit) for every worker to end;
    /// whether they did. Concurrent joiners all wait for the same end.
    pub(crate) fn join_until(&self, deadline: Option<Instant>) -> Result<bool> {
        if self.run_state() == Run::Running {
            return Err(Error::StillRunning);
        }
        mp_logging::get_logger().debug("joining pool");
        let _sigint = crate::sys::WaitGuard::new();
        Ok(self.transport.join(deadline))
    }
}
