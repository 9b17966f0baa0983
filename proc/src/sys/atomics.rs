//! The atomics and the futex under mp's wait/wake protocols, and their model.
//!
//! Normally these are `std::sync::atomic` and the Linux futex calls of
//! [`super::sync`]. Built with `RUSTFLAGS="--cfg loom"`, they are loom's
//! atomics and an emulated futex ([`model`]), so that `tests/loom.rs` runs
//! the real `Event`, `Semaphore` and queue ring code under loom's model
//! checker: every interleaving of its threads (within a preemption bound)
//! and every value the C11 memory model lets each load read, stale ones
//! included. A lost wake-up shows there as a deadlock.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

/// The model behind `--cfg loom`: the shared words of a region as loom
/// atomics, a futex and a mutex emulated with loom's primitives, and a switch
/// that weakens the waiter-count handshake back to the code before its fix,
/// so the tests can show that the model finds that lost wake-up.
#[cfg(loom)]
pub(crate) mod model {
    use std::cell::Cell;
    use std::io;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use loom::sync::{Condvar, Mutex};

    use super::{AtomicU32, AtomicU64};
    use crate::sys::shm::Region;
    use crate::sys::sync::{Taken, word};

    /// The largest region the model covers: each word is a loom object.
    const MAX_REGION: usize = 16 << 10;

    /// A region's words as loom atomics, made with the region (so in the
    /// thread that creates it, before it is shared: loom requires that an
    /// object's creation happens before every access to it). They start at
    /// 0, as a new memory file does; a region mapped from a received fd is
    /// not modelled (the model checks threads of one process, sharing one
    /// mapping).
    pub(crate) struct Words {
        w32: Box<[AtomicU32]>,
        w64: Box<[AtomicU64]>,
    }

    impl Words {
        pub(crate) fn new(len: usize) -> Words {
            assert!(
                len <= MAX_REGION,
                "the loom model covers shared regions up to {MAX_REGION} bytes, not {len} \
                 (a queue for the model: with_capacity(_, 4096))"
            );
            // The futex is made here too, for the same reason.
            let _ = &*FUTEX;
            Words {
                w32: (0..len / 4).map(|_| AtomicU32::new(0)).collect(),
                w64: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            }
        }

        /// The 32-bit word at `offset` (in bounds and 4-aligned: checked by
        /// the caller).
        pub(crate) fn word32(&self, offset: usize) -> &AtomicU32 {
            &self.w32[offset / 4]
        }

        /// The 64-bit word at `offset` (in bounds and 8-aligned).
        pub(crate) fn word64(&self, offset: usize) -> &AtomicU64 {
            &self.w64[offset / 8]
        }
    }

    /// The futex: sleepers by word, with the ticket that a wake removes.
    struct Futex {
        sleepers: Mutex<Sleepers>,
        woken: Condvar,
    }

    #[derive(Default)]
    struct Sleepers {
        next: u64,
        /// (word address, ticket), oldest first.
        queue: Vec<(usize, u64)>,
    }

    loom::lazy_static! {
        static ref FUTEX: Futex = Futex {
            sleepers: Mutex::new(Sleepers::default()),
            woken: Condvar::new(),
        };
    }

    fn key(word: &AtomicU32) -> usize {
        std::ptr::from_ref(word) as usize
    }

    /// `FUTEX_WAIT`, as futex(2) specifies it: the load of the word, its
    /// comparison and the sleep are atomic and totally ordered with the other
    /// futex operations on that word (here: on every word, as if all hashed
    /// to one kernel bucket). The load itself is `Relaxed`: futex(2) promises
    /// no ordering with other addresses, so the model gives the waiter none
    /// that its own code does not take (Linux adds a full barrier, which
    /// would hide a missing fence on the waiter's side). A wait with a
    /// deadline times out at once if not woken by then (its deadline may
    /// always have passed); the model has no clock.
    pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
        let mut sleepers = FUTEX.sleepers.lock().unwrap();
        if word.load(Ordering::Relaxed) != expected {
            return true;
        }
        if deadline.is_some() {
            return false;
        }
        let ticket = sleepers.next;
        sleepers.next += 1;
        sleepers.queue.push((key(word), ticket));
        while sleepers.queue.iter().any(|&(_, t)| t == ticket) {
            sleepers = FUTEX.woken.wait(sleepers).unwrap();
        }
        true
    }

    /// `FUTEX_WAKE`: wakes up to `n` sleepers on `word`, oldest first.
    pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
        let mut sleepers = FUTEX.sleepers.lock().unwrap();
        let k = key(word);
        let mut left = n.max(0) as usize;
        sleepers.queue.retain(|&(w, _)| {
            let wake = w == k && left > 0;
            left -= usize::from(wake);
            !wake
        });
        drop(sleepers);
        FUTEX.woken.notify_all();
    }

    /// The queue ring's locks (robust pthread mutexes in the real build) as
    /// a spin lock on the mutex's first word: mutual exclusion with acquire
    /// and release, which is all the ring relies on. A lock with a deadline
    /// tries once. Not recursive, not robust: no protocol under the model
    /// needs either.
    pub(crate) fn mutex_init(region: &Region, offset: usize, _recursive: bool) -> io::Result<()> {
        word(region, offset).store(0, Ordering::Release);
        Ok(())
    }

    pub(crate) fn mutex_lock(
        region: &Region,
        offset: usize,
        deadline: Option<Instant>,
    ) -> io::Result<Taken> {
        loop {
            if mutex_try_lock(region, offset)? == Taken::Yes {
                return Ok(Taken::Yes);
            }
            if deadline.is_some() {
                return Ok(Taken::No);
            }
            loom::thread::yield_now();
        }
    }

    pub(crate) fn mutex_try_lock(region: &Region, offset: usize) -> io::Result<Taken> {
        let w = word(region, offset);
        Ok(
            match w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => Taken::Yes,
                Err(_) => Taken::No,
            },
        )
    }

    pub(crate) fn mutex_unlock(region: &Region, offset: usize) -> io::Result<bool> {
        let w = word(region, offset);
        Ok(
            w.compare_exchange(1, 0, Ordering::Release, Ordering::Relaxed)
                .is_ok(),
        )
    }

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "condition variables are not in the loom model",
        )
    }

    pub(crate) fn cond_init(_region: &Region, _offset: usize) -> io::Result<()> {
        Err(unsupported())
    }

    pub(crate) fn cond_wait(
        _cregion: &Region,
        _coffset: usize,
        _mregion: &Region,
        _moffset: usize,
        _deadline: Option<Instant>,
    ) -> io::Result<Taken> {
        Err(unsupported())
    }

    pub(crate) fn cond_notify(_region: &Region, _offset: usize, _all: bool) -> io::Result<()> {
        Err(unsupported())
    }

    /// The waiter-count handshake of `announce` and `anyone_waiting`
    /// (`sys/sync.rs`) as the model runs it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Handshake {
        /// The code as it is: a `SeqCst` fence on both sides.
        Fenced,
        /// The waiter's side as before the fix: `fetch_add(AcqRel)`, no fence.
        WeakWaiter,
        /// The waker's side as before the fix: `load(Acquire)`, no fence.
        WeakWaker,
    }

    thread_local! {
        // Loom runs all the threads of a model on the thread that calls
        // `loom::model`, so this is per test.
        static HANDSHAKE: Cell<Handshake> = const { Cell::new(Handshake::Fenced) };
    }

    /// Runs the handshake as `h` from now on, in this thread's models.
    pub fn set_handshake(h: Handshake) {
        HANDSHAKE.with(|c| c.set(h));
    }

    pub(crate) fn handshake() -> Handshake {
        HANDSHAKE.with(Cell::get)
    }
}
