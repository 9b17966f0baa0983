//! The pool's scheduler: one thread per pool, non-generic (one copy of it is
//! compiled whatever the item types), that starts workers, hands each its
//! tasks over its own connection, collects outcomes, and replaces a worker
//! that dies, failing exactly the tasks it held.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mp_proc::plumbing::ErasedFunction;
use mp_proc::{Connection, ProcessLike};

use crate::error::{Error, Result};
use crate::records;
use crate::worker::{DoneMsg, FromWorker, TaskRef, ToWorker, ToWorkerRef, WorkerArgs};

pub(crate) type JobId = u64;
/// What became of one item: its encoded result, or why there is none.
pub(crate) type ItemResult = Result<Vec<u8>>;
/// Makes a worker process (or thread) for the pool's context.
pub(crate) type Spawner = Box<dyn Fn(WorkerArgs) -> Box<dyn ProcessLike> + Send>;
/// Called once when a job completes, with its outcomes.
pub(crate) type Callback = Box<dyn FnOnce(&Job) + Send>;

/// A worker is given tasks ahead, so that it never idles between them, as
/// long as what it holds is estimated to take less than this; a worker of
/// slow tasks holds one at a time, so that no task waits behind a slow one
/// while another worker idles (CPython's workers take tasks one by one from
/// a shared queue).
const PREFETCH_WINDOW: Duration = Duration::from_millis(5);
/// At most this many tasks are held by one worker.
const PREFETCH_TASKS: usize = 256;

/// The outcomes of one task: `count` items from index `start`.
pub(crate) enum Chunk {
    /// Outcome records, read from `pos` (items before it were taken).
    Records { buf: Vec<u8>, pos: usize },
    /// Every item failed the same way (a dead worker).
    Failed(Error),
}

impl Chunk {
    /// Takes the next item of the chunk.
    pub(crate) fn take(&mut self) -> ItemResult {
        match self {
            Chunk::Records { buf, pos } => match records::read(buf, *pos) {
                Some((tag, bytes, next)) => {
                    *pos = next;
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
    /// Its callbacks are running (on a copy of its outcomes, without the
    /// lock): waiters see it as not settled until they have run, as CPython's
    /// `get()` returns after the callback.
    in_callbacks: bool,
    /// Its AsyncResult is gone: forget the job once complete.
    orphaned: bool,
    /// An imap's: its consumer takes outcomes one by one, so it is woken for
    /// each (others only when the job completes).
    lazy: bool,
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

    /// Takes the outcomes of the task that starts at item `start`, or of
    /// any task for `None`: `(start, count, outcomes)`.
    pub(crate) fn take_chunk(&mut self, start: Option<usize>) -> Option<(usize, usize, Chunk)> {
        match start {
            Some(s) => self
                .chunks
                .remove(&s)
                .map(|(count, chunk)| (s, count, chunk)),
            None => self
                .chunks
                .pop_first()
                .map(|(s, (count, chunk))| (s, count, chunk)),
        }
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
    /// The scheduler's wake-up (an eventfd, see [`crate::sys::wake_fd`]):
    /// written by anyone, read by the scheduler, with no lock.
    wake: crate::sys::Wake,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the scheduler.
    pub(crate) fn wake(&self) {
        let _ = self.wake.get().write(&1u64.to_ne_bytes());
    }
}

pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    scheduler: Mutex<Option<JoinHandle<()>>>,
    pub(crate) processes: usize,
}

/// What the scheduler needs to make workers.
pub(crate) struct Setup {
    pub(crate) processes: usize,
    pub(crate) spawner: Spawner,
    pub(crate) initializer: Option<(ErasedFunction, mp_proc::plumbing::Packed)>,
    pub(crate) maxtasks: Option<usize>,
    /// The workers are threads of this process (no start method).
    pub(crate) threads: bool,
}

impl Core {
    pub(crate) fn start(setup: Setup) -> Result<Core> {
        let wake = crate::sys::wake_fd().map_err(|source| mp_proc::Error::Os {
            op: "eventfd",
            source,
        })?;
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
            wake,
        });
        let processes = setup.processes;
        let mut scheduler = Scheduler {
            shared: shared.clone(),
            setup,
            workers: Vec::new(),
        };
        // Start the first workers here, so that a pool that cannot start any
        // is an error of its constructor.
        if let Err(e) = scheduler.fill() {
            scheduler.end(Error::Terminated);
            return Err(e);
        }
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
        st.jobs.insert(id, Job::new(expected));
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
                Err(e) => records::push(
                    &mut t.items,
                    records::ENCODING,
                    e.encoding_message().as_bytes(),
                ),
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

    /// Adds a callback, run once the job is complete (now, on this thread,
    /// if it is).
    pub(crate) fn on_complete(&self, job: JobId, callback: Callback) {
        let mut st = self.shared.lock();
        let Some(j) = st.jobs.get_mut(&job) else {
            return;
        };
        j.callbacks.push(callback);
        let due = completed(&mut st, job);
        drop(st);
        run_callbacks(due, &self.shared);
    }

    /// Takes a complete job out of the pool (its handle's `get`).
    pub(crate) fn take_job(&self, job: JobId) -> Option<Job> {
        self.shared.lock().jobs.remove(&job)
    }

    /// Forgets an imap's job whose iterator was dropped: its tasks not handed
    /// out yet are dropped, and outcomes still to come are ignored.
    pub(crate) fn discard(&self, job: JobId) {
        let mut st = self.shared.lock();
        st.jobs.remove(&job);
        st.pending.retain(|t| t.job != job);
    }

    /// Forgets a job whose handle is gone (now if complete, else when it is).
    pub(crate) fn forget(&self, job: JobId) {
        let mut st = self.shared.lock();
        if let Some(j) = st.jobs.get_mut(&job) {
            if j.settled() && j.callbacks.is_empty() {
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

/// Records a task's outcomes; returns the job if its callbacks are now due.
fn record(st: &mut State, job: JobId, start: usize, count: usize, chunk: Chunk) -> Option<JobId> {
    let j = st.jobs.get_mut(&job)?;
    j.chunks.insert(start, (count, chunk));
    j.received += count;
    completed(st, job)
}

/// A complete job with callbacks is marked as running them and returned
/// (the caller runs them with [`run_callbacks`] once it let go of the lock);
/// a complete job nobody waits for is forgotten.
fn completed(st: &mut State, job: JobId) -> Option<JobId> {
    let j = st.jobs.get_mut(&job)?;
    if !j.complete() || j.in_callbacks {
        return None;
    }
    if !j.callbacks.is_empty() {
        j.in_callbacks = true;
        return Some(job);
    }
    if j.orphaned {
        st.jobs.remove(&job);
    }
    None
}

/// Runs a job's callbacks (on the scheduler's thread, as CPython's result
/// handler does), without the lock, so that they may use the pool; then
/// lets its waiters see it settled.
fn run_callbacks(job: Option<JobId>, shared: &Shared) {
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
            if j.orphaned {
                st.jobs.remove(&id);
            }
            drop(st);
            shared.changed.notify_all();
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
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&job)));
        }
        if let Some(j) = shared.lock().jobs.get_mut(&id) {
            j.chunks = job.chunks;
        }
    }
}

struct Worker {
    process: Box<dyn ProcessLike>,
    conn: Connection,
    name: String,
    pid: u32,
    /// The tasks it was given and has not reported, in the order it runs them.
    in_flight: VecDeque<Task>,
    /// Which task it is running (see [`WorkerArgs::progress`]).
    progress: mp_proc::RawValue<u64>,
    /// What one item costs it, from its last report (`None`: not known yet,
    /// it is given one task at a time).
    item_cost: Option<Duration>,
    /// Since when it has been working on what it holds now.
    busy_since: Instant,
    /// Frames written for it that its connection has not taken yet, and how
    /// many bytes of them went.
    outbox: Vec<u8>,
    sent: usize,
    /// How many more tasks it may be given (`maxtasksperchild`): it retires
    /// after running that many, so it is never handed one it would not run.
    left: Option<usize>,
}

impl Worker {
    /// Writes what its connection takes now of the outbox.
    fn flush(&mut self) {
        while self.sent < self.outbox.len() {
            match self.conn.write_nonblocking(&self.outbox[self.sent..]) {
                Ok(0) => return,
                Ok(n) => self.sent += n,
                // A dead worker: its sentinel says so.
                Err(_) => return,
            }
        }
        self.outbox.clear();
        self.sent = 0;
    }

    /// Whether it should be given another task, holding `tasks` tasks of
    /// `items` items.
    fn wants(&self, tasks: usize, items: usize) -> bool {
        if self.left == Some(0) || tasks >= PREFETCH_TASKS {
            return false;
        }
        if tasks == 0 {
            return true;
        }
        match self.item_cost {
            Some(cost) => {
                cost.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX)) < PREFETCH_WINDOW
            }
            None => false,
        }
    }
}

struct Scheduler {
    shared: Arc<Shared>,
    setup: Setup,
    workers: Vec<Worker>,
}

impl Scheduler {
    /// Starts workers until there are `processes` of them.
    fn fill(&mut self) -> Result<()> {
        while self.workers.len() < self.setup.processes {
            let (ours, theirs) = mp_proc::pipe(true)?;
            let progress = mp_proc::RawValue::new(0u64)?;
            let args = WorkerArgs {
                conn: theirs,
                initializer: self.setup.initializer.clone(),
                maxtasks: self.setup.maxtasks,
                progress: progress.clone(),
                thread: self.setup.threads,
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
                progress,
                item_cost: None,
                busy_since: Instant::now(),
                outbox: Vec::new(),
                sent: 0,
                left: self.setup.maxtasks,
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
                // One task to each worker that wants more, round after round,
                // so that a short queue is spread over the workers.
                let mut held: Vec<(usize, usize, Vec<Task>)> = self
                    .workers
                    .iter()
                    .map(|w| {
                        let items = w.in_flight.iter().map(|t| t.count).sum();
                        (w.in_flight.len(), items, Vec::new())
                    })
                    .collect();
                let mut more = true;
                while more && !st.pending.is_empty() {
                    more = false;
                    for (w, (tasks, items, batch)) in self.workers.iter_mut().zip(&mut held) {
                        if !w.wants(*tasks, *items) {
                            continue;
                        }
                        let Some(t) = st.pending.pop_front() else {
                            break;
                        };
                        if let Some(left) = &mut w.left {
                            *left -= 1;
                        }
                        *tasks += 1;
                        *items += t.count;
                        batch.push(t);
                        more = true;
                    }
                }
                for (i, (_, _, batch)) in held.into_iter().enumerate() {
                    if !batch.is_empty() {
                        sends.push((i, batch));
                    }
                }
            }
            drop(st);

            // Hand out the tasks, one message per worker (a worker that died
            // is seen below).
            for (i, batch) in sends {
                let w = &mut self.workers[i];
                let first = w.in_flight.len();
                if first == 0 {
                    w.busy_since = Instant::now();
                }
                w.in_flight.extend(batch);
                let msgs = w
                    .in_flight
                    .range(first..)
                    .map(|t| TaskRef {
                        id: t.id,
                        func: t.func,
                        items: &t.items,
                    })
                    .collect();
                // Never a blocking write: a worker may itself be blocked
                // writing its outcomes to us, and only we read them. What
                // the worker's buffer does not take now waits in its outbox
                // until poll says it is writable.
                let _ = Connection::encode_frame(&ToWorkerRef::Tasks(msgs), &mut w.outbox);
                w.flush();
            }

            // Wait for outcomes, a dead worker, or a wake-up. A worker's end
            // shows on its sentinel even if something else (a process its
            // task started) still holds its end of the connection.
            let n = self.workers.len();
            let mut fds = vec![self.shared.wake.get().as_fd()];
            fds.extend(self.workers.iter().map(|w| w.conn.as_fd()));
            let mut sentinel_of = Vec::new();
            for (i, w) in self.workers.iter().enumerate() {
                if let Some(fd) = w.process.sentinel() {
                    fds.push(fd);
                    sentinel_of.push(i);
                }
            }
            // Workers with frames waiting in their outbox: wait for room too.
            let pending: Vec<usize> = (0..n)
                .filter(|&i| self.workers[i].sent < self.workers[i].outbox.len())
                .collect();
            let out: Vec<_> = pending
                .iter()
                .map(|&i| self.workers[i].conn.as_fd())
                .collect();
            let (ready, writable) = spin_then_wait(&fds, &out, !self.setup.threads);
            drop((out, fds));
            for k in writable {
                self.workers[pending[k]].flush();
            }
            if ready.contains(&0) {
                let mut buf = [0u8; 256];
                let _ = self.shared.wake.get().read(&mut buf);
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
        let now = Instant::now();
        let items: usize = done
            .iter()
            .filter_map(|d| w.in_flight.iter().find(|t| t.id == d.id))
            .map(|t| t.count)
            .sum();
        if items > 0 {
            w.item_cost = Some((now - w.busy_since) / u32::try_from(items).unwrap_or(u32::MAX));
            w.busy_since = now;
        }
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
            };
            notify |= st.jobs.get(&t.job).is_some_and(|j| j.lazy);
            callbacks.extend(record(&mut st, t.job, t.start, t.count, chunk));
            notify |= st.jobs.get(&t.job).is_none_or(|j| j.complete());
        }
        for id in returned.into_iter().rev() {
            if let Some(pos) = w.in_flight.iter().position(|t| t.id == id)
                && let Some(t) = w.in_flight.remove(pos)
            {
                st.pending.push_front(t);
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
        self.abort_all(st, why);
    }

    /// Drops what is queued and fails every unfinished job with `why`; runs
    /// the callbacks now due (without the lock) and wakes the waiters.
    fn abort_all(&self, mut st: MutexGuard<'_, State>, why: Error) {
        st.pending.clear();
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

    /// Worker `i` is gone: reap it, fail the task it was running, and queue
    /// the others it held again (the ones it had not started, and the few it
    /// finished in its last moments without reporting them).
    fn bury(&mut self, i: usize) {
        let mut w = self.workers.remove(i);
        let exitcode = exit_code(w.process.as_mut());
        mp_logging::get_logger().debug(format_args!("cleaning up worker {}", w.pid));
        if w.in_flight.is_empty() {
            return; // retired (maxtasksperchild), or stopped
        }
        if self.shared.lock().broken.is_some() {
            return; // every job has failed already: nothing to run again
        }
        // The running task; if none of those held is (it died between two),
        // the first is blamed, so that every death fails a task and a worker
        // that cannot run anything cannot make the pool spin.
        let running = w.progress.get();
        let culprit = w
            .in_flight
            .iter()
            .position(|t| t.id + 1 == running)
            .unwrap_or(0);
        let Some(task) = w.in_flight.remove(culprit) else {
            return;
        };
        let why = Error::WorkerDied {
            worker: w.name.clone(),
            pid: w.pid,
            exitcode,
        };
        let mut st = self.shared.lock();
        while let Some(t) = w.in_flight.pop_back() {
            st.pending.push_front(t);
        }
        let callbacks = record(
            &mut st,
            task.job,
            task.start,
            task.count,
            Chunk::Failed(why),
        );
        drop(st);
        run_callbacks(callbacks, &self.shared);
        self.shared.changed.notify_all();
    }

    /// Takes the wake-up out of the SIGINT handler's table (the pool ends).
    fn release_slot(&mut self) {
        crate::sys::withdraw(&self.shared.wake);
    }

    /// `close()` and all work done: stop the workers and end.
    fn stop(&mut self) {
        self.release_slot();
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
        self.release_slot();
        let log = mp_logging::get_logger();
        log.debug("finalizing pool");
        log.debug("terminating workers");
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
        st.finished = true;
        self.abort_all(st, why);
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

/// How long the scheduler polls before it sleeps: on these machines a sleep
/// and a wake-up across CPUs cost ~20 µs per hop (mp-proc's connections spin
/// as long). (A waiting caller does not spin: it would take CPU from the
/// workers; measured, a thread pool's `map` lost a quarter of its speed. A
/// pool of threads does not spin at all, neither its scheduler nor its
/// workers: its callers run tasks themselves while they wait (mp-dummy), and
/// beside a polling thread they ran at half speed in a third of the calls.)
const SPIN: Duration = Duration::from_micros(30);

/// Whether this process may run on several CPUs (spinning on one CPU only
/// delays the peer it waits for).
fn several_cpus() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SEVERAL.get_or_init(|| mp_proc::cpu_count() > 1)
}

/// The scheduler's wait: zero-timeout polls (yielding between them) for
/// [`SPIN`], then a blocking one.
fn spin_then_wait(
    fds: &[std::os::fd::BorrowedFd<'_>],
    out: &[std::os::fd::BorrowedFd<'_>],
    spin: bool,
) -> (Vec<usize>, Vec<usize>) {
    if spin && several_cpus() {
        let end = Instant::now() + SPIN;
        loop {
            let (r, w) =
                mp_proc::plumbing::wait_fds_rw(fds, out, Some(Duration::ZERO)).unwrap_or_default();
            if !r.is_empty() || !w.is_empty() {
                return (r, w);
            }
            if Instant::now() >= end {
                break;
            }
            std::thread::yield_now();
        }
    }
    mp_proc::plumbing::wait_fds_rw(fds, out, None).unwrap_or_default()
}
