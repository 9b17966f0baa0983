//! Locks and the other primitives, and shared values: Python's
//! `multiprocessing.synchronize` and `sharedctypes`, process-shared under
//! every start method.

pub(crate) mod condition;
mod lock;
mod semaphore;
mod shareable_list;
pub(crate) mod shared;
mod shared_memory;
mod value;

pub use condition::{Barrier, Condition};
pub use lock::{AnyLock, Lock, LockGuard, RLock};
pub use semaphore::{BoundedSemaphore, Event, Semaphore};
pub use shareable_list::{ShareableItem, ShareableList};
pub use shared_memory::{SharedMemory, SharedMemoryOptions};
pub use value::{Array, RawArray, RawValue, Shareable, SharedGuard, Value};
