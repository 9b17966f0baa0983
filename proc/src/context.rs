//! Start methods and contexts: Python's `get_context`, `set_start_method`,
//! `get_start_method`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Payload;
use crate::connection::{Connection, pipe};
use crate::error::{Error, Result};
use crate::process::{JoinHandle, Process, spawn_with};
use crate::rt::runtime;

/// How a child process is started, Python's start methods.
///
/// - `Fork` forks the calling process: fast, and the child starts with a copy
///   of the parent's memory, but a parent that runs other threads may hand the
///   child a lock that nobody will ever release (mp logs a warning, as CPython
///   3.12 does).
/// - `Spawn` runs the executable afresh and calls the target in it.
/// - `Forkserver` (the default, as in CPython 3.14 on Linux) asks a server
///   process, started by spawn on first use, to fork the child. The server
///   never runs user code or threads, so this is fast and safe in a threaded
///   program.
///
/// ```
/// use mp_proc::StartMethod;
/// assert_eq!(StartMethod::default(), StartMethod::Forkserver);
/// assert_eq!("spawn".parse::<StartMethod>(), Ok(StartMethod::Spawn));
/// assert_eq!(StartMethod::Fork.to_string(), "fork");
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// `'fork'`.
    Fork,
    /// `'spawn'`.
    Spawn,
    /// `'forkserver'`, the default.
    #[default]
    Forkserver,
}

impl StartMethod {
    /// Every start method, the default first (Python's `get_all_start_methods()` in 3.14).
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Forkserver,
        StartMethod::Fork,
        StartMethod::Spawn,
    ];

    /// Python's name: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }

    /// The class-name prefix of processes made by this method's context
    /// (`ForkProcess`, `SpawnProcess`, `ForkServerProcess`).
    fn process_prefix(self) -> &'static str {
        match self {
            StartMethod::Fork => "ForkProcess",
            StartMethod::Spawn => "SpawnProcess",
            StartMethod::Forkserver => "ForkServerProcess",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`StartMethod`] (Python's `ValueError('cannot find context for %r')`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseStartMethodError(String);

impl fmt::Display for ParseStartMethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot find context for {:?}", self.0)
    }
}

impl std::error::Error for ParseStartMethodError {}

impl FromStr for StartMethod {
    type Err = ParseStartMethodError;
    fn from_str(s: &str) -> Result<StartMethod, ParseStartMethodError> {
        StartMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| ParseStartMethodError(s.to_owned()))
    }
}

/// Sets the start method of processes that do not choose one. It can be set
/// once per process ([`Error::ContextAlreadySet`] after that), as Python's
/// `set_start_method`. A child starts with its parent's method already set.
///
/// ```
/// mp_proc::set_start_method(mp_proc::StartMethod::Spawn)?;
/// assert_eq!(mp_proc::get_start_method(), mp_proc::StartMethod::Spawn);
/// assert!(mp_proc::set_start_method(mp_proc::StartMethod::Fork).is_err());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut state = runtime::state();
    if state.start_method.is_some() {
        return Err(Error::ContextAlreadySet);
    }
    state.start_method = Some(method);
    Ok(())
}

/// The start method of processes that do not choose one: the one set by
/// [`set_start_method`], or [`StartMethod::Forkserver`]. Unlike Python's, it
/// does not fix the default, so `set_start_method` still works afterwards.
pub fn get_start_method() -> StartMethod {
    runtime::state().start_method.unwrap_or_default()
}

/// A context for one start method, Python's `multiprocessing.get_context(method)`.
///
/// ```
/// use mp_proc::{StartMethod, get_context};
///
/// fn child(n: u32) {
///     assert_eq!(n, 7);
/// }
///
/// let ctx = get_context(StartMethod::Spawn);
/// let mut p = ctx.process(child, 7);
/// assert!(p.get_name().starts_with("SpawnProcess-"));
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn get_context(method: StartMethod) -> ProcessContext {
    ProcessContext { method }
}

/// The processes of one start method. Made by [`get_context`]; cheap to copy.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessContext {
    method: StartMethod,
}

impl ProcessContext {
    /// This context's start method.
    pub fn get_start_method(&self) -> StartMethod {
        self.method
    }

    /// A process of this start method, named `ForkProcess-N`, `SpawnProcess-N`
    /// or `ForkServerProcess-N` as in Python.
    pub fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        Process::with_prefix(self.method.process_prefix(), target, args).start_method(self.method)
    }

    /// Runs `f(args)` in a child of this start method; see [`spawn`](crate::spawn).
    pub fn spawn<A: Payload, R: Payload>(&self, f: fn(A) -> R, args: A) -> Result<JoinHandle<R>> {
        spawn_with(Some(self.method), f, args)
    }

    /// A pipe; see [`pipe`](crate::pipe).
    pub fn pipe(&self, duplex: bool) -> Result<(Connection, Connection)> {
        pipe(duplex)
    }

    /// See [`cpu_count`](crate::cpu_count).
    pub fn cpu_count(&self) -> usize {
        crate::cpu_count()
    }
}

/// The number of CPUs this process may run on: the size of its affinity mask
/// (Python's `os.process_cpu_count()`, which `Pool` uses from 3.13). Never 0.
///
/// ```
/// assert!(mp_proc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    use nix::sched::{CpuSet, sched_getaffinity};
    match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count()
            .max(1),
        Err(_) => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    }
}
