//! How tasks travel to workers and their outcomes back.
//!
//! The pool's core (`core.rs`) keeps one queue of tasks and one table
//! of jobs (see [`crate::job`]), whatever the workers are; a transport
//! starts the workers and moves tasks from that queue to them:
//!
//! - [`process`]: workers are processes of a [`mp_proc::Context`]. A task
//!   is encoded (a function reference and its items' argument records) and
//!   sent over the worker's own connection by the pool's scheduler thread
//!   ([`crate::scheduler`]), which also reads the outcomes, notices a worker
//!   that dies (its sentinel), fails only the task it was running and
//!   replaces it, and retires workers after `maxtasksperchild`.
//! - [`thread`]: workers are threads of this process. A task is a boxed
//!   closure (or an encoded task, run in place): no encoding, no ids, no
//!   scheduler thread. Workers take tasks from the queue themselves, and a
//!   caller that waits runs its own call's tasks that no worker has started.
//!
//! Workers on other hosts ([`Workers::Hosts`](mp_proc::Workers::Hosts))
//! are the process transport's, in one respect different: they share no
//! memory with the pool, so a worker's only handle is its connection
//! (mp-proc carries it across hosts), and it tells the scheduler where it
//! is over that connection instead of in a shared record (see
//! [`crate::worker::Reporter`]). A worker's death shows on its process's
//! sentinel, or as the end of its connection. The core, the job table, the
//! results and `Pool`'s API stay as they are; the pool picks the transport
//! from [`mp_proc::Context::workers`].
//!
//! [`Connection`]: mp_proc::Connection

pub(crate) mod process;
pub(crate) mod thread;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::error::Result;
use crate::job::{JobId, Shared};

/// What the core asks of a transport.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Starts the workers of the pool whose state is `shared`; an error if
    /// none could start (the pool's constructor fails).
    fn start(self: Arc<Self>, shared: &Arc<Shared>) -> Result<()>;

    /// The pool's run state changed: whoever hands tasks out looks again.
    fn wake(&self);

    /// Tasks are about to be queued (their caller is gathering them): a
    /// transport whose workers sleep may wake one now, so that it is up
    /// when they come.
    fn expect(&self) {}

    /// Tasks were queued.
    fn queued(&self) {
        self.wake()
    }

    /// Ends the current workers now with `signal` (`SIGTERM`, `SIGKILL`);
    /// the pool goes on with fresh ones. Threads cannot be ended from
    /// outside: a transport of threads does nothing.
    fn end_workers(&self, _signal: i32) {}

    /// Whether tasks may be closures of this process ([`Work::Local`](crate::job::Work::Local)).
    fn runs_closures(&self) -> bool {
        false
    }

    /// Runs, on the calling thread, tasks of `job` that no worker has
    /// started, while the caller would wait for them; whether it ran any.
    /// Only a transport whose workers are threads of this process can.
    fn help(&self, _shared: &Shared, _job: JobId) -> bool {
        false
    }

    /// Whether the transport itself turns Ctrl-C into the pool's end (a
    /// scheduler thread woken by the SIGINT handler); if not, waiters check
    /// for it.
    fn watches_interrupts(&self) -> bool {
        true
    }

    /// Waits until `deadline` (`None`: no limit) for the workers to end,
    /// after `close` or `terminate`; whether they ended. Every caller waits
    /// for the same end, however many wait at once.
    fn join(&self, deadline: Option<Instant>) -> bool;
}

/// The threads of a transport that have not ended yet (its scheduler, or
/// its workers), for any number of joiners to wait on at once: a joiner
/// that took the threads' handles is not the only one that waits.
#[derive(Default)]
pub(crate) struct Live {
    count: Mutex<usize>,
    ended: Condvar,
}

impl Live {
    /// A thread is about to start: it is counted until its [`Alive`] drops.
    pub(crate) fn start(self: &Arc<Self>) -> Alive {
        *mp_proc::plumbing::lock(&self.count) += 1;
        Alive(self.clone())
    }

    /// Waits until at most `floor` threads are left, or `deadline`
    /// passes; whether they are.
    pub(crate) fn wait(&self, floor: usize, deadline: Option<Instant>) -> bool {
        let mut count = mp_proc::plumbing::lock(&self.count);
        while *count > floor {
            count = match deadline {
                None => self.ended.wait(count).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let left = t.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.ended
                        .wait_timeout(count, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        true
    }
}

/// One counted thread of a [`Live`]; dropping it (when the thread returns
/// or unwinds, or never started) counts it out.
pub(crate) struct Alive(Arc<Live>);

impl Drop for Alive {
    fn drop(&mut self) {
        let mut count = mp_proc::plumbing::lock(&self.0.count);
        *count = count.saturating_sub(1);
        drop(count);
        self.0.ended.notify_all();
    }
}
