//! Contexts and the default start method: Python's `get_context`,
//! `set_start_method`, `get_start_method`.

use crate::Payload;
use crate::connection::{Connection, pipe};
use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::process::{JoinHandle, Process, spawn_with};
use crate::rt::runtime;

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
    runtime::start_method()
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

    /// See [`available_cpus`](crate::available_cpus).
    pub fn available_cpus(&self) -> usize {
        crate::available_cpus()
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

/// The number of CPUs this process can keep busy: its affinity mask (as
/// [`cpu_count`]) bounded by its cgroup's CPU quota (cgroup v1's
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us`, v2's `cpu.max`, rounded down),
/// as [`std::thread::available_parallelism`] computes it. Never 0. A
/// container given 2 CPUs on a 64-CPU machine has a `cpu_count()` of 64 but
/// an `available_cpus()` of 2; `mp_pool`'s default number of workers is
/// this (unlike CPython's `Pool`, which ignores the quota).
///
/// ```
/// let n = mp_proc::available_cpus();
/// assert!(n >= 1 && n <= mp_proc::cpu_count());
/// ```
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or_else(|_| cpu_count())
        .clamp(1, cpu_count())
}
