//! Where a worker process is, for its pool to read without asking it: which
//! task and which item of it it runs, and (only when the pool has a task
//! timeout) since when. One small shared record per worker, written by the
//! worker alone, read by the pool's scheduler: when the worker dies or its
//! call runs too long, the pool fails exactly that item and runs the others
//! again.
//!
//! A worker that shares no memory with its pool (on another host) has no
//! record: when the pool is timed it sends its position before each call
//! ([`FromWorker::Began`](crate::worker::FromWorker::Began)), and the pool keeps it, with the time it got
//! the message as the call's start; untimed it sends nothing (see
//! [`Reporter`]).
//!
//! Untimed, the record is read only once its worker has died (nothing
//! writes it then): the worker stores the item of each call, and the task
//! when it changes, one store per call. Timed, the scheduler reads it while
//! the worker runs: the worker stores the call's start first, then the
//! task and item, and a reader that sees the same start before and after
//! reading them has a consistent record (a call's start changes with every
//! call, so it serves as the record's sequence, with no store of its own).

use std::sync::atomic::{Ordering, fence};

use mp_proc::RawArray;
use serde::{Deserialize, Serialize};

/// The record's words: `id + 1` of the task (0: none yet), the item's index
/// in the task, and when its call began (`CLOCK_MONOTONIC` ns; 0: not
/// measured).
const TASK: usize = 0;
const ITEM: usize = 1;
const BEGAN: usize = 2;
const WORDS: usize = 3;

/// How often a reader retries a record being written before it takes what
/// it read (a writer stopped between its stores never ends it).
const RETRIES: usize = 64;

/// A worker's position, as the pool last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Position {
    /// `id + 1` of the task the worker runs (0: none yet).
    pub(crate) task: u64,
    /// The index, in that task, of the item being called.
    pub(crate) item: usize,
    /// When that call began (`CLOCK_MONOTONIC` ns), 0 if not measured.
    pub(crate) began: u64,
}

/// The shared record of one worker (both ends hold a handle of it).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Progress(RawArray<u64>);

impl Progress {
    pub(crate) fn new() -> mp_proc::Result<Progress> {
        Ok(Progress(RawArray::new(WORDS)?))
    }

    fn word(&self, i: usize) -> u64 {
        self.0.get(i).unwrap_or(0)
    }

    /// The worker's position; retried while the worker is writing it (its
    /// call's start changed while the task and item were read).
    pub(crate) fn read(&self) -> Position {
        let mut p = Position::default();
        for _ in 0..RETRIES {
            let began = self.word(BEGAN);
            fence(Ordering::Acquire);
            p = Position {
                task: self.word(TASK),
                item: usize::try_from(self.word(ITEM)).unwrap_or(usize::MAX),
                began,
            };
            fence(Ordering::Acquire);
            if self.word(BEGAN) == began {
                return p;
            }
            std::hint::spin_loop();
        }
        p
    }
}

/// The worker's end: the only writer of its record.
pub(crate) struct Writer {
    progress: Progress,
    /// The task word as last written.
    task: u64,
    /// Whether calls are timed (the pool has a task timeout): only then is
    /// the clock read, once per call.
    timed: bool,
}

impl Writer {
    pub(crate) fn new(progress: Progress, timed: bool) -> Writer {
        let task = progress.word(TASK);
        Writer {
            progress,
            task,
            timed,
        }
    }

    /// The worker is about to call item `item` of task `id`: one store
    /// (the item; and the task when it changes), and the call's start
    /// before them when timed (see the module's doc).
    pub(crate) fn enter(&mut self, id: u64, item: usize) {
        let a = &self.progress.0;
        if self.timed {
            let _ = a.set(BEGAN, crate::sys::monotonic_ns());
            fence(Ordering::Release);
        }
        let task = id.wrapping_add(1);
        if task != self.task {
            let _ = a.set(TASK, task);
            self.task = task;
        }
        let _ = a.set(ITEM, item as u64);
    }
}
