#![doc = include_str!("../README.md")]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![deny(unsafe_code)]

mod bootstrap;
#[doc(hidden)]
pub mod conformance;
pub mod connection;
mod context;
mod depth;
mod error;
mod forkserver;
mod function;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod local;
mod payload;
mod probe;
mod process;
mod queue;
mod runners;
mod runtime;
mod start;
mod sync;
mod sys;
mod tracker;
mod traits;
mod wire;

/// The encoding of typed values between processes (postcard), for crates
/// that carry values of their own (a pool's arguments and results, a
/// manager's requests). Handles (`Connection`, queues, ...) cannot be encoded
/// by [`encode`](codec::encode): they travel inside a child's `args`.
pub mod codec {
    pub use crate::wire::codec::{decode, encode, encode_into};
}
#[doc(hidden)]
pub mod plumbing;

pub use connection::{Connection, pipe};
pub use context::{
    ParseStartMethodError, ProcessContext, StartMethod, cpu_count, get_context, get_start_method,
    set_start_method,
};
pub use error::{BoxError, Error, Result};
pub use function::{FnPointer, Function};
pub use payload::Payload;
pub use process::{
    JoinHandle, Process, ProcessInfo, active_children, current_process, exit, init, parent_process,
    spawn,
};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use sync::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RawArray, RawValue,
    Semaphore, Shareable, SharedGuard, SharedMemory, Value,
};
/// The loom model's switch (tests/loom.rs): `--cfg loom` builds only.
#[cfg(loom)]
#[doc(hidden)]
pub use sys::atomics::model::{Handshake, set_handshake};
pub use traits::{
    BarrierLike, ConditionLike, Context, EventLike, GuardOf, JoinableQueueLike, LockLike,
    ProcessLike, QueueLike, SemaphoreLike, ValueLike, Workers,
};

/// The workspace README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;
