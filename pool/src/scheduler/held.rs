//! What the scheduler keeps of each worker: the tasks it holds, where it
//! is, and whether it should be given more.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mp_proc::plumbing::ErasedFunction;

use super::Link;
use crate::codec;
use crate::job::{Task, Work};
use crate::progress::Position;
#[cfg(doc)]
use crate::worker::FromWorker;

/// A worker is given tasks ahead, so that it never idles between them, as
/// long as what it holds is estimated to take less than this; a worker of
/// slow tasks holds one at a time, so that no task waits behind a slow one
/// while another worker idles (CPython's workers take tasks one by one from
/// a shared queue).
const PREFETCH_WINDOW: Duration = Duration::from_millis(5);
/// At most this many tasks are held by one worker.
const PREFETCH_TASKS: usize = 256;

/// One task handed to a worker, kept until it reports the outcome (to run
/// it elsewhere if the worker dies first).
pub(super) struct Sent {
    pub(super) id: u64,
    pub(super) job: crate::job::JobId,
    pub(super) start: usize,
    pub(super) count: usize,
    pub(super) func: ErasedFunction,
    pub(super) items: Vec<u8>,
}

impl Sent {
    /// The task again, to queue it for another worker.
    pub(super) fn requeue(self) -> Task {
        Task {
            job: self.job,
            start: self.start,
            count: self.count,
            work: Work::Encoded {
                func: self.func,
                items: self.items,
            },
        }
    }

    /// The task without its item `item`, which failed: the items before
    /// and after it, as tasks to queue again (none if empty).
    pub(super) fn split_around(&self, item: usize) -> [Option<Task>; 2] {
        let offset = |n: usize| {
            let mut pos = 0;
            for _ in 0..n {
                match codec::read(&self.items, pos) {
                    Some((_, _, next)) => pos = next,
                    None => break,
                }
            }
            pos
        };
        let (at, past) = (offset(item), offset(item.saturating_add(1)));
        let piece = |start: usize, count: usize, items: &[u8]| {
            (count > 0).then(|| Task {
                job: self.job,
                start,
                count,
                work: Work::Encoded {
                    func: self.func,
                    items: items.to_vec(),
                },
            })
        };
        let after = self.count.saturating_sub(item.saturating_add(1));
        [
            piece(self.start, item, &self.items[..at]),
            piece(self.start + item + 1, after, &self.items[past..]),
        ]
    }
}

pub(super) struct Worker {
    pub(super) link: Link,
    /// The tasks it was given and has not reported, in the order it runs them.
    pub(super) in_flight: VecDeque<Sent>,
    /// What one item costs it, from its last report (`None`: not known yet,
    /// it is given one task at a time).
    pub(super) item_cost: Option<Duration>,
    /// Since when it has been working on what it holds now.
    pub(super) busy_since: Instant,
    /// Frames written for it that its connection has not taken yet, and how
    /// many bytes of them went.
    pub(super) outbox: Vec<u8>,
    pub(super) sent: usize,
    /// How many more tasks it may be given (`maxtasksperchild`): it retires
    /// after running that many, so it is never handed one it would not run.
    pub(super) left: Option<usize>,
    /// It is ending on its own (its memory is over the limit, or it was
    /// idle too long and was told to stop): it is given nothing more, and
    /// tasks it holds are not its to fail.
    pub(super) retiring: bool,
    /// It was ended from outside (`terminate_workers`, `kill_workers`):
    /// tasks it held and had not started run again.
    pub(super) ended: bool,
    /// Since when it has held no task.
    pub(super) idle_since: Instant,
    /// Where it is as it last reported ([`FromWorker::Began`]), with the
    /// time the report came as the call's start: for a worker with no
    /// shared record, in a pool with a task timeout (`None` otherwise).
    pub(super) reported: Option<Position>,
}

impl Worker {
    /// The task and item it runs: from its shared record, or from its
    /// reports; `None`: not known (no record, and untimed).
    pub(super) fn position(&self) -> Option<Position> {
        self.link.worker.position().or(self.reported)
    }

    /// Writes what its connection takes now of the outbox.
    pub(super) fn flush(&mut self) {
        while self.sent < self.outbox.len() {
            match self.link.conn.write_nonblocking(&self.outbox[self.sent..]) {
                Ok(0) => return,
                Ok(n) => self.sent += n,
                // A dead worker: its sentinel says so.
                Err(_) => return,
            }
        }
        self.outbox.clear();
        self.sent = 0;
    }

    /// Whether it should be given another task, holding `tasks` tasks of
    /// `items` items.
    /// A worker that holds tasks and has reported nothing for
    /// [`PREFETCH_WINDOW`] is in a call slower than its estimate (a worker
    /// reports at least every millisecond between calls): it is given
    /// nothing more, so that no task waits behind that call while another
    /// worker could run it.
    pub(super) fn wants(&self, tasks: usize, items: usize, now: Instant) -> bool {
        if self.retiring || self.ended || self.left == Some(0) || tasks >= PREFETCH_TASKS {
            return false;
        }
        if tasks == 0 {
            return true;
        }
        if !self.in_flight.is_empty()
            && now.saturating_duration_since(self.busy_since) >= PREFETCH_WINDOW
        {
            return false;
        }
        match self.item_cost {
            Some(cost) => {
                cost.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX)) < PREFETCH_WINDOW
            }
            None => false,
        }
    }
}
