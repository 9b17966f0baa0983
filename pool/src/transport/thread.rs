//! Workers that are threads of this process. A task is a closure (or an
//! encoded task, run in place) that a worker takes from the pool's queue
//! itself: no encoding of closures, no ids, no scheduler thread.
//!
//! A caller that waits for its call runs the call's tasks that no worker
//! has started, in order (task inlining, as .NET's `Task.Wait` and Java's
//! `ForkJoinTask.join` do): a small `map` then costs about a loop on the
//! caller instead of thread wake-ups. The pool's `processes` places bound
//! how many tasks run at once, whoever runs them, so a pool of one thread
//! still runs one task at a time; a thread that holds a place (a task that
//! maps on its own pool) runs the inner call's tasks under it. A pool with
//! an initializer leaves every task to its workers, which ran it.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use mp_proc::plumbing::{ErasedFunction, Packed};

use crate::error::{Error, Result};
use crate::job::{Outcomes, Run, Shared, State, Task, Work};
use crate::transport::{Live, Transport};
use crate::worker::{Bound, ExitRequest, InTasks, initialize, run_task};

/// The thread transport of one pool.
pub(crate) struct Threads {
    /// Distinguishes pools in [`HELD`].
    id: u64,
    processes: usize,
    initializer: Option<(ErasedFunction, Packed)>,
    maxtasks: Option<usize>,
    /// The pool's state, once started.
    shared: std::sync::OnceLock<Arc<Shared>>,
    /// Places free to run a task; changed only under the pool's lock, so
    /// that taking a place and a task is one step.
    free: AtomicUsize,
    /// Idle workers wait here (with the pool's lock).
    work: Condvar,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The worker threads that have not ended, for every joiner to wait on.
    live: Arc<Live>,
    /// Submissions so far, read without the lock by a worker that waits
    /// for one that was announced.
    submissions: AtomicU64,
    /// A submission was announced ([`Transport::expect`]): the worker that
    /// sees it watches for it a moment instead of sleeping.
    announced: std::sync::atomic::AtomicBool,
    /// Worker threads started, for their names.
    started: AtomicUsize,
    /// A worker thread could not start its replacement (and stayed on in
    /// its place): set on the first failure of a streak (one warning),
    /// cleared by the next replacement that starts.
    short: std::sync::atomic::AtomicBool,
}

static POOLS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The pools (by id) in which this thread holds a place: what it runs
    /// meanwhile takes no other.
    static HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// The functions of encoded tasks this thread has run.
    static BOUND: RefCell<Bound> = RefCell::new(Bound::default());
    /// The pool (by id) this thread is a worker of (0: none).
    static WORKER_OF: Cell<u64> = const { Cell::new(0) };
}

impl Threads {
    pub(crate) fn new(
        processes: usize,
        initializer: Option<(ErasedFunction, Packed)>,
        maxtasks: Option<usize>,
    ) -> Threads {
        Threads {
            id: POOLS.fetch_add(1, Ordering::Relaxed),
            processes,
            initializer,
            maxtasks,
            shared: std::sync::OnceLock::new(),
            free: AtomicUsize::new(processes),
            work: Condvar::new(),
            workers: Mutex::new(Vec::new()),
            live: Arc::default(),
            submissions: AtomicU64::new(0),
            announced: std::sync::atomic::AtomicBool::new(false),
            started: AtomicUsize::new(0),
            short: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn holds_place(&self) -> bool {
        HELD.with(|h| h.borrow().contains(&self.id))
    }

    /// Takes a place (under the pool's lock `_st`) unless this thread holds
    /// one; whether it took one.
    fn take_place(&self, _st: &MutexGuard<'_, State>) -> Option<bool> {
        if self.holds_place() {
            return Some(false);
        }
        let free = self.free.load(Ordering::Relaxed);
        if free == 0 {
            return None;
        }
        self.free.store(free - 1, Ordering::Relaxed);
        Some(true)
    }

    /// Starts one worker thread.
    fn spawn(self: &Arc<Self>, shared: &Arc<Shared>) -> Result<()> {
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let (me, shared) = (self.clone(), shared.clone());
        let alive = self.live.start();
        let handle = std::thread::Builder::new()
            .name(format!("ThreadPoolWorker-{n}"))
            .spawn(move || {
                let _alive = alive;
                WORKER_OF.with(|w| w.set(me.id));
                me.serve(&shared)
            })
            .map_err(|source| mp_proc::Error::Os {
                op: "start a pool's worker thread",
                source,
            })?;
        mp_proc::plumbing::lock(&self.workers).push(handle);
        Ok(())
    }

    /// A worker thread's loop: Python's `multiprocessing.pool.worker`.
    fn serve(self: Arc<Self>, shared: &Arc<Shared>) {
        let log = mp_logging::get_logger();
        if let Some(init) = &self.initializer {
            let outcome = BOUND.with(|b| initialize(&mut b.borrow_mut(), init));
            if let Err(message) = outcome {
                shared.fail_everything(Error::InitializerFailed { message });
                return;
            }
        }
        let mut completed = 0usize;
        loop {
            let mut st = shared.lock();
            let task = loop {
                if st.run == Run::Terminated || st.broken.is_some() {
                    log.debug("worker got sentinel -- exiting");
                    return;
                }
                if !st.pending.is_empty()
                    && let Some(took) = self.take_place(&st)
                    && let Some(task) = st.pending.pop_front()
                {
                    if !st.pending.is_empty() && self.free.load(Ordering::Relaxed) > 0 {
                        self.work.notify_one();
                    }
                    break (task, took);
                }
                if st.run == Run::Closed && st.pending.is_empty() {
                    log.debug("worker got sentinel -- exiting");
                    drop(st);
                    self.work.notify_all();
                    return;
                }
                if self.announced.swap(false, Ordering::AcqRel) {
                    // Woken ahead of a submission (its caller is still
                    // gathering the items): be up when it comes.
                    let seen = self.submissions.load(Ordering::Acquire);
                    drop(st);
                    mp_proc::plumbing::spin_until_ready(|| {
                        self.submissions.load(Ordering::Acquire) != seen
                    });
                    st = shared.lock();
                    continue;
                }
                st = self.work.wait(st).unwrap_or_else(|p| p.into_inner());
            };
            drop(st);
            let (task, took) = task;
            let exit = self.run(shared, task, took);
            completed += 1;
            if exit.is_some() || self.maxtasks.is_some_and(|max| completed >= max) {
                // Retired, or `mp_proc::exit` in a task: this thread ends
                // (as a worker process would) and another takes its place.
                // If that one cannot start (this process is out of threads
                // or memory), this thread stays on in its place rather than
                // leave the pool short, and tries again at its next
                // retirement.
                let running = shared.lock().run != Run::Terminated;
                if running {
                    match self.spawn(shared) {
                        Ok(()) => {
                            if self.short.swap(false, Ordering::AcqRel) {
                                log.info("a pool worker thread started again: the pool is whole");
                            }
                        }
                        Err(e) => {
                            if !self.short.swap(true, Ordering::AcqRel) {
                                log.warning(format_args!(
                                    "could not replace a pool worker: {e}; the worker thread \
                                     stays on in its place and tries again when it next retires"
                                ));
                            }
                            completed = 0;
                            continue;
                        }
                    }
                }
                log.debug(format_args!("worker exiting after {completed} tasks"));
                return;
            }
        }
    }

    /// Runs `task` on this thread (which took a place for it if `took`),
    /// records its outcomes and gives the place back. `mp_proc::exit` inside
    /// it fails the task (as a worker's death would) and is returned.
    fn run(&self, shared: &Shared, task: Task, took: bool) -> Option<ExitRequest> {
        let Task {
            job,
            start,
            count,
            work,
        } = task;
        if took {
            HELD.with(|h| h.borrow_mut().push(self.id));
        }
        let in_tasks = InTasks::enter();
        let ran = catch_unwind(AssertUnwindSafe(|| match work {
            Work::Local(f) => Ok(f()),
            Work::Encoded { func, items } => BOUND
                .with(|b| run_task(&mut b.borrow_mut(), &func, &items))
                .map(|buf| Outcomes::Records { buf, pos: 0 }),
        }));
        drop(in_tasks);
        if took {
            HELD.with(|h| {
                let mut h = h.borrow_mut();
                if let Some(i) = h.iter().rposition(|&id| id == self.id) {
                    h.remove(i);
                }
            });
        }
        let (outcomes, exit) = match ran {
            Ok(Ok(outcomes)) => (outcomes, None),
            Ok(Err(exit)) | Err(exit) => {
                let current = std::thread::current();
                let why = Error::WorkerDied {
                    worker: current.name().unwrap_or("a thread").to_owned(),
                    pid: std::process::id(),
                    // `mp_proc::exit(n)` in a task: n; a panic outside a
                    // task's items: 1, as a process's.
                    exitcode: mp_proc::plumbing::exit_request_code(&*exit).unwrap_or(1),
                };
                (Outcomes::Failed(why), Some(exit))
            }
        };
        let more = {
            let st = shared.lock();
            if took {
                self.free.fetch_add(1, Ordering::Relaxed);
            }
            !st.pending.is_empty()
        };
        // Recording may drop values of the call (a job whose handle is gone
        // is forgotten with its values): a panicking `Drop` of one ends
        // nothing but that drop, not this worker (a pool left without
        // workers hangs its callers).
        let _ = catch_unwind(AssertUnwindSafe(|| {
            shared.record_all([((job, start, count), outcomes)])
        }));
        if took && more {
            self.work.notify_one();
        }
        exit
    }
}

impl Transport for Threads {
    fn start(self: Arc<Self>, shared: &Arc<Shared>) -> Result<()> {
        let _ = self.shared.set(shared.clone());
        crate::worker::quiet_task_panics();
        for _ in 0..self.processes {
            if let Err(e) = self.spawn(shared) {
                shared.lock().run = Run::Terminated;
                self.wake();
                self.join(None);
                return Err(e);
            }
        }
        Ok(())
    }

    fn wake(&self) {
        if let Some(shared) = self.shared.get() {
            let st = shared.lock();
            if st.run == Run::Terminated && !st.finished {
                // Threads cannot be killed: a running task finishes, and
                // what is queued fails now.
                let why = st.end.clone().unwrap_or(Error::Terminated);
                let mut st = st;
                st.finished = true;
                shared.abort_all(st, why);
            }
        }
        self.work.notify_all();
    }

    fn expect(&self) {
        self.announced.store(true, Ordering::Release);
        self.work.notify_one();
    }

    fn queued(&self) {
        self.submissions.fetch_add(1, Ordering::AcqRel);
        // One worker: a caller that waits runs tasks too, and a worker that
        // takes a task wakes the next if more are queued and a place is free.
        self.work.notify_one();
    }

    fn runs_closures(&self) -> bool {
        true
    }

    fn help(&self, shared: &Shared, job: crate::job::JobId) -> bool {
        if self.initializer.is_some() {
            return false;
        }
        let mut helped = false;
        loop {
            let mut st = shared.lock();
            if st.run == Run::Terminated {
                return helped;
            }
            let Some(pos) = st.pending.iter().position(|t| t.job == job) else {
                return helped;
            };
            let Some(took) = self.take_place(&st) else {
                return helped;
            };
            let Some(task) = st.pending.remove(pos) else {
                return helped;
            };
            drop(st);
            if let Some(exit) = self.run(shared, task, took) {
                // The caller's own thread was asked to end: `mp_proc::exit`
                // unwinds only in a child's target thread (elsewhere it
                // ends the process, on a worker thread too).
                resume_unwind(exit);
            }
            helped = true;
        }
    }

    fn watches_interrupts(&self) -> bool {
        false
    }

    fn join(&self, deadline: Option<Instant>) -> bool {
        // A pool joined (dropped) by one of its own tasks: that worker ends
        // after it, so the others are waited for.
        let mine = WORKER_OF.with(|w| w.get()) == self.id;
        if !self.live.wait(usize::from(mine), deadline) {
            return false;
        }
        // The workers have returned: their threads are ending. The lock is
        // held while they are joined, so that a concurrent joiner returns
        // after them.
        let me = std::thread::current().id();
        let mut workers = mp_proc::plumbing::lock(&self.workers);
        for h in workers.drain(..) {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
        true
    }
}
