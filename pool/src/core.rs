//! The pool's scheduler: one thread per pool, non-generic (one copy of it is
//! compiled whatever the item types), that starts workers, hands each its
//! tasks over its own connection, collects outcomes, and replaces a worker
//! that dies, failing exactly the tasks it held.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mp_proc::{Connection, ErasedFunction, ProcessLike};

use crate::error::{Error, Result};
use crate::records;
use crate::worker::{DoneMsg, FromWorker, TaskMsg, ToWorker, WorkerArgs};

pub(crate) type JobId = u64;
/// What became of one item: its encoded result, or why there is none.
pub(crate) type ItemResult = Result<Vec<u8>>;
/// Makes a worker process (or thread) for the pool's context.
pub(crate) type Spawner = Box<dyn Fn(WorkerArgs) -> Box<dyn ProcessLike> + Send>;
/// Called once when a job completes, with its outcomes.
pub(crate) type Callback = Box<dyn FnOnce(&Job) + Send>;

/// A worker is given tasks ahead so that it never idles between them: at
/// least two, and small ones until it holds this many items.
const PREFETCH_TASKS: usize = 2;
const PREFETCH_ITEMS: usize = 256;

/// The outcomes of one task: `count` items from index `start`.
pub(crate) enum Chunk {
    /// Outcome records, read from `pos` (items before it were taken).
    Records {
        buf: Vec<u8>,
        pos: usize,
        taken: usize,
    },
    /// Every item failed the same way (a dead worker).
    Failed(Error),
}

impl Chunk {
    /// Takes the next item of the chunk.
    fn take(&mut self) -> ItemResult {
        match self {
            Chunk::Records { buf, pos, taken } => match records::read(buf, *pos) {
                Some((tag, bytes, next)) => {
                    *pos = next;
                    *taken += 1;
                    outcome(tag, bytes)
                }
                None => Err(Error::Encoding {
                    message: "a malformed outcome".into(),
                }),
            },
            Chunk::Failed(e) => Err(e.clone()),
        }
    }
}

/// One outcome record as an item result.
pub(crate) fn outcome(tag: u8, bytes: &[u8]) -> ItemResult {
    match tag {
        records::VALUE => Ok(bytes.to_vec()),
        records::PANICKED => Err(Error::Panicked {
            message: String::from_utf8_lossy(bytes).into_owned(),
        }),
        _ => Err(Error::Encoding {
            message: String::from_utf8_lossy(bytes).into_owned(),
        }),
    }
}
/// How long a worker that closed its connection gets to exit before it is
/// killed (only a guard: it normally exits at once).
const EXIT_GRACE: Duration = Duration::from_secs(5);

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) enum Run {
    Running,
    Closed,
    Terminated,
}

pub(crate) struct Job {
    /// Outcomes by the index of their first item.
    pub(crate) chunks: BTreeMap<usize, (usize, Chunk)>,
    /// The number of items, once known (an imap learns it at the end).
    pub(crate) expected: Option<usize>,
    pub(crate) received: usize,
    /// Set when the pool ended (terminated, interrupted, broken): every item
    /// not received yet has this error.
    pub(crate) abort: Option<Error>,
    callbacks: Vec<Callback>,
    /// Its AsyncResult is gone: forget the job once complete.
    orphaned: bool,
}

impl Job {
    pub(crate) fn complete(&self) -> bool {
        self.abort.is_some() || self.expected.is_some_and(|n| self.received >= n)
    }

    /// Visits every item's outcome in index order without taking them;
    /// missing ones (the pool ended) are the abort error.
    pub(crate) fn each(&self, items: usize, mut f: impl FnMut(Result<&[u8]>)) {
        let missing = || Err(self.abort.clone().unwrap_or(Error::Terminated));
        let mut next = 0;
        for (&start, (count, chunk)) in &self.chunks {
            while next < start.min(items) {
                f(missing());
                next += 1;
            }
            match chunk {
                Chunk::Records { buf, pos, .. } => {
                    let mut p = *pos;
                    for _ in 0..*count {
                        match records::read(buf, p) {
                            Some((records::VALUE, bytes, n)) => {
                                f(Ok(bytes));
                                p = n;
                            }
                            Some((tag, bytes, n)) => {
                                f(outcome(tag, bytes).map(|_| &[][..]));
                                p = n;
                            }
                            None => f(Err(Error::Encoding {
                                message: "a malformed outcome".into(),
                            })),
                        }
                    }
                }
                Chunk::Failed(e) => (0..*count).for_each(|_| f(Err(e.clone()))),
            }
            next = start + count;
        }
        while next < items {
            f(missing());
            next += 1;
        }
    }

    /// Takes the outcome of item `index`, if it has arrived (items of a chunk
    /// are taken in order).
    pub(crate) fn take(&mut self, index: usize) -> Option<ItemResult> {
        let (&start, (count, chunk)) = self.chunks.range_mut(..=index).next_back()?;
        if index >= start + *count {
            return None;
        }
        let r = chunk.take();
        let done = match chunk {
            Chunk::Records { taken, .. } => *taken >= *count,
            Chunk::Failed(_) => {
                // Shrink the failed chunk by one from the front.
                let rest = *count - 1;
                let e = match self.chunks.remove(&start) {
                    Some((_, Chunk::Failed(e))) => e,
                    _ => unreachable!(),
                };
                if rest > 0 {
                    self.chunks.insert(start + 1, (rest, Chunk::Failed(e)));
                }
                return Some(r);
            }
        };
        if done {
            self.chunks.remove(&start);
        } else {
            // The chunk's next item is now index + 1.
            let entry = self.chunks.remove(&start).expect("present");
            self.chunks
                .insert(index + 1, (start + entry.0 - index - 1, entry.1));
        }
        Some(r)
    }

    /// The first index that has an outcome waiting, if any.
    pub(crate) fn first_ready(&self) -> Option<usize> {
        self.chunks.keys().next().copied()
    }
}

struct Task {
    id: u64,
    job: JobId,
    start: usize,
    count: usize,
    func: ErasedFunction,
    items: Vec<u8>,
}

pub(crate) struct State {
    pub(crate) run: Run,
    pending: VecDeque<Task>,
    pub(crate) jobs: HashMap<JobId, Job>,
    next_job: JobId,
    next_task: u64,
    /// Why the pool can run nothing (its initializer failed).
    pub(crate) broken: Option<Error>,
    /// The scheduler has ended.
    pub(crate) finished: bool,
    /// Why it was terminated, for the jobs it failed.
    end: Option<Error>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled whenever results arrive or the state changes.
    pub(crate) changed: Condvar,
    wake: Mutex<PipeWriter>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the scheduler.
    pub(crate) fn wake(&self) {
        let _ = self
            .wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(b".");
    }
}

pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    scheduler: Mutex<Option<JoinHandle<()>>>,
    slot: Option<usize>,
    pub(crate) processes: usize,
}

/// What the scheduler needs to make workers.
pub(crate) struct Setup {
    pub(crate) processes: usize,
    pub(crate) spawner: Spawner,
    pub(crate) initializer: Option<(ErasedFunction, mp_proc::codec::Packed)>,
    pub(crate) maxtasks: Option<usize>,
}

impl Core {
    pub(crate) fn start(setup: Setup) -> Result<Core> {
        let (wake_r, wake_w) = std::io::pipe().map_err(|e| mp_proc::Error::Os {
            op: "pipe",
            source: e,
        })?;
        let slot = crate::sys::register(std::os::fd::AsRawFd::as_raw_fd(&wake_w.as_fd()));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                run: Run::Running,
                pending: VecDeque::new(),
                jobs: HashMap::new(),
                next_job: 0,
                next_task: 0,
                broken: None,
                finished: false,
                end: None,
            }),
            changed: Condvar::new(),
            wake: Mutex::new(wake_w),
        });
        let processes = setup.processes;
        let mut scheduler = Scheduler {
            shared: shared.clone(),
            setup,
            workers: Vec::new(),
            wake: wake_r,
        };
        // Start the first workers here, so that a pool that cannot start any
        // is an error of its constructor.
        scheduler.fill()?;
        mp_logging::get_logger().debug("pool started");
        let handle = std::thread::Builder::new()
            .name("mp-pool".into())
            .spawn(move || scheduler.run())
            .map_err(|e| mp_proc::Error::Os {
                op: "start the pool's thread",
                source: e,
            })?;
        Ok(Core {
            shared,
            scheduler: Mutex::new(Some(handle)),
            slot,
            processes,
        })
    }

    /// Registers a new job of `expected` items.
    pub(crate) fn new_job(&self, expected: Option<usize>) -> Result<JobId> {
        let mut st = self.shared.lock();
        if st.run != Run::Running {
            return Err(Error::NotRunning);
        }
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        let id = st.next_job;
        st.next_job += 1;
        st.jobs.insert(
            id,
            Job {
                chunks: BTreeMap::new(),
                expected,
                received: 0,
                abort: None,
                callbacks: Vec::new(),
                orphaned: false,
            },
        );
        Ok(id)
    }

    /// Queues items `start..` of a job (encoded arguments, or why one could
    /// not be encoded) in tasks of `chunksize`.
    pub(crate) fn submit(
        &self,
        job: JobId,
        func: ErasedFunction,
        start: usize,
        items: impl IntoIterator<Item = ItemResult>,
        chunksize: usize,
    ) {
        let mut tasks = Vec::new();
        let mut current: Option<Task> = None;
        for (index, item) in (start..).zip(items) {
            let t = current.get_or_insert_with(|| Task {
                id: 0,
                job,
                start: index,
                count: 0,
                func,
                items: Vec::new(),
            });
            match item {
                Ok(bytes) => records::push(&mut t.items, records::VALUE, &bytes),
                Err(e) => records::push(&mut t.items, records::ENCODING, e.to_string().as_bytes()),
            }
            t.count += 1;
            if t.count >= chunksize {
                tasks.extend(current.take());
            }
        }
        tasks.extend(current);
        let mut st = self.shared.lock();
        for mut t in tasks {
            t.id = st.next_task;
            st.next_task += 1;
            st.pending.push_back(t);
        }
        drop(st);
        self.shared.wake();
    }

    /// Queues a task whose items are already encoded records.
    pub(crate) fn submit_records(
        &self,
        job: JobId,
        func: ErasedFunction,
        start: usize,
        count: usize,
        items: Vec<u8>,
    ) {
        let mut st = self.shared.lock();
        let id = st.next_task;
        st.next_task += 1;
        st.pending.push_back(Task {
            id,
            job,
            start,
            count,
            func,
            items,
        });
        drop(st);
        self.shared.wake();
    }

    /// Sets the number of items of a job whose input has ended.
    pub(crate) fn set_expected(&self, job: JobId, n: usize) {
        let mut st = self.shared.lock();
        let callbacks = match st.jobs.get_mut(&job) {
            Some(j) => {
                j.expected = Some(n);
                completed(&mut st, job)
            }
            None => None,
        };
        drop(st);
        run_callbacks(callbacks, &self.shared);
        self.shared.changed.notify_all();
    }

    /// Adds a callback, run once the job is complete (now, if it is).
    pub(crate) fn on_complete(&self, job: JobId, callback: Callback) {
        let mut st = self.shared.lock();
        match st.jobs.get_mut(&job) {
            Some(j) if j.complete() => callback(j),
            Some(j) => j.callbacks.push(callback),
            None => {}
        }
    }

    /// Takes a complete job out of the pool (its handle's `get`).
    pub(crate) fn take_job(&self, job: JobId) -> Option<Job> {
        self.shared.lock().jobs.remove(&job)
    }

    /// Forgets a job whose handle is gone (now if complete, else when it is).
    pub(crate) fn forget(&self, job: JobId) {
        let mut st = self.shared.lock();
        if let Some(j) = st.jobs.get_mut(&job) {
            if j.complete() && j.callbacks.is_empty() {
                st.jobs.remove(&job);
            } else {
                j.orphaned = true;
            }
        }
    }

    /// Waits until `done(state)` holds or `deadline` passes; false on timeout.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut State) -> bool,
    ) -> bool {
        let _sigint = crate::sys::WaitGuard::new();
        let mut st = self.shared.lock();
        loop {
            if done(&mut st) {
                return true;
            }
            match deadline {
                None => {
                    st = self
                        .shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(|p| p.into_inner())
                }
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return done(&mut st);
                    }
                    st = self
                        .shared
                        .changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    pub(crate) fn close(&self) {
        let mut st = self.shared.lock();
        if st.run == Run::Running {
            mp_logging::get_logger().debug("closing pool");
            st.run = Run::Closed;
        }
        drop(st);
        self.shared.wake();
    }

    pub(crate) fn terminate(&self, why: Error) {
        let mut st = self.shared.lock();
        if st.run != Run::Terminated {
            mp_logging::get_logger().debug("terminating pool");
            st.run = Run::Terminated;
            st.end.get_or_insert(why);
        }
        drop(st);
        self.shared.wake();
    }

    pub(crate) fn run_state(&self) -> Run {
        self.shared.lock().run
    }

    /// Waits for the scheduler (and so every worker) to end.
    pub(crate) fn join(&self) -> Result<()> {
        if self.run_state() == Run::Running {
            return Err(Error::StillRunning);
        }
        mp_logging::get_logger().debug("joining pool");
        let handle = self
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _sigint = crate::sys::WaitGuard::new();
            let _ = h.join();
        }
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            crate::sys::unregister(slot);
        }
    }
}

/// Records a task's outcomes; returns the job's callbacks if it just completed.
fn record(
    st: &mut State,
    job: JobId,
    start: usize,
    count: usize,
    chunk: Chunk,
) -> Option<(Vec<Callback>, JobId)> {
    let j = st.jobs.get_mut(&job)?;
    j.chunks.insert(start, (count, chunk));
    j.received += count;
    completed(st, job)
}

/// A job that is complete hands over its callbacks (once).
fn completed(st: &mut State, job: JobId) -> Option<(Vec<Callback>, JobId)> {
    let j = st.jobs.get_mut(&job)?;
    if j.complete() && !j.callbacks.is_empty() {
        return Some((std::mem::take(&mut j.callbacks), job));
    }
    if j.complete() && j.orphaned {
        st.jobs.remove(&job);
    }
    None
}

/// Runs callbacks (on the scheduler's thread, as CPython's result handler
/// does); the job is read under the lock, so callbacks should be quick.
fn run_callbacks(callbacks: Option<(Vec<Callback>, JobId)>, shared: &Shared) {
    let Some((callbacks, job)) = callbacks else {
        return;
    };
    let mut st = shared.lock();
    if let Some(j) = st.jobs.get(&job) {
        for cb in callbacks {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(j)));
        }
    }
    if st.jobs.get(&job).is_some_and(|j| j.orphaned) {
        st.jobs.remove(&job);
    }
}

struct InFlight {
    id: u64,
    job: JobId,
    start: usize,
    count: usize,
    func: ErasedFunction,
    /// Kept to give a task back if the worker returns it unrun.
    items: Option<Vec<u8>>,
}

struct Worker {
    process: Box<dyn ProcessLike>,
    conn: Connection,
    name: String,
    pid: u32,
    in_flight: VecDeque<InFlight>,
}

struct Scheduler {
    shared: Arc<Shared>,
    setup: Setup,
    workers: Vec<Worker>,
    wake: PipeReader,
}

impl Scheduler {
    /// Starts workers until there are `processes` of them.
    fn fill(&mut self) -> Result<()> {
        while self.workers.len() < self.setup.processes {
            let (ours, theirs) = mp_proc::pipe(true)?;
            let args = WorkerArgs {
                conn: theirs,
                initializer: self.setup.initializer.clone(),
                maxtasks: self.setup.maxtasks,
            };
            let mut process = (self.setup.spawner)(args);
            let name = process.get_name().replacen("Process", "PoolWorker", 1);
            process.set_name(name.clone());
            process.set_daemon(true);
            process.start()?;
            let pid = process.pid().unwrap_or(0);
            mp_logging::get_logger().debug("added worker");
            self.workers.push(Worker {
                process,
                conn: ours,
                name,
                pid,
                in_flight: VecDeque::new(),
            });
        }
        Ok(())
    }

    fn run(mut self) {
        let log = mp_logging::get_logger();
        let interrupts = crate::sys::interrupts();
        loop {
            // Decide, under the lock.
            let mut st = self.shared.lock();
            if crate::sys::interrupts() != interrupts && st.run != Run::Terminated {
                st.run = Run::Terminated;
                st.end = Some(Error::Interrupted);
            }
            if st.run == Run::Terminated {
                let why = st.end.clone().unwrap_or(Error::Terminated);
                drop(st);
                self.end(why);
                return;
            }
            let idle = st.pending.is_empty() && self.workers.iter().all(|w| w.in_flight.is_empty());
            if st.run == Run::Closed && idle {
                drop(st);
                self.stop();
                return;
            }
            let mut sends: Vec<(usize, Vec<Task>)> = Vec::new();
            if st.broken.is_none() {
                for (i, w) in self.workers.iter().enumerate() {
                    let mut tasks = w.in_flight.len();
                    let mut items: usize = w.in_flight.iter().map(|t| t.count).sum();
                    let mut batch = Vec::new();
                    while (tasks < PREFETCH_TASKS || items < PREFETCH_ITEMS)
                        && tasks < PREFETCH_ITEMS
                    {
                        match st.pending.pop_front() {
                            Some(t) => {
                                tasks += 1;
                                items += t.count;
                                batch.push(t);
                            }
                            None => break,
                        }
                    }
                    if !batch.is_empty() {
                        sends.push((i, batch));
                    }
                }
            }
            drop(st);

            // Hand out the tasks, one message per worker (a worker that died
            // is seen below).
            let keep = self.setup.maxtasks.is_some();
            for (i, batch) in sends {
                let w = &mut self.workers[i];
                let mut msgs = Vec::with_capacity(batch.len());
                for t in batch {
                    w.in_flight.push_back(InFlight {
                        id: t.id,
                        job: t.job,
                        start: t.start,
                        count: t.count,
                        func: t.func,
                        items: keep.then(|| t.items.clone()),
                    });
                    msgs.push(TaskMsg {
                        id: t.id,
                        func: t.func,
                        items: t.items,
                    });
                }
                let _ = w.conn.send(&ToWorker::Tasks(msgs));
            }

            // Wait for outcomes, a dead worker, or a wake-up. A worker's end
            // shows on its sentinel even if something else (a process its
            // task started) still holds its end of the connection.
            let n = self.workers.len();
            let mut fds = vec![self.wake.as_fd()];
            fds.extend(self.workers.iter().map(|w| w.conn.as_fd()));
            let mut sentinel_of = Vec::new();
            for (i, w) in self.workers.iter().enumerate() {
                if let Some(fd) = w.process.sentinel() {
                    fds.push(fd);
                    sentinel_of.push(i);
                }
            }
            let ready = mp_proc::connection::wait_fds(&fds, None).unwrap_or_default();
            drop(fds);
            if ready.contains(&0) {
                let mut buf = [0u8; 256];
                let _ = self.wake.read(&mut buf);
            }
            let mut dead = Vec::new();
            for &r in ready.iter().filter(|&&r| r > 0 && r <= n) {
                if !self.collect(r - 1) {
                    dead.push(r - 1);
                }
            }
            for &r in ready.iter().filter(|&&r| r > n) {
                let i = sentinel_of[r - n - 1];
                if dead.contains(&i) {
                    continue;
                }
                // It has ended: what it sent before is in the connection.
                if matches!(self.workers[i].conn.poll(Some(Duration::ZERO)), Ok(true)) {
                    self.collect(i);
                }
                dead.push(i);
            }
            dead.sort_unstable();
            for i in dead.into_iter().rev() {
                self.bury(i);
            }
            let needed = {
                let st = self.shared.lock();
                st.broken.is_none()
                    && match st.run {
                        Run::Running => true,
                        Run::Closed => !st.pending.is_empty(),
                        Run::Terminated => false,
                    }
            };
            if needed && let Err(e) = self.fill() {
                log.warning(format_args!("could not replace a pool worker: {e}"));
                self.fail_everything(e);
            }
        }
    }

    /// Reads what worker `i` sent; false if it is gone.
    fn collect(&mut self, i: usize) -> bool {
        loop {
            match self.workers[i].conn.recv::<FromWorker>() {
                Ok(FromWorker::Done { done, returned }) => self.done(i, done, returned),
                Ok(FromWorker::InitFailed(message)) => {
                    self.fail_everything(Error::InitializerFailed { message });
                    return false;
                }
                Err(_) => return false,
            }
            if !matches!(self.workers[i].conn.poll(Some(Duration::ZERO)), Ok(true)) {
                return true;
            }
        }
    }

    /// Records finished tasks of worker `i`, and re-queues the ones it gave back.
    fn done(&mut self, i: usize, done: Vec<DoneMsg>, returned: Vec<u64>) {
        let w = &mut self.workers[i];
        let mut st = self.shared.lock();
        let mut callbacks = Vec::new();
        let mut notify = false;
        for d in done {
            let Some(pos) = w.in_flight.iter().position(|t| t.id == d.id) else {
                continue;
            };
            let t = w.in_flight.remove(pos).expect("found");
            let chunk = Chunk::Records {
                buf: d.outcomes,
                pos: 0,
                taken: 0,
            };
            notify |= st.jobs.get(&t.job).is_some_and(|j| j.expected.is_none());
            callbacks.extend(record(&mut st, t.job, t.start, t.count, chunk));
            notify |= st.jobs.get(&t.job).is_none_or(|j| j.complete());
        }
        for id in returned.into_iter().rev() {
            if let Some(pos) = w.in_flight.iter().position(|t| t.id == id) {
                let t = w.in_flight.remove(pos).expect("found");
                if let Some(items) = t.items {
                    st.pending.push_front(Task {
                        id,
                        job: t.job,
                        start: t.start,
                        count: t.count,
                        func: t.func,
                        items,
                    });
                }
            }
        }
        drop(st);
        for cb in callbacks {
            run_callbacks(Some(cb), &self.shared);
        }
        // Waiters are woken when a job completes, or for any outcome of a
        // lazy (imap) job, whose consumer takes items one by one.
        if notify {
            self.shared.changed.notify_all();
        }
    }

    /// The pool can run nothing any more: fail what is queued and every job.
    fn fail_everything(&mut self, why: Error) {
        let mut st = self.shared.lock();
        st.broken.get_or_insert(why.clone());
        st.pending.clear();
        let mut all = Vec::new();
        for (id, j) in st.jobs.iter_mut() {
            j.abort.get_or_insert(why.clone());
            all.push(*id);
        }
        let callbacks: Vec<_> = all
            .into_iter()
            .filter_map(|id| completed(&mut st, id))
            .collect();
        drop(st);
        for cb in callbacks {
            run_callbacks(Some(cb), &self.shared);
        }
        self.shared.changed.notify_all();
    }

    /// Worker `i` is gone: reap it, fail what it held, forget it.
    fn bury(&mut self, i: usize) {
        let mut w = self.workers.remove(i);
        let exitcode = exit_code(w.process.as_mut());
        mp_logging::get_logger().debug(format_args!("cleaning up worker {}", w.pid));
        if w.in_flight.is_empty() {
            return; // retired (maxtasksperchild), or stopped
        }
        let why = Error::WorkerDied {
            worker: w.name.clone(),
            pid: w.pid,
            exitcode,
        };
        let mut st = self.shared.lock();
        let mut callbacks = Vec::new();
        for t in w.in_flight.drain(..) {
            callbacks.extend(record(
                &mut st,
                t.job,
                t.start,
                t.count,
                Chunk::Failed(why.clone()),
            ));
        }
        drop(st);
        for cb in callbacks {
            run_callbacks(Some(cb), &self.shared);
        }
        self.shared.changed.notify_all();
    }

    /// `close()` and all work done: stop the workers and end.
    fn stop(&mut self) {
        for w in &self.workers {
            let _ = w.conn.send(&ToWorker::Stop);
        }
        for mut w in self.workers.drain(..) {
            exit_code(w.process.as_mut());
        }
        mp_logging::get_logger().debug("worker handler exiting");
        self.shared.lock().finished = true;
        self.shared.changed.notify_all();
    }

    /// `terminate()`: end the workers now and fail what is left.
    fn end(&mut self, why: Error) {
        mp_logging::get_logger().debug("terminating workers");
        for w in &self.workers {
            // Threads cannot be killed: they stop at their next task.
            let _ = w.process.terminate();
        }
        for w in self.workers.drain(..) {
            let Worker {
                mut process, conn, ..
            } = w;
            drop(conn); // a thread worker sees end of file and stops
            exit_code(process.as_mut());
        }
        let mut st = self.shared.lock();
        st.pending.clear();
        st.finished = true;
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
            .filter_map(|id| completed(&mut st, id))
            .collect();
        drop(st);
        for cb in callbacks {
            run_callbacks(Some(cb), &self.shared);
        }
        self.shared.changed.notify_all();
    }
}

/// Joins a worker that is ending; kills one that does not end in time.
fn exit_code(p: &mut dyn ProcessLike) -> i32 {
    match p.join_timeout(EXIT_GRACE) {
        Ok(Some(code)) => code,
        _ => {
            let _ = p.kill();
            p.join().unwrap_or(-libc::SIGKILL)
        }
    }
}
