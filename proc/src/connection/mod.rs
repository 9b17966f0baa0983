//! Connections: Python's `multiprocessing.connection`.

mod auth;
mod conn;
mod forward;
mod intake;
mod listener;

pub(crate) mod fds;
pub use crate::rt::keyfile::{
    AUTHKEY_FILE_VAR, MAX_AUTHKEY_FILE, authkey_from_env, read_authkey_file,
};
pub use auth::{answer_challenge, deliver_challenge};
pub use conn::{Connection, DEFAULT_MAX_FRAME_LEN, pipe};
pub use listener::{Address, Client, HANDSHAKE_TIMEOUT, Listener, PendingConnection};

use std::os::fd::AsFd;
use std::time::Duration;

use crate::error::{OsContext, Result};

/// Waits until at least one of `conns` has a message (or end of file) waiting,
/// or the timeout passes; returns the indices of the ready ones, in order
/// (empty after a timeout). Python's `multiprocessing.connection.wait`.
///
/// ```
/// use std::time::Duration;
/// use mp_proc::connection::wait;
/// let (a1, b1) = mp_proc::pipe(true)?;
/// let (a2, b2) = mp_proc::pipe(true)?;
/// assert!(wait(&[&b1, &b2], Some(Duration::ZERO))?.is_empty());
/// a2.send(&"ready")?;
/// assert_eq!(wait(&[&b1, &b2], None)?, [1]);
/// # drop((a1, a2));
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn wait(conns: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let buffered: Vec<usize> = (0..conns.len())
        .filter(|&i| conns[i].has_buffered())
        .collect();
    let timeout = if buffered.is_empty() {
        timeout
    } else {
        Some(Duration::ZERO)
    };
    let fds: Vec<_> = conns.iter().map(|c| c.as_fd()).collect();
    let ready = crate::sys::fd::wait_readable(&fds, timeout).os("wait")?;
    Ok((0..conns.len())
        .filter(|&i| ready[i] || buffered.contains(&i))
        .collect())
}

/// Waits until at least one of `fds` is readable (data, end of file, error)
/// or the timeout passes; returns the indices of the ready ones. For plain
/// descriptors (a pipe, a process's sentinel) next to connections: a
/// [`Connection`] may hold buffered messages its descriptor does not show, so
/// use [`wait`] or [`Connection::poll`] for those.
pub fn wait_fds(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Vec<usize>> {
    let ready = crate::sys::fd::wait_readable(fds, timeout).os("wait")?;
    Ok((0..fds.len()).filter(|&i| ready[i]).collect())
}
