#![doc = include_str!("../README.md")]

mod context;
mod manager;
mod pool;
mod process;
mod queue;
mod registry;
mod sync;

pub use context::ThreadContext;
pub use manager::{Dict, List, Manager, Namespace};
pub use pool::{AsyncResult, IMap, Pool, ThreadPool};
pub use process::{Process, ThreadInfo, active_children, current_process};
pub use queue::{JoinableQueue, Queue};
pub use sync::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, Semaphore, Value,
};

pub use mp_proc::{Connection, Error, Result};

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
