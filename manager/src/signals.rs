//! The server's signals: SIGINT is ignored (a terminal's Ctrl-C goes to the
//! whole process group; the owner decides, as in CPython), and SIGTERM ends
//! the server through its normal path, so that its socket and directory are
//! removed (`terminate()`, or a test runner ending the group).

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use mp_proc::Connection;

/// The write end of the server's stop pipe.
static STOP_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigterm(_: libc::c_int) {
    let fd = STOP_FD.load(Ordering::Acquire);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the fd stays open for the
        // life of the server loop (see `install`).
        unsafe { libc::write(fd, b"term".as_ptr().cast(), 4) };
    }
}

/// Installs the server's dispositions; `stop` must outlive the serving loop
/// (it is the loop's own stop pipe, dropped after it).
pub(crate) fn install(stop: &Connection) {
    STOP_FD.store(
        std::os::fd::AsFd::as_fd(stop).as_raw_fd(),
        Ordering::Release,
    );
    // SAFETY: SIG_IGN runs no code; the SIGTERM handler only loads an atomic
    // and calls write(2).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as usize;
        new.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaction(libc::SIGTERM, &new, std::ptr::null_mut());
    }
}

/// The stop pipe is about to close: the handler forgets it.
pub(crate) fn uninstall() {
    STOP_FD.store(-1, Ordering::Release);
}
