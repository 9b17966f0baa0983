//! What a pool asks of its process workers beyond running tasks (the
//! builder's limits), and why the scheduler buries a worker.

use std::time::Duration;

/// What a pool asks of its workers beyond running tasks (the builder's
/// settings).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    /// Replace a worker after this many tasks (`maxtasksperchild`).
    pub(crate) maxtasks: Option<usize>,
    /// Kill a worker whose call runs longer (`task_timeout`).
    pub(crate) task_timeout: Option<Duration>,
    /// Replace a worker whose resident memory is above this many bytes
    /// after a task (`max_memory_per_child`).
    pub(crate) max_memory: Option<u64>,
    /// Stop a worker that holds no task for this long (`idle_timeout`).
    pub(crate) idle: Option<Duration>,
}

/// Why a worker is buried.
pub(crate) enum Cause {
    /// It ended (crashed, exited, was ended from outside, or retired).
    Ended,
    /// It was killed because item `item` of its task `id` ran past `limit`.
    TimedOut {
        id: u64,
        item: usize,
        limit: Duration,
    },
}
