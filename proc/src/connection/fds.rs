//! Waiting on descriptors for reading and writing at once (mp-pool's
//! scheduler); reached through [`crate::plumbing`].

use std::time::Duration;

use crate::error::{OsContext, Result};

/// As [`wait_fds`](crate::connection::wait_fds), also waiting for any of `write` to be writable (for a
/// caller that writes without blocking, see
/// `Connection::write_nonblocking`); returns the indices of the ready ones
/// of each list.
pub fn wait_fds_rw(
    read: &[std::os::fd::BorrowedFd<'_>],
    write: &[std::os::fd::BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let ready = crate::sys::fd::wait_ready(read, write, timeout).os("wait")?;
    let (r, w) = ready.split_at(read.len());
    let indices = |v: &[bool]| (0..v.len()).filter(|&i| v[i]).collect();
    Ok((indices(r), indices(w)))
}
