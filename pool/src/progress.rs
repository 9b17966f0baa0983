//! Where a worker process is, for its pool to read without asking it: which
//! task and which item of it it runs, and (only when the pool has a task
//! timeout) since when. One small shared record per worker, written by the
//! worker alone under a sequence lock, read by the pool's scheduler: when
//! the worker dies or its call runs too long, the pool fails exactly that
//! item and runs the others again.

use std::sync::atomic::{Ordering, fence};

use mp_proc::RawArray;
use serde::{Deserialize, Serialize};

/// The record's words: the sequence (odd while the worker writes), `id + 1`
/// of the task (0: none yet), the item's index in the task, and when its
/// call began (`CLOCK_MONOTONIC` ns; 0: not measured).
const SEQ: usize = 0;
const TASK: usize = 1;
const ITEM: usize = 2;
const BEGAN: usize = 3;
const WORDS: usize = 4;

/// How often a reader retries a record being written before it takes what
/// it read (a writer killed in the middle of its four stores never ends it).
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

    /// The worker's position; retried while the worker is writing it.
    pub(crate) fn read(&self) -> Position {
        let mut p = Position::default();
        for _ in 0..RETRIES {
            let seq = self.word(SEQ);
            fence(Ordering::Acquire);
            p = Position {
                task: self.word(TASK),
                item: usize::try_from(self.word(ITEM)).unwrap_or(usize::MAX),
                began: self.word(BEGAN),
            };
            fence(Ordering::Acquire);
            if seq.is_multiple_of(2) && self.word(SEQ) == seq {
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
    seq: u64,
    /// The task word as last written.
    task: u64,
    /// Whether calls are timed (the pool has a task timeout): only then is
    /// the clock read, once per call.
    timed: bool,
}

impl Writer {
    pub(crate) fn new(progress: Progress, timed: bool) -> Writer {
        let (seq, task) = (progress.word(SEQ), progress.word(TASK));
        Writer {
            progress,
            seq: seq + seq % 2,
            task,
            timed,
        }
    }

    /// The worker is about to call item `item` of task `id`.
    ///
    /// Untimed (no task timeout), the record is read only once the worker
    /// has died, when nothing writes it any more: the item (and the task,
    /// when it changes) is stored alone, one store per call, with no
    /// sequence. Timed, the scheduler reads it while the worker runs, so
    /// the words change under the sequence lock, with the call's start.
    pub(crate) fn enter(&mut self, id: u64, item: usize) {
        let a = &self.progress.0;
        let task = id.wrapping_add(1);
        if !self.timed {
            if task != self.task {
                let _ = a.set(TASK, task);
                self.task = task;
            }
            let _ = a.set(ITEM, item as u64);
            return;
        }
        let began = crate::sys::monotonic_ns();
        self.seq = self.seq.wrapping_add(1);
        let _ = a.set(SEQ, self.seq);
        fence(Ordering::Release);
        // Only what changed: the item and time, and the task when it does.
        if task != self.task {
            let _ = a.set(TASK, task);
            self.task = task;
        }
        let _ = a.set(ITEM, item as u64);
        let _ = a.set(BEGAN, began);
        fence(Ordering::Release);
        self.seq = self.seq.wrapping_add(1);
        let _ = a.set(SEQ, self.seq);
    }
}
