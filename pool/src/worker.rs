//! The worker: what a pool's worker process runs, and the messages it
//! exchanges with its pool over its own connection; and running a task's
//! code, which worker threads do too.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use mp_proc::Connection;
use mp_proc::plumbing::{BoundFunction, ErasedFunction};
use serde::{Deserialize, Serialize};

use crate::codec as records;

/// One task: a function and the records of its items' arguments.
#[derive(Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) id: u64,
    pub(crate) func: ErasedFunction,
    #[serde(with = "serde_bytes")]
    pub(crate) items: Vec<u8>,
}

/// The records of a task's outcomes, one per item.
#[derive(Serialize, Deserialize)]
pub(crate) struct DoneMsg {
    pub(crate) id: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) outcomes: Vec<u8>,
}

/// From the pool to one worker.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run these tasks, in order.
    Tasks(Vec<TaskMsg>),
    /// Finish: exit after the tasks sent before.
    Stop,
}

/// [`TaskMsg`] as the pool sends it, borrowing the items it keeps (to run
/// them elsewhere if this worker dies first). Encodes exactly as `TaskMsg`.
#[derive(Serialize)]
pub(crate) struct TaskRef<'a> {
    pub(crate) id: u64,
    pub(crate) func: ErasedFunction,
    #[serde(with = "serde_bytes")]
    pub(crate) items: &'a [u8],
}

/// [`ToWorker::Tasks`] as the pool sends it (the same variant index, so it
/// encodes exactly as `ToWorker`).
#[derive(Serialize)]
pub(crate) enum ToWorkerRef<'a> {
    Tasks(Vec<TaskRef<'a>>),
}

/// From one worker to its pool.
#[derive(Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// Tasks done, and tasks given back unrun (the worker reached
    /// `maxtasksperchild` and exits).
    Done {
        done: Vec<DoneMsg>,
        returned: Vec<u64>,
    },
    /// The initializer panicked; the worker exits.
    InitFailed(String),
    /// The worker exits after the tasks it reported (its memory is over
    /// `max_memory_per_child`): it runs nothing more, and tasks it holds
    /// are not its to fail.
    Retiring,
    /// It is about to call item `item` of task `task` (sent only by a
    /// worker with no shared [`Progress`](crate::progress::Progress) record,
    /// and only when the pool has a task timeout).
    Began { task: u64, item: usize },
}

/// A worker's arguments (a `Process` target takes one value).
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection,
    pub(crate) initializer: Option<(ErasedFunction, mp_proc::plumbing::Packed)>,
    pub(crate) maxtasks: Option<usize>,
    /// The task and item the worker is running, written before each call:
    /// if the worker dies, the pool knows which item was running, which
    /// had finished and which had not started. `None` for a worker that
    /// shares no memory with its pool (on another host): it then reports
    /// its calls over its connection when `timed`, and nothing otherwise.
    pub(crate) progress: Option<crate::progress::Progress>,
    /// Whether calls are timed (the pool has a task timeout).
    pub(crate) timed: bool,
    /// Retire after a task that leaves the worker's resident memory above
    /// this many bytes (`max_memory_per_child`).
    pub(crate) max_memory: Option<u64>,
}

/// A worker that finishes tasks quickly reports them together, at the end of
/// each batch of tasks; once this long has passed since its last report, it
/// reports what it has done before it starts the next task.
const REPORT_EVERY: Duration = Duration::from_millis(1);

/// A request to end the worker (`mp_proc::exit` inside a task), carried out
/// once the worker has reported what it finished.
pub(crate) type ExitRequest = Box<dyn Any + Send>;

/// Calls `func` on `args`, appending the outcome record to `out`. A panic
/// is caught; `mp_proc::exit` inside the function comes back as `Err`, to end
/// the worker as it would any process.
fn call(func: &BoundFunction, args: &[u8], out: &mut Vec<u8>) -> Result<(), ExitRequest> {
    let at = records::begin(out);
    match catch_unwind(AssertUnwindSafe(|| func.call_into(args, out))) {
        Ok(Ok(())) => records::finish(out, at, records::VALUE),
        Ok(Err(e)) => {
            out.truncate(at);
            records::push(out, records::ENCODING, e.to_string().as_bytes());
        }
        Err(payload) if mp_proc::plumbing::is_exit_request(&*payload) => return Err(payload),
        Err(payload) => {
            out.truncate(at);
            records::push(
                out,
                records::PANICKED,
                mp_proc::plumbing::panic_message(&*payload).as_bytes(),
            );
        }
    }
    Ok(())
}

/// Functions found in this process, by their erased form (a pool runs few).
#[derive(Default)]
pub(crate) struct Bound(Vec<(ErasedFunction, BoundFunction)>);

impl Bound {
    fn get(&mut self, f: &ErasedFunction) -> mp_proc::Result<BoundFunction> {
        if let Some((_, b)) = self.0.iter().find(|(e, _)| e == f) {
            return Ok(*b);
        }
        let b = f.bind()?;
        self.0.push((*f, b));
        Ok(b)
    }
}

/// Runs a task's items: the records of their outcomes.
pub(crate) fn run_task(
    bound: &mut Bound,
    func: &ErasedFunction,
    items: &[u8],
) -> Result<Vec<u8>, ExitRequest> {
    run_items(bound, func, items, |_| {})
}

/// As [`run_task`], telling `enter` the index of each item before its call.
fn run_items(
    bound: &mut Bound,
    func: &ErasedFunction,
    items: &[u8],
    mut enter: impl FnMut(usize),
) -> Result<Vec<u8>, ExitRequest> {
    let mut out = Vec::with_capacity(items.len() + 64);
    let func = bound.get(func);
    for (i, (tag, bytes)) in records::iter(items).enumerate() {
        match (&func, tag) {
            (Ok(f), records::VALUE) => {
                enter(i);
                call(f, bytes, &mut out)?
            }
            (Err(e), records::VALUE) => {
                records::push(&mut out, records::ENCODING, e.to_string().as_bytes())
            }
            (_, tag) => records::push(&mut out, tag, bytes),
        }
    }
    Ok(out)
}

thread_local! {
    /// This thread is running tasks: a panic is the task's outcome, sent
    /// to the caller with its message, and is not printed here (CPython's
    /// workers print nothing for a task's exception either).
    static IN_TASKS: Cell<bool> = const { Cell::new(false) };
}

/// Silences the panic hook for panics of tasks (see [`IN_TASKS`]); other
/// panics (an initializer's) are printed as before.
pub(crate) fn quiet_task_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TASKS.with(Cell::get) {
                previous(info)
            }
        }));
    });
}

/// Marks this thread as running tasks while it lives (then restores what
/// it was).
pub(crate) struct InTasks(bool);

impl InTasks {
    pub(crate) fn enter() -> InTasks {
        InTasks(IN_TASKS.with(|t| t.replace(true)))
    }
}

impl Drop for InTasks {
    fn drop(&mut self) {
        IN_TASKS.with(|t| t.set(self.0));
    }
}

/// Runs a worker's initializer (its arguments may hold handles: a Value, a
/// Queue, whose descriptors came with the packed value); the message of its
/// panic or of why it could not run. `mp_proc::exit` in it ends the worker,
/// as asked.
pub(crate) fn initialize(
    bound: &mut Bound,
    (init, init_args): &(ErasedFunction, mp_proc::plumbing::Packed),
) -> Result<(), String> {
    let mut out = Vec::new();
    match bound.get(init) {
        Ok(f) => match init_args.with_handles(|bytes| call(&f, bytes, &mut out)) {
            Ok(Ok(())) => {}
            Ok(Err(exit)) => resume_unwind(exit),
            Err(e) => records::push(&mut out, records::ENCODING, e.to_string().as_bytes()),
        },
        Err(e) => records::push(&mut out, records::ENCODING, e.to_string().as_bytes()),
    }
    match records::read(&out, 0) {
        Some((records::PANICKED | records::ENCODING, message, _)) => {
            Err(String::from_utf8_lossy(message).into_owned())
        }
        _ => Ok(()),
    }
}

/// The worker's loop: Python's `multiprocessing.pool.worker`.
pub(crate) fn worker_main(args: WorkerArgs) {
    // Ctrl-C goes to the whole process group: the pool handles it, its
    // worker processes do not (no storm of tracebacks).
    crate::sys::ignore_sigint();
    quiet_task_panics();
    let log = mp_logging::get_logger();
    let conn = args.conn;
    let mut bound = Bound::default();
    if let Some(init) = &args.initializer
        && let Err(message) = initialize(&mut bound, init)
    {
        let _ = conn.send(&FromWorker::InitFailed(message));
        return;
    }
    let mut completed = 0usize;
    let mut position = Reporter::new(args.progress, args.timed);
    // Opened once, read with one pread after each task (only with a limit).
    let statm = args.max_memory.and_then(|_| crate::sys::Statm::open());
    let mut over_memory = false;
    'serve: loop {
        match conn.recv::<ToWorker>() {
            Ok(ToWorker::Tasks(tasks)) => {
                let mut done = Vec::with_capacity(tasks.len());
                let mut returned = Vec::new();
                let mut reported = Instant::now();
                for (i, task) in tasks.iter().enumerate() {
                    if over_memory || args.maxtasks.is_some_and(|max| completed >= max) {
                        returned.push(task.id);
                        continue;
                    }
                    let in_tasks = InTasks::enter();
                    let outcome = run_items(&mut bound, &task.func, &task.items, |item| {
                        position.enter(&conn, task.id, item)
                    });
                    drop(in_tasks);
                    match outcome {
                        Ok(outcomes) => done.push(DoneMsg {
                            id: task.id,
                            outcomes,
                        }),
                        Err(exit) => {
                            // Report what is done, then end as asked.
                            let _ = conn.send(&FromWorker::Done {
                                done,
                                returned: Vec::new(),
                            });
                            log.debug(format_args!("worker exiting after {completed} tasks"));
                            resume_unwind(exit);
                        }
                    }
                    completed += 1;
                    if let (Some(limit), Some(statm)) = (args.max_memory, &statm)
                        && statm.resident().is_some_and(|rss| rss > limit)
                    {
                        log.debug(format_args!(
                            "worker's resident memory is over {limit} bytes -- retiring"
                        ));
                        over_memory = true;
                    }
                    if i + 1 < tasks.len() && reported.elapsed() >= REPORT_EVERY {
                        let done = std::mem::take(&mut done);
                        if conn
                            .send(&FromWorker::Done {
                                done,
                                returned: Vec::new(),
                            })
                            .is_err()
                        {
                            log.debug("worker got EOFError or OSError -- exiting");
                            break 'serve;
                        }
                        reported = Instant::now();
                    }
                }
                if (!done.is_empty() || !returned.is_empty())
                    && conn.send(&FromWorker::Done { done, returned }).is_err()
                {
                    log.debug("worker got EOFError or OSError -- exiting");
                    break 'serve;
                }
                if over_memory {
                    // Tasks sent after these are given back by the pool.
                    let _ = conn.send(&FromWorker::Retiring);
                    break 'serve;
                }
                if args.maxtasks.is_some_and(|max| completed >= max) {
                    break 'serve;
                }
            }
            Ok(ToWorker::Stop) => {
                log.debug("worker got sentinel -- exiting");
                break;
            }
            Err(_) => {
                log.debug("worker got EOFError or OSError -- exiting");
                break;
            }
        }
    }
    log.debug(format_args!("worker exiting after {completed} tasks"));
}

/// How a worker tells its pool where it is, before each call.
pub(crate) enum Reporter {
    /// In the shared record (a worker of this machine).
    Shared(crate::progress::Writer),
    /// A [`FromWorker::Began`] over its connection (no shared record, and
    /// the pool times calls).
    Sends,
    /// Nothing (no shared record, no task timeout): the pool learns only
    /// which tasks are done.
    Silent,
}

impl Reporter {
    /// The shared record if there is one, else messages when `timed`.
    pub(crate) fn new(progress: Option<crate::progress::Progress>, timed: bool) -> Reporter {
        match progress {
            Some(p) => Reporter::Shared(crate::progress::Writer::new(p, timed)),
            None if timed => Reporter::Sends,
            None => Reporter::Silent,
        }
    }

    /// The worker is about to call item `item` of task `id`. A message that
    /// cannot be sent is not an error here: the pool is gone, and the
    /// worker's next report fails and ends it.
    pub(crate) fn enter(&mut self, conn: &Connection, id: u64, item: usize) {
        match self {
            Reporter::Shared(w) => w.enter(id, item),
            Reporter::Sends => {
                let _ = conn.send(&FromWorker::Began { task: id, item });
            }
            Reporter::Silent => {}
        }
    }
}
