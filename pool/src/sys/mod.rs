//! Signals: workers ignore SIGINT; a pool call that waits turns SIGINT into
//! [`Error::Interrupted`](crate::Error::Interrupted).
//!
//! The first time a pool call waits, and only if the program left SIGINT at
//! its default action, a handler is installed; it stays while a pool is
//! running (so a call costs no system call for it) and the default action is
//! restored when the last one ends. The handler, when a call waits, wakes
//! every running pool's scheduler through its eventfd (`write(2)` is
//! async-signal-safe; mp-proc's `SignalFds` keeps each eventfd open while a
//! handler may write to it), which then terminates its workers and fails
//! what is pending. When no call waits, it restores the default action and
//! raises SIGINT again: the program ends as it would have without a pool.

#![allow(unsafe_code)]

mod slots;
pub(crate) use slots::Slots;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Ignores SIGINT in this process (a worker).
pub(crate) fn ignore_sigint() {
    // SAFETY: SIG_IGN runs no handler code.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

/// The wake-up eventfds of this process's running pools. mp-proc's table
/// keeps each open until no handler may still write to it: a pool that ends
/// while a handler runs cannot have its number taken by another file that
/// the handler then writes into.
static WAKE_FDS: mp_proc::plumbing::SignalFds<64> = mp_proc::plumbing::SignalFds::new();
/// How many SIGINTs the handler has seen.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// A pool scheduler's wake-up, in the handler's table while its pool runs.
pub(crate) type Wake = mp_proc::plumbing::SignalFd<std::fs::File, 64>;

/// Takes a pool's wake-up out of the handler's table (its pool has ended);
/// the last one restores SIGINT's default action if the handler is
/// installed.
pub(crate) fn withdraw(wake: &Wake) {
    wake.withdraw();
    if !WAKE_FDS.any() {
        let mut installed = HANDLER.lock().unwrap_or_else(|p| p.into_inner());
        if *installed {
            // SAFETY: reads the current action into a zeroed struct, and
            // restores the default one in place of ours (not in place of a
            // handler the program installed since).
            unsafe {
                let mut now: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGINT, std::ptr::null(), &mut now);
                if now.sa_sigaction == on_sigint as extern "C" fn(libc::c_int) as usize {
                    libc::signal(libc::SIGINT, libc::SIG_DFL);
                }
            }
            *installed = false;
            INSTALLED.store(false, Ordering::Release);
        }
    }
}

/// The number of SIGINTs seen so far.
pub(crate) fn interrupts() -> u64 {
    INTERRUPTS.load(Ordering::Acquire)
}

extern "C" fn on_sigint(_: libc::c_int) {
    if WAITING.load(Ordering::Acquire) == 0 {
        // No call waits: what SIGINT would have done without us.
        // SAFETY: signal(2) and raise(3) are async-signal-safe; SIGINT is
        // blocked in its handler, so it is delivered, with the default
        // action, when the handler returns.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::raise(libc::SIGINT);
        }
        return;
    }
    INTERRUPTS.fetch_add(1, Ordering::AcqRel);
    // An eventfd adds the 1 it reads (async-signal-safe).
    WAKE_FDS.write_all(&1u64.to_ne_bytes());
}

/// A pool scheduler's wake-up: an eventfd (written with 8 bytes, drained by
/// a read of at least 8), which wakes the scheduler's poll(2) with a plain
/// wake-up, entered in the SIGINT handler's table. A pipe's write gives the
/// kernel a "sync" hint instead (the writer is about to sleep), which pulls
/// the scheduler, and the worker it then wakes, onto the caller's CPU, while
/// a thread pool's caller goes on running tasks there: a `ThreadPool.map`
/// was 15% slower with a pipe.
pub(crate) fn wake_fd() -> std::io::Result<Wake> {
    // SAFETY: eventfd(2) takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(WAKE_FDS.register(std::fs::File::from(owned)))
}

/// Pool calls waiting now.
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Whether our handler is installed; changed under the lock, read without
/// it on every call.
static HANDLER: Mutex<bool> = Mutex::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Holds SIGINT to the pools while a call waits.
pub(crate) struct WaitGuard(());

impl WaitGuard {
    pub(crate) fn new() -> WaitGuard {
        WAITING.fetch_add(1, Ordering::AcqRel);
        if INSTALLED.load(Ordering::Acquire) {
            return WaitGuard(());
        }
        let mut installed = HANDLER.lock().unwrap_or_else(|p| p.into_inner());
        if !*installed {
            // SAFETY: sigaction with a plain extern "C" handler that only
            // touches atomics and calls write(2), signal(2) and raise(3); the
            // old action is read into a zeroed struct to see whether the
            // program changed it.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old);
                if old.sa_sigaction == libc::SIG_DFL {
                    let mut new: libc::sigaction = std::mem::zeroed();
                    new.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
                    new.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut new.sa_mask);
                    *installed = libc::sigaction(libc::SIGINT, &new, std::ptr::null_mut()) == 0;
                    INSTALLED.store(*installed, Ordering::Release);
                }
            }
        }
        WaitGuard(())
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: one clock for every process of
/// the machine, so a worker's "my call began at" compares with its pool's
/// "now" (`Instant` hides its value).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own;
    // CLOCK_MONOTONIC always exists on Linux (the vDSO answers it).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The size of a memory page, in bytes.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// This process's `/proc/self/statm`, kept open: its resident memory costs
/// one `pread(2)` (see `PoolBuilder::max_memory_per_child`).
pub(crate) struct Statm {
    file: std::fs::File,
    page: u64,
}

impl Statm {
    pub(crate) fn open() -> Option<Statm> {
        let file = std::fs::File::open("/proc/self/statm").ok()?;
        Some(Statm {
            file,
            page: page_size(),
        })
    }

    /// The resident memory, in bytes (`None`: unreadable).
    pub(crate) fn resident(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(buf.get(..n)?).ok()?;
        let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(pages.saturating_mul(self.page))
    }
}
