//! Descriptors that signal handlers write to (wake-ups), safe against the
//! reuse of their numbers.
//!
//! A handler takes no lock, so it reads the numbers it writes to from
//! atomics. The hazard: a thread closes a descriptor just after a handler
//! read its number, a new file takes that number, and the handler's write
//! lands in that file. Here a descriptor is closed only once it has left
//! the table *and* no handler is between reading the table and its last
//! write (`busy` counts them). Entries and that count carry the pid of the
//! process that made them: a child forked since has a copy of its parent's
//! table, which names files the child does not have (or other files under
//! those numbers), and it ignores them.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;

/// An empty slot (no process has pid 0).
const FREE: u64 = 0;
/// A registration without a slot (the table was full).
const NO_SLOT: usize = usize::MAX;

fn pack(pid: u32, low: u32) -> u64 {
    (u64::from(pid) << 32) | u64::from(low)
}

fn pid_of(v: u64) -> u32 {
    (v >> 32) as u32
}

fn low_of(v: u64) -> u32 {
    v as u32
}

/// The calling thread's `errno` (async-signal-safe).
fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno` (async-signal-safe).
fn set_errno(e: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// A table of descriptors that a signal handler writes to, for up to `N`
/// of them at a time. A descriptor enters with [`register`](Self::register),
/// whose [`SignalFd`] owns it: dropping that withdraws it, waits for any
/// handler that may still write to it, and only then closes it.
///
/// ```
/// use std::io::Read;
/// static TABLE: mp_proc::plumbing::SignalFds<4> = mp_proc::plumbing::SignalFds::new();
/// let (mut r, w) = std::os::unix::net::UnixStream::pair()?;
/// let w = TABLE.register(w);
/// // What a signal handler calls (async-signal-safe):
/// TABLE.write_all(b"!");
/// let mut got = [0u8; 1];
/// r.read_exact(&mut got)?;
/// assert_eq!(&got, b"!");
/// drop(w); // out of the table, then closed
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SignalFds<const N: usize> {
    /// `pid << 32 | fd`, or [`FREE`].
    slots: [AtomicU64; N],
    /// `pid << 32 | n`: `n` handlers of process `pid` are between their
    /// first read of `slots` and their last write.
    busy: AtomicU64,
}

impl<const N: usize> Default for SignalFds<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SignalFds<N> {
    /// An empty table.
    pub const fn new() -> Self {
        SignalFds {
            slots: [const { AtomicU64::new(FREE) }; N],
            busy: AtomicU64::new(FREE),
        }
    }

    /// This process's count of handlers in [`write_all`](Self::write_all)
    /// (a count left by the parent this process was forked from is 0 here).
    fn busy(&self) -> u32 {
        let v = self.busy.load(SeqCst);
        if pid_of(v) == std::process::id() {
            low_of(v)
        } else {
            0
        }
    }

    /// One more (`up`) or one fewer handler of this process in `write_all`.
    fn count(&self, up: bool) {
        let me = std::process::id();
        let mut cur = self.busy.load(SeqCst);
        loop {
            let n = if pid_of(cur) == me { low_of(cur) } else { 0 };
            let n = if up {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
            match self
                .busy
                .compare_exchange_weak(cur, pack(me, n), SeqCst, SeqCst)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// For a signal handler: writes `bytes` to each descriptor this process
    /// has in the table, if it is ready for them (a zero-timeout `poll`, so
    /// that a full pipe does not block the handler). Async-signal-safe: it
    /// uses atomics, `getpid`, `poll` and `write`, and keeps `errno`.
    pub fn write_all(&self, bytes: &[u8]) {
        self.write_all_with(bytes, || {});
    }

    /// [`write_all`](Self::write_all), running `between` after reading each
    /// entry of this process and before writing to it (for tests: a handler
    /// interrupted there).
    fn write_all_with(&self, bytes: &[u8], between: impl Fn()) {
        let errno = errno();
        let me = std::process::id();
        self.count(true);
        for slot in &self.slots {
            let v = slot.load(SeqCst);
            if v == FREE || pid_of(v) != me {
                continue;
            }
            between();
            let fd = low_of(v) as RawFd;
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: poll(2) and write(2) are async-signal-safe; they read
            // one local `pollfd` and `bytes`. `fd` is open: it was in the
            // table after `busy` counted this call, and its owner closes it
            // only once it is out of the table and `busy` was seen at 0
            // (`SignalFd::withdraw`), which cannot be before this call ends.
            unsafe {
                if libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents & libc::POLLOUT != 0 {
                    libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                }
            }
        }
        self.count(false);
        set_errno(errno);
    }

    /// Enters `file`'s descriptor in the table for as long as the returned
    /// [`SignalFd`], which owns `file`, lives. A full table enters nothing
    /// (the handler then does not write to this one).
    pub fn register<F: AsFd>(&'static self, file: F) -> SignalFd<F, N> {
        let entry = pack(std::process::id(), file.as_fd().as_raw_fd() as u32);
        let me = std::process::id();
        let slot = (0..N).find(|&i| {
            let cur = self.slots[i].load(SeqCst);
            (cur == FREE || pid_of(cur) != me)
                && self.slots[i]
                    .compare_exchange(cur, entry, SeqCst, SeqCst)
                    .is_ok()
        });
        SignalFd {
            table: self,
            entry,
            slot: AtomicUsize::new(slot.unwrap_or(NO_SLOT)),
            file,
        }
    }

    /// Whether this process has a descriptor in the table.
    pub fn any(&self) -> bool {
        let me = std::process::id();
        self.slots.iter().any(|s| {
            let v = s.load(SeqCst);
            v != FREE && pid_of(v) == me
        })
    }
}

/// A descriptor in a [`SignalFds`] table, owned: it leaves the table, and
/// no handler writes to it any more, before it is closed.
#[derive(Debug)]
pub struct SignalFd<F: AsFd, const N: usize> {
    table: &'static SignalFds<N>,
    entry: u64,
    slot: AtomicUsize,
    file: F,
}

impl<F: AsFd, const N: usize> SignalFd<F, N> {
    /// The file.
    pub fn get(&self) -> &F {
        &self.file
    }

    /// Takes the descriptor out of the table (later calls do nothing); once
    /// this returns, no handler writes to it.
    pub fn withdraw(&self) {
        self.withdraw_with(|| {});
    }

    /// [`withdraw`](Self::withdraw), running `waiting` if it has to wait for
    /// a handler (for tests).
    fn withdraw_with(&self, waiting: impl FnOnce()) {
        let slot = self.slot.swap(NO_SLOT, SeqCst);
        if slot == NO_SLOT {
            return;
        }
        // Only our own entry (a forked child's copy may have been reused).
        let _ = self.table.slots[slot].compare_exchange(self.entry, FREE, SeqCst, SeqCst);
        // A handler that read the entry before may still be about to write
        // to it: wait until none is (a handler does not block, see
        // `write_all`, so this is short).
        if self.table.busy() != 0 {
            waiting();
            while self.table.busy() != 0 {
                std::thread::yield_now();
            }
        }
    }
}

impl<F: AsFd, const N: usize> Drop for SignalFd<F, N> {
    fn drop(&mut self) {
        self.withdraw();
        // `file` is closed after this.
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::sync::mpsc;

    use super::*;

    /// Bytes waiting in pipe `r` (nothing waits: empty).
    fn waiting(r: &File) -> Vec<u8> {
        let mut out = Vec::new();
        while crate::sys::fd::readable(r.as_fd(), Some(std::time::Duration::ZERO)).unwrap() {
            let mut buf = [0u8; 64];
            let n = (&*r).read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// A handler that read a descriptor's number and is about to write is
    /// waited for before the descriptor closes: a file that then takes the
    /// number gets nothing, and the write goes where it was meant to.
    #[test]
    fn a_handler_never_writes_into_a_file_that_took_a_closed_number() {
        static TABLE: SignalFds<2> = SignalFds::new();
        let (r, w) = crate::sys::fd::pipe().unwrap();
        let r = File::from(r);
        let registered = TABLE.register(w);
        assert!(TABLE.any());
        // The "handler": it reads the entry, then stops until released.
        let (read_tx, read_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let handler = std::thread::spawn(move || {
            TABLE.write_all_with(b"x", || {
                read_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            })
        });
        read_rx.recv().unwrap();
        // Its owner withdraws and closes it, then opens a file, which may
        // take the freed number. It says when it waits for the handler, or
        // that it is done.
        let (tx, rx) = mpsc::channel();
        let waits = tx.clone();
        let owner = std::thread::spawn(move || {
            registered.withdraw_with(|| waits.send(None).unwrap());
            drop(registered);
            let (r2, w2) = crate::sys::fd::pipe().unwrap();
            tx.send(Some((r2, w2))).unwrap();
        });
        let first = rx.recv().unwrap();
        let waited = first.is_none();
        go_tx.send(()).unwrap();
        handler.join().unwrap();
        owner.join().unwrap();
        let (r2, _w2) = match first {
            Some(new) => new,
            None => rx.recv().unwrap().unwrap(),
        };
        assert_eq!(
            waiting(&File::from(r2)),
            b"",
            "the handler wrote into another file"
        );
        assert_eq!(waiting(&r), b"x", "the handler's write went astray");
        assert!(waited, "the descriptor was closed under the handler");
        assert!(!TABLE.any());
    }

    /// A forked child's copy of the table names its parent's descriptors:
    /// entries of another pid are skipped, and reused.
    #[test]
    fn entries_of_another_process_are_ignored() {
        static TABLE: SignalFds<1> = SignalFds::new();
        let (r, w) = crate::sys::fd::pipe().unwrap();
        let r = File::from(r);
        let stale = pack(
            std::process::id().wrapping_add(1),
            w.as_fd().as_raw_fd() as u32,
        );
        TABLE.slots[0].store(stale, SeqCst);
        assert!(!TABLE.any());
        TABLE.write_all(b"x");
        assert_eq!(waiting(&r), b"");
        let registered = TABLE.register(w);
        TABLE.write_all(b"y");
        assert_eq!(waiting(&r), b"y");
        drop(registered);
        assert_eq!(TABLE.slots[0].load(SeqCst), FREE);
    }
}
