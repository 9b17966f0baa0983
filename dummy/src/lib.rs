#![doc = include_str!("../README.md")]

mod context;
mod lock;
mod manager;
mod pool;
mod process;
mod queue;
mod registry;
mod set;
mod sync;
mod value;

pub use context::ThreadContext;
pub use lock::{AnyLock, Condition, Lock, LockGuard, RLock};
pub use manager::{Dict, List, Manager, Namespace};
pub use pool::{AsyncResult, IMap, Pool, ThreadPool};
pub use process::{Process, ThreadInfo, active_children, current_process};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use set::Set;
pub use sync::{Barrier, BoundedSemaphore, Event, Semaphore};
pub use value::{Array, SharedGuard, Value};

// The authkey is the process's, shared by its threads.
pub use mp_proc::{Connection, Error, Result, available_cpus, cpu_count, set_authkey};

/// A pipe between threads (`multiprocessing.dummy.Pipe`, which is
/// `multiprocessing.Pipe`): mp-proc's connections, which threads share too.
///
/// ```
/// let (a, b) = mp_dummy::pipe(true)?;
/// a.send(&5u8)?;
/// assert_eq!(b.recv::<u8>()?, 5);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    mp_proc::pipe(duplex)
}
