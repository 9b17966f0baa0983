//! The shared ring behind every queue: variable-length records in a sparse
//! memory file, shared by every process that has the queue.
//!
//! - Producers append under a robust producer lock, consumers take under a
//!   robust consumer lock; the two never wait for each other. A process that
//!   dies holding either lock leaves the ring consistent: the head and the
//!   tail only move after a record is whole, so the next holder goes on.
//! - Nothing is buffered in a process: `put` returns when the item is in
//!   shared memory, so a producer that exits loses nothing and its exit never
//!   waits for a reader (CPython's feeder thread does both).
//! - The file is sparse: consumed pages are punched out, so memory follows
//!   what is queued, not the ring's (virtual) capacity.
//! - Sleepers wait on futex counters, with a short bounded spin first.
//!
//! Non-generic on purpose: one copy of it is compiled for every item type.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::spin::spin_until;
use crate::sync::shared::{RawLock, Shared};
use crate::sys::atomics::{AtomicU32, AtomicU64};
use crate::sys::sync::{OBJECT, announce, anyone_waiting, futex_wait, futex_wake, word, word64};

// Control page layout.
const PRODUCERS: usize = 0;
const CONSUMERS: usize = OBJECT;
const HEAD: usize = 2 * OBJECT; // u64: bytes consumed, ever
const TAIL: usize = HEAD + 8; // u64: bytes produced, ever
const PUNCHED: usize = HEAD + 16; // u64: consumed bytes whose pages are freed
const CAPACITY: usize = HEAD + 24; // u64
const PUSHED: usize = HEAD + 32; // u32 futex: items put, ever (wrapping)
const POPPED: usize = HEAD + 36; // u32 futex: items got, ever (wrapping)
const CONSUMERS_WAITING: usize = HEAD + 40;
const PRODUCERS_WAITING: usize = HEAD + 44;
const CLOSED: usize = HEAD + 48; // u32 futex
const MAXSIZE: usize = HEAD + 52; // u32: 0 = no limit
const UNFINISHED: usize = HEAD + 56; // u32 futex: JoinableQueue tasks
const JOINERS_WAITING: usize = HEAD + 60;
/// Journals of the last put and get, so that a process killed between
/// moving the tail (head) and counting the item leaves nothing half done:
/// the next holder of the lock, seeing its owner died, completes them.
/// Each: u64 target position, u32 target count, u32 active flag.
const PUT_JOURNAL: usize = HEAD + 64;
const GET_JOURNAL: usize = HEAD + 80;
const DATA: usize = 4096;

/// Records are 8-aligned: an 8-byte header (length, kind), then the bytes.
const HEADER: u64 = 8;

/// Which lock, and which journal.
#[derive(Clone, Copy)]
enum Side {
    Producers,
    Consumers,
}
const KIND_ITEM: u32 = 1;
const KIND_WRAP: u32 = 2;
/// Consumed bytes are given back to the system in chunks of this size.
const PUNCH_CHUNK: u64 = 1 << 20;

/// The default (virtual) capacity of a queue: 1 GiB of queued bytes.
pub(crate) const DEFAULT_CAPACITY: u64 = 1 << 30;

fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

#[derive(Clone)]
pub(crate) struct Ring {
    shared: Shared,
    producers: RawLock,
    consumers: RawLock,
    /// The data area's size, read (and checked against the region) once:
    /// the word in shared memory is never read again.
    capacity: u64,
}

impl Ring {
    pub(crate) fn new(capacity: u64, maxsize: usize) -> Result<Ring> {
        let capacity = align8(capacity.max(4096));
        let shared = Shared::new(DATA + capacity as usize)?;
        let producers = RawLock::init(shared.clone(), PRODUCERS, false, "Queue")?;
        let consumers = RawLock::init(shared.clone(), CONSUMERS, false, "Queue")?;
        word64(&shared.0, CAPACITY).store(capacity, Ordering::Release);
        word(&shared.0, MAXSIZE)
            .store(maxsize.min(u32::MAX as usize - 1) as u32, Ordering::Release);
        Ok(Ring {
            shared,
            producers,
            consumers,
            capacity,
        })
    }

    pub(crate) fn from_shared(shared: Shared) -> std::result::Result<Ring, String> {
        if shared.0.len() < DATA + 4096 {
            return Err("a queue's shared memory is too small".into());
        }
        let capacity = word64(&shared.0, CAPACITY).load(Ordering::Acquire);
        // Checked: the word is in shared memory, which any holder writes.
        if capacity < 4096
            || !capacity.is_multiple_of(8)
            || (DATA as u64)
                .checked_add(capacity)
                .is_none_or(|end| end > shared.0.len() as u64)
        {
            return Err("a queue's shared memory does not match its capacity".into());
        }
        Ok(Ring {
            producers: RawLock {
                shared: shared.clone(),
                offset: PRODUCERS,
                what: "Queue",
            },
            consumers: RawLock {
                shared: shared.clone(),
                offset: CONSUMERS,
                what: "Queue",
            },
            shared,
            capacity,
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn w(&self, offset: usize) -> &AtomicU32 {
        word(&self.shared.0, offset)
    }

    fn w64(&self, offset: usize) -> &AtomicU64 {
        word64(&self.shared.0, offset)
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The largest item a put accepts.
    pub(crate) fn max_item(&self) -> usize {
        (self.capacity() / 2 - HEADER) as usize
    }

    /// Takes a queue lock. A holder that died left the ring consistent (the
    /// head and tail move only after a whole record), so that is no error here.
    fn lock(&self, side: Side, deadline: Option<Instant>) -> Result<bool> {
        let lock = match side {
            Side::Producers => &self.producers,
            Side::Consumers => &self.consumers,
        };
        match lock.lock(deadline) {
            Err(Error::OwnerDied { .. }) => {
                let r = lock.lock(deadline);
                if matches!(r, Ok(true)) {
                    self.replay(side);
                }
                r
            }
            r => r,
        }
    }

    /// The words a side's journal covers: (journal, position, count).
    fn journal_words(side: Side) -> (usize, usize, usize) {
        match side {
            Side::Producers => (PUT_JOURNAL, TAIL, PUSHED),
            Side::Consumers => (GET_JOURNAL, HEAD, POPPED),
        }
    }

    /// Moves a side's position to `pos` and its count to `count`, journaled
    /// (the side's lock is held).
    fn advance(&self, side: Side, pos: u64, count: u32) {
        let (j, p, c) = Self::journal_words(side);
        self.w64(j).store(pos, Ordering::Relaxed);
        self.w(j + 8).store(count, Ordering::Relaxed);
        self.w(j + 12).store(1, Ordering::Release);
        self.w64(p).store(pos, Ordering::Release);
        self.w(c).store(count, Ordering::Release);
        self.w(j + 12).store(0, Ordering::Release);
    }

    /// Completes an `advance` its process did not finish (it was killed
    /// holding the lock, which is ours now).
    fn replay(&self, side: Side) {
        let (j, p, c) = Self::journal_words(side);
        if self.w(j + 12).load(Ordering::Acquire) == 1 {
            self.w64(p)
                .store(self.w64(j).load(Ordering::Relaxed), Ordering::Release);
            self.w(c)
                .store(self.w(j + 8).load(Ordering::Relaxed), Ordering::Release);
            self.w(j + 12).store(0, Ordering::Release);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count(Side::Producers)
            .wrapping_sub(self.count(Side::Consumers)) as usize
    }

    /// Items put (got) so far, counting an `advance` in progress or left
    /// unfinished by a killed process (its journal says where it goes).
    fn count(&self, side: Side) -> u32 {
        let (j, _, c) = Self::journal_words(side);
        if self.w(j + 12).load(Ordering::Acquire) == 1 {
            self.w(j + 8).load(Ordering::Acquire)
        } else {
            self.w(c).load(Ordering::Acquire)
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.w(CLOSED).load(Ordering::Acquire) != 0
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.w(MAXSIZE).load(Ordering::Relaxed) as usize
    }

    /// Appends one item, waiting for room until `deadline` (`None`: forever,
    /// `Some(now)`: not at all). No room in time is [`Error::Full`].
    pub(crate) fn put(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        if bytes.len() > self.max_item() {
            return Err(Error::ItemTooLarge {
                len: bytes.len(),
                max: self.max_item(),
            });
        }
        let size = HEADER + align8(bytes.len() as u64);
        let capacity = self.capacity();
        if !self.lock(Side::Producers, deadline)? {
            return Err(Error::Full);
        }
        let result = loop {
            if self.is_closed() {
                break Err(Error::Closed);
            }
            // The count the wait below sleeps on, read before the room: a get
            // between the two (it moves the head, then counts) would be seen
            // by neither, and would not wake this producer either (it looks
            // for waiters before this one is counted): a lost wake-up.
            let seen = self.w(POPPED).load(Ordering::Acquire);
            let tail = self.w64(TAIL).load(Ordering::Relaxed);
            let head = self.w64(HEAD).load(Ordering::Acquire);
            let pos = tail % capacity;
            let to_end = capacity - pos;
            let need = if to_end < size { to_end + size } else { size };
            let maxsize = self.maxsize();
            let room = tail + need - head <= capacity && (maxsize == 0 || self.len() < maxsize);
            if room {
                let mut pos = pos;
                let mut tail = tail;
                if to_end < size {
                    self.header(pos, 0, KIND_WRAP);
                    tail += to_end;
                    pos = 0;
                }
                #[allow(unsafe_code)]
                // SAFETY: this producer claimed the slot under the ring's
                // lock and publishes it only below (the header); no consumer
                // reads it before, and no other producer claims it.
                unsafe {
                    self.shared
                        .0
                        .copy_in(DATA + pos as usize + HEADER as usize, bytes)
                };
                self.header(pos, bytes.len() as u32, KIND_ITEM);
                let pushed = self.w(PUSHED).load(Ordering::Relaxed).wrapping_add(1);
                self.advance(Side::Producers, tail + size, pushed);
                break Ok(());
            }
            // Wait for a get, with the lock released.
            announce(self.w(PRODUCERS_WAITING));
            let _ = self.producers.unlock();
            let in_time = self.w(POPPED).load(Ordering::Acquire) != seen
                || self.is_closed()
                || futex_wait(self.w(POPPED), seen, deadline);
            self.w(PRODUCERS_WAITING).fetch_sub(1, Ordering::AcqRel);
            if !in_time || !self.lock(Side::Producers, deadline)? {
                return Err(Error::Full);
            }
        };
        let _ = self.producers.unlock();
        if result.is_ok() && anyone_waiting(self.w(CONSUMERS_WAITING)) {
            futex_wake(self.w(PUSHED), 1);
        }
        result
    }

    fn header(&self, pos: u64, len: u32, kind: u32) {
        let at = DATA + pos as usize;
        word(&self.shared.0, at).store(len, Ordering::Relaxed);
        word(&self.shared.0, at + 4).store(kind, Ordering::Release);
    }

    /// Takes the oldest item and gives its bytes to `take`, waiting until
    /// `deadline`. Nothing in time is [`Error::Empty`]; a closed, drained
    /// queue is [`Error::Closed`].
    pub(crate) fn get<R>(
        &self,
        deadline: Option<Instant>,
        take: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let capacity = self.capacity();
        let mut polled = false;
        if !self.lock(Side::Consumers, deadline)? {
            return Err(Error::Empty);
        }
        loop {
            let head = self.w64(HEAD).load(Ordering::Relaxed);
            let tail = self.w64(TAIL).load(Ordering::Acquire);
            if head != tail {
                let pos = head % capacity;
                let at = DATA + pos as usize;
                let len = word(&self.shared.0, at).load(Ordering::Relaxed) as u64;
                let kind = word(&self.shared.0, at + 4).load(Ordering::Acquire);
                if kind == KIND_WRAP {
                    self.w64(HEAD)
                        .store(head + (capacity - pos), Ordering::Release);
                    continue;
                }
                #[allow(unsafe_code)]
                // SAFETY: a published record that this consumer holds under
                // the ring's lock: no producer writes it until the head moves
                // past it, below, after `take` copied it out.
                let out = take(unsafe { self.shared.0.bytes(at + HEADER as usize, len as usize) });
                let new_head = head + HEADER + align8(len);
                let popped = self.w(POPPED).load(Ordering::Relaxed).wrapping_add(1);
                self.advance(Side::Consumers, new_head, popped);
                self.punch_consumed(new_head, capacity);
                let _ = self.consumers.unlock();
                if anyone_waiting(self.w(PRODUCERS_WAITING)) {
                    futex_wake(self.w(POPPED), 1);
                }
                return Ok(out);
            }
            if self.is_closed() {
                let _ = self.consumers.unlock();
                return Err(Error::Closed);
            }
            if !polled {
                // Poll a little, without the lock, before sleeping.
                polled = true;
                let _ = self.consumers.unlock();
                spin_until(
                    || self.w64(TAIL).load(Ordering::Acquire) != head || self.is_closed(),
                    deadline,
                );
                if !self.lock(Side::Consumers, deadline)? {
                    return Err(Error::Empty);
                }
                continue;
            }
            let seen = self.w(PUSHED).load(Ordering::Acquire);
            announce(self.w(CONSUMERS_WAITING));
            let _ = self.consumers.unlock();
            let in_time = self.w64(TAIL).load(Ordering::Acquire) != head
                || self.is_closed()
                || futex_wait(self.w(PUSHED), seen, deadline);
            self.w(CONSUMERS_WAITING).fetch_sub(1, Ordering::AcqRel);
            if !self.lock(Side::Consumers, deadline)? {
                return Err(Error::Empty);
            }
            if !in_time {
                // One last look: an item may have come with the deadline.
                let tail = self.w64(TAIL).load(Ordering::Acquire);
                if self.w64(HEAD).load(Ordering::Relaxed) == tail {
                    let _ = self.consumers.unlock();
                    return Err(if self.is_closed() {
                        Error::Closed
                    } else {
                        Error::Empty
                    });
                }
            }
        }
    }

    /// Gives the pages of consumed records back (the consumer lock is held).
    fn punch_consumed(&self, head: u64, capacity: u64) {
        let punched = self.w64(PUNCHED).load(Ordering::Relaxed);
        if head - punched < PUNCH_CHUNK {
            return;
        }
        let (from, to) = (punched % capacity, head % capacity);
        if from < to {
            self.shared
                .0
                .punch(DATA + from as usize, (to - from) as usize);
        } else {
            self.shared
                .0
                .punch(DATA + from as usize, (capacity - from) as usize);
            self.shared.0.punch(DATA, to as usize);
        }
        // Only whole pages were freed; remember the page boundary reached.
        self.w64(PUNCHED)
            .store(head - head % 4096, Ordering::Relaxed);
    }

    /// Closes the queue for every process: puts fail, gets drain what is left
    /// and then fail, and every sleeper wakes.
    pub(crate) fn close(&self) {
        self.w(CLOSED).store(1, Ordering::Release);
        futex_wake(self.w(PUSHED), i32::MAX);
        futex_wake(self.w(POPPED), i32::MAX);
        futex_wake(self.w(UNFINISHED), i32::MAX);
    }

    // ---- JoinableQueue's task counter

    pub(crate) fn add_task(&self) {
        self.w(UNFINISHED).fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn task_done(&self) -> Result<()> {
        let u = self.w(UNFINISHED);
        let mut cur = u.load(Ordering::Acquire);
        loop {
            if cur == 0 {
                return Err(Error::TaskDoneTooManyTimes);
            }
            match u.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 && anyone_waiting(self.w(JOINERS_WAITING)) {
            futex_wake(u, i32::MAX);
        }
        Ok(())
    }

    /// Waits until every item put has been marked done.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<bool> {
        let u = self.w(UNFINISHED);
        loop {
            let cur = u.load(Ordering::Acquire);
            if cur == 0 {
                return Ok(true);
            }
            announce(self.w(JOINERS_WAITING));
            let in_time = futex_wait(u, cur, deadline);
            self.w(JOINERS_WAITING).fetch_sub(1, Ordering::AcqRel);
            if !in_time {
                return Ok(u.load(Ordering::Acquire) == 0);
            }
        }
    }
}
