//! The server's signals: SIGINT is ignored (a terminal's Ctrl-C goes to the
//! whole process group; the owner decides, as in CPython), and SIGTERM ends
//! the server through its normal path, so that its socket and directory are
//! removed (`terminate()`, or a test runner ending the group).

#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use mp_proc::Connection;
use mp_proc::plumbing::{SignalFd, SignalFds};

/// What the SIGTERM handler writes to: a duplicate of the serving loop's
/// stop pipe, which mp-proc's table keeps open while a handler may write to
/// it (so a stop pipe closed meanwhile, its number taken by another file,
/// never gets the handler's bytes).
static STOP: SignalFds<1> = SignalFds::new();
/// The duplicate in `STOP` while the serving loop runs.
static INSTALLED: Mutex<Option<SignalFd<OwnedFd, 1>>> = Mutex::new(None);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOP.write_all(b"term");
}

/// Installs the server's dispositions; the handler writes to a duplicate
/// of `stop` (the serving loop's stop pipe) until [`uninstall`].
pub(crate) fn install(stop: &Connection) {
    let Ok(fd) = stop.as_fd().try_clone_to_owned() else {
        mp_logging::get_logger().error("cannot watch for SIGTERM: no descriptor left");
        return;
    };
    *INSTALLED.lock().unwrap_or_else(|p| p.into_inner()) = Some(STOP.register(fd));
    // SAFETY: SIG_IGN runs no code; the SIGTERM handler only calls
    // `SignalFds::write_all`, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as usize;
        new.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaction(libc::SIGTERM, &new, std::ptr::null_mut());
    }
}

/// The serving loop has ended: the handler forgets the stop pipe, and its
/// duplicate closes once no handler may write to it.
pub(crate) fn uninstall() {
    let installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(installed);
}
