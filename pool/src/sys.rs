//! Signals: workers ignore SIGINT; a pool call that waits turns SIGINT into
//! [`Error::Interrupted`](crate::Error::Interrupted).
//!
//! While at least one pool call waits, and only if the program left SIGINT at
//! its default action, a handler is installed that writes one byte to the
//! wake-up pipe of every live pool (`write(2)` is async-signal-safe). Each
//! pool's scheduler then terminates its workers and fails what is pending.
//! When no call waits any more, the default action is restored.

#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Ignores SIGINT in this process (a worker).
pub(crate) fn ignore_sigint() {
    // SAFETY: SIG_IGN runs no handler code.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

const SLOTS: usize = 64;
/// Write ends of the wake-up pipes of live pools (-1: free).
static WAKE_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// How many SIGINTs the handler has seen.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// Registers a pool's wake-up fd; returns its slot.
pub(crate) fn register(fd: RawFd) -> Option<usize> {
    (0..SLOTS).find(|&i| {
        WAKE_FDS[i]
            .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

/// Unregisters a slot.
pub(crate) fn unregister(slot: usize) {
    WAKE_FDS[slot].store(-1, Ordering::Release);
}

/// The number of SIGINTs seen so far.
pub(crate) fn interrupts() -> u64 {
    INTERRUPTS.load(Ordering::Acquire)
}

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTS.fetch_add(1, Ordering::AcqRel);
    for slot in &WAKE_FDS {
        let fd = slot.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; a stale fd number at
            // worst gets one byte it ignores (pools unregister before closing).
            unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
        }
    }
}

/// Calls waiting now, and whether our handler is installed.
static WAITING: Mutex<(usize, bool)> = Mutex::new((0, false));

/// Holds SIGINT to the pools while a call waits.
pub(crate) struct WaitGuard(());

impl WaitGuard {
    pub(crate) fn new() -> WaitGuard {
        let mut w = WAITING.lock().unwrap_or_else(|p| p.into_inner());
        if w.0 == 0 {
            // SAFETY: sigaction with a plain extern "C" handler that only
            // touches atomics and calls write(2); the old action is read into
            // a zeroed struct to see whether the program changed it.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old);
                if old.sa_sigaction == libc::SIG_DFL {
                    let mut new: libc::sigaction = std::mem::zeroed();
                    new.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
                    new.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut new.sa_mask);
                    w.1 = libc::sigaction(libc::SIGINT, &new, std::ptr::null_mut()) == 0;
                }
            }
        }
        w.0 += 1;
        WaitGuard(())
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut w = WAITING.lock().unwrap_or_else(|p| p.into_inner());
        w.0 -= 1;
        if w.0 == 0 && w.1 {
            // SAFETY: restores the default action we replaced.
            unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
            w.1 = false;
        }
    }
}
