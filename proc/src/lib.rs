#![doc = include_str!("../README.md")]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![deny(unsafe_code)]

// Layers, each importing only from itself and below (`cargo xtask layers`
// checks it, xtask/src/layers.rs has the table): sys/ (the OS) <- error,
// method, mutex, spin (leaves) <- local/ (in-process primitives) <- wire/
// (payloads, codec, handles, runners) <- rt/ (the runtime) <- the user API
// (the other modules).
pub mod connection;
mod context;
mod error;
mod function;
mod fuzzing;
mod hosts;
mod info;
mod local;
mod method;
mod mutex;
mod process;
mod queue;
pub mod reduction;
mod rt;
mod spin;
mod sync;
mod sys;
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
    ProcessContext, available_cpus, cpu_count, get_context, get_start_method, set_start_method,
};
pub use error::{BoxError, Error, Result, TicketFailure};
pub use function::{FnPointer, Function};
pub use info::{ProcessInfo, active_children, current_process, init, parent_process, set_authkey};
pub use method::{ParseStartMethodError, StartMethod};
pub use process::{JoinHandle, Process, exit, spawn};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use rt::forkserver::set_forkserver_preload;
pub use rt::launcher::Launcher;
pub use sync::{
    AnyLock, Array, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RawArray,
    RawValue, Semaphore, Shareable, ShareableItem, ShareableList, SharedGuard, SharedMemory,
    SharedMemoryOptions, Value,
};
/// The loom model's switch (tests/loom.rs): `--cfg loom` builds only.
#[cfg(loom)]
#[doc(hidden)]
pub use sys::atomics::model::{Handshake, set_handshake};
pub use traits::{
    BarrierLike, ConditionLike, ConnectionLike, Context, EventLike, GuardOf, JoinableQueueLike,
    LockLike, ProcessLike, QueueLike, SemaphoreLike, ValueLike, Workers,
};
pub use wire::payload::Payload;

/// The workspace README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;
