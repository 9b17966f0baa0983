//! `Process` on threads (`multiprocessing.dummy.Process`, a named thread),
//! `current_process` and `active_children`.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mp_proc::plumbing::deadline_after;
use mp_proc::{Error, ProcessLike, Result};

use crate::sync::{lock, wait_until};

/// How a thread ended: its exit code once it has.
struct Ending {
    code: Mutex<Option<i32>>,
    done: Condvar,
}

/// The threads started and not yet ended, for [`active_children`].
static LIVE: Mutex<Vec<(String, bool, Arc<Ending>)>> = Mutex::new(Vec::new());

static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The name, daemon flag and end of this thread, when it is a dummy
    /// `Process`.
    static CURRENT: RefCell<Option<(String, bool, Arc<Ending>)>> = const { RefCell::new(None) };
}

/// A unit of work on a thread, with `multiprocessing.Process`'s methods:
/// Python's `multiprocessing.dummy.Process`. Its target may be any closure,
/// and its arguments need not be serializable.
///
/// A panicking target ends the thread with exit code 1, as a process would
/// report it, and its message is logged. Threads cannot be killed:
/// [`terminate`](Self::terminate) and [`kill`](Self::kill) are errors.
///
/// ```
/// use std::rc::Rc;
/// let shared = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let s = shared.clone();
/// let mut p = mp_dummy::Process::new(move |n: u32| { s.fetch_add(n, std::sync::atomic::Ordering::SeqCst); }, 5);
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// assert_eq!(shared.load(std::sync::atomic::Ordering::SeqCst), 5);
/// assert!(p.terminate().is_err());
/// # Ok::<(), mp_proc::Error>(())
/// ```
///
/// A target that captures data which is not `Send` does not compile:
///
/// ```compile_fail
/// let rc = std::rc::Rc::new(1);
/// let p = mp_dummy::Process::new(move |_: ()| drop(rc), ());
/// ```
pub struct Process {
    name: String,
    daemon: bool,
    target: Option<Box<dyn FnOnce() + Send>>,
    ending: Arc<Ending>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

fn cannot(op: &'static str) -> Error {
    Error::NotImplemented {
        what: op,
        reason: "a thread cannot be killed, terminated or interrupted: ask it to stop (an Event, a message), \
                 as with Python's threads",
    }
}

impl Process {
    /// A thread that will run `target(args)`, named `Thread-N`.
    pub fn new<A: Send + 'static>(target: impl FnOnce(A) + Send + 'static, args: A) -> Process {
        let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        Process {
            name: format!("Thread-{n}"),
            daemon: false,
            target: Some(Box::new(move || target(args))),
            ending: Arc::new(Ending {
                code: Mutex::new(None),
                done: Condvar::new(),
            }),
            thread: None,
        }
    }

    /// Names it (before `start`).
    pub fn name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Marks it a daemon (before `start`): nothing waits for it.
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// Renames it (before `start`; the thread carries the new name).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// As [`daemon`](Self::daemon), on a thread being set up.
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }

    /// Whether it is (or will be) a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The id of the process it runs in, once started (threads share their
    /// process's id, as [`ThreadInfo::pid`] says).
    ///
    /// ```
    /// let mut p = mp_dummy::Process::new(|_: ()| {}, ());
    /// p.set_name("worker");
    /// p.set_daemon(true);
    /// assert_eq!((p.get_name(), p.is_daemon(), p.pid()), ("worker", true, None));
    /// p.start()?;
    /// assert_eq!(p.pid(), Some(std::process::id()));
    /// p.join()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.started().then(std::process::id)
    }

    /// Starts the thread.
    pub fn start(&mut self) -> Result<()> {
        let Some(target) = self.target.take() else {
            return Err(Error::AlreadyStarted);
        };
        let (name, daemon, ending) = (self.name.clone(), self.daemon, self.ending.clone());
        lock(&LIVE).push((name.clone(), daemon, ending.clone()));
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run(name, daemon, target, ending));
        match thread {
            Ok(t) => {
                self.thread = Some(t);
                Ok(())
            }
            Err(e) => {
                // It never ran: ended, as a failed target (and not alive).
                finish(&self.ending, 1);
                Err(Error::Os {
                    op: "spawn a thread",
                    source: e,
                })
            }
        }
    }

    /// Waits for it to end; returns its exit code (0, or 1 after a panic).
    pub fn join(&mut self) -> Result<i32> {
        Ok(self.join_until(None)?.unwrap_or(1))
    }

    /// Waits at most `timeout`; `None` if it still runs.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.join_until(deadline_after(timeout))
    }

    fn join_until(&mut self, until: Option<std::time::Instant>) -> Result<Option<i32>> {
        if !self.started() {
            return Err(Error::NotStarted {
                name: self.name.clone(),
            });
        }
        let g = lock(&self.ending.code);
        let (g, ended) = wait_until(&self.ending.done, g, until, |c| c.is_some());
        let code = *g;
        drop(g);
        if ended && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(code)
    }

    /// Whether `start` took its target.
    fn started(&self) -> bool {
        self.target.is_none()
    }

    /// Whether it has started and not ended.
    pub fn is_alive(&self) -> bool {
        self.started() && self.exitcode().is_none()
    }

    /// Its name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Its exit code, once ended.
    pub fn exitcode(&self) -> Option<i32> {
        *lock(&self.ending.code)
    }

    /// An error: threads cannot be terminated.
    pub fn terminate(&self) -> Result<()> {
        Err(cannot("terminate"))
    }

    /// An error: threads cannot be interrupted (Python 3.14's
    /// `interrupt()` sends `SIGINT` to a process).
    ///
    /// The same through [`ProcessLike::interrupt`], for code generic over
    /// a [`Context`](mp_proc::Context):
    ///
    /// ```
    /// use mp_proc::{Context, Error, ProcessLike};
    ///
    /// let mut t = mp_dummy::Process::new(|_: ()| {}, ());
    /// t.start()?;
    /// assert!(t.interrupt().is_err());
    /// t.join()?;
    ///
    /// let mut t = mp_dummy::ThreadContext::new().process(|_: ()| {}, ());
    /// ProcessLike::start(&mut t)?;
    /// assert!(matches!(
    ///     ProcessLike::interrupt(&t),
    ///     Err(Error::NotImplemented { what: "interrupt", .. })
    /// ));
    /// ProcessLike::join(&mut t)?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn interrupt(&self) -> Result<()> {
        Err(cannot("interrupt"))
    }

    /// An error: threads cannot be killed.
    pub fn kill(&self) -> Result<()> {
        Err(cannot("kill"))
    }
}

/// The thread's body: runs the target, records the exit code, logs a panic.
fn run(name: String, daemon: bool, target: Box<dyn FnOnce() + Send>, ending: Arc<Ending>) {
    CURRENT.with(|c| *c.borrow_mut() = Some((name.clone(), daemon, ending.clone())));
    let code = match catch_unwind(AssertUnwindSafe(target)) {
        Ok(()) => 0,
        Err(payload) => {
            mp_logging::get_logger().error(format_args!(
                "thread {name} panicked: {}",
                mp_proc::plumbing::panic_message(&*payload)
            ));
            1
        }
    };
    finish(&ending, code);
}

/// Records the exit code of a thread that ended (or never started).
fn finish(ending: &Arc<Ending>, code: i32) {
    lock(&LIVE).retain(|(_, _, e)| !Arc::ptr_eq(e, ending));
    *lock(&ending.code) = Some(code);
    ending.done.notify_all();
}

impl ProcessLike for Process {
    fn start(&mut self) -> Result<()> {
        Process::start(self)
    }
    fn join_within(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        match timeout {
            None => Process::join(self).map(Some),
            Some(t) => Process::join_timeout(self, t),
        }
    }
    fn is_alive(&mut self) -> bool {
        Process::is_alive(self)
    }
    fn get_name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }
    fn terminate(&self) -> Result<()> {
        Process::terminate(self)
    }
    fn interrupt(&self) -> Result<()> {
        Process::interrupt(self)
    }
    fn kill(&self) -> Result<()> {
        Process::kill(self)
    }
    fn exitcode(&self) -> Option<i32> {
        Process::exitcode(self)
    }
    fn pid(&self) -> Option<u32> {
        self.started().then(std::process::id)
    }
}

/// A thread, as [`current_process`] and [`active_children`] describe it:
/// the twin of `mp_proc::ProcessInfo`, watched the same way. An
/// [`active_children`] entry is alive until its thread ends and can be
/// joined; [`current_process`] is always alive and joining it is an error
/// (Python's `RuntimeError: cannot join current thread`).
///
/// ```
/// let me = mp_dummy::current_process();
/// assert!(me.is_alive());
/// assert!(me.join().is_err());
///
/// // Nor can a thread join its own entry of `active_children()`.
/// let mut t = mp_dummy::Process::new(
///     |_: ()| {
///         let name = mp_dummy::current_process().name().to_owned();
///         let children = mp_dummy::active_children();
///         let me = children.iter().find(|c| c.name() == name).unwrap();
///         assert!(me.is_alive());
///         assert!(me.join().is_err());
///     },
///     (),
/// );
/// t.start()?;
/// assert_eq!(t.join()?, 0);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ThreadInfo {
    name: String,
    daemon: bool,
    /// The end of a started dummy `Process` (`None`: the calling thread).
    ending: Option<Arc<Ending>>,
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ending").finish_non_exhaustive()
    }
}

/// Two infos are equal when they name the same thread the same way.
impl PartialEq for ThreadInfo {
    fn eq(&self, other: &ThreadInfo) -> bool {
        (&self.name, self.daemon) == (&other.name, other.daemon)
    }
}

impl Eq for ThreadInfo {}

impl ThreadInfo {
    /// Its name (`MainThread` for a thread that is not a dummy `Process`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process's id (threads share it).
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Whether it is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Whether the thread still runs: always true for [`current_process`].
    pub fn is_alive(&self) -> bool {
        match &self.ending {
            None => true,
            Some(ending) => lock(&ending.code).is_none(),
        }
    }

    /// Waits at most `timeout` for the thread to end: `true` once it has.
    /// [`Error::Invalid`] on [`current_process`] (a thread cannot wait for
    /// its own end).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let mut t = mp_dummy::Process::new(move |_: ()| drop(rx.recv()), ());
    /// t.start()?;
    /// let info = mp_dummy::active_children()
    ///     .into_iter()
    ///     .find(|c| c.name() == t.get_name())
    ///     .unwrap();
    /// assert!(!info.join_timeout(Duration::ZERO)?);
    /// drop(tx);
    /// info.join()?;
    /// assert!(!info.is_alive());
    /// assert_eq!(t.join()?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.ended(deadline_after(timeout))
    }

    /// Waits for the thread to end; see
    /// [`join_timeout`](ThreadInfo::join_timeout) for the error.
    pub fn join(&self) -> Result<()> {
        self.ended(None).map(|_| ())
    }

    fn ended(&self, until: Option<std::time::Instant>) -> Result<bool> {
        let me = CURRENT.with(|c| c.borrow().as_ref().map(|(_, _, e)| e.clone()));
        let ending = match &self.ending {
            Some(ending) if !me.is_some_and(|me| Arc::ptr_eq(&me, ending)) => ending,
            _ => {
                return Err(Error::Invalid {
                    what: "join the current thread",
                    reason: "a thread cannot wait for its own end (only another can be joined)"
                        .to_owned(),
                });
            }
        };
        let g = lock(&ending.code);
        let (g, ended) = wait_until(&ending.done, g, until, |c| c.is_some());
        drop(g);
        Ok(ended)
    }
}

/// The calling thread (`multiprocessing.dummy.current_process()`, which is
/// `threading.current_thread()`).
///
/// ```
/// assert!(!mp_dummy::current_process().name().is_empty());
/// ```
pub fn current_process() -> ThreadInfo {
    CURRENT.with(|c| match &*c.borrow() {
        Some((name, daemon, _)) => ThreadInfo {
            name: name.clone(),
            daemon: *daemon,
            ending: None,
        },
        None => ThreadInfo {
            name: std::thread::current()
                .name()
                .filter(|n| *n != "main")
                .unwrap_or("MainThread")
                .to_owned(),
            daemon: false,
            ending: None,
        },
    })
}

/// The dummy processes started and not yet ended.
///
/// ```
/// assert!(mp_dummy::active_children().iter().all(|t| !t.name().is_empty()));
/// ```
pub fn active_children() -> Vec<ThreadInfo> {
    lock(&LIVE)
        .iter()
        .map(|(name, daemon, ending)| ThreadInfo {
            name: name.clone(),
            daemon: *daemon,
            ending: Some(ending.clone()),
        })
        .collect()
}
