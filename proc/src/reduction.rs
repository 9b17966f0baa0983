//! Descriptors between running processes: Python's
//! `multiprocessing.reduction` (`send_handle`, `recv_handle`) and the
//! tickets of handles that travel where descriptors cannot.
//!
//! Every handle (a [`Connection`], the queues, the locks and other
//! primitives, [`Value`](crate::Value)/[`Array`](crate::Array),
//! [`SharedMemory`](crate::SharedMemory), a [`ShareableList`](crate::ShareableList))
//! can be sent after start:
//! - through a duplex [`Connection`] (a Unix socket), its descriptor travels
//!   with the message (`SCM_RIGHTS`);
//! - anywhere else (a [`Queue`](crate::Queue), a one-way pipe, a manager, a
//!   pool's task), it travels as a **ticket** that the receiver redeems
//!   from the sender: once, within [`ticket_lifetime`], while the sender
//!   lives. Otherwise it is [`Error::TicketUnavailable`](crate::Error::TicketUnavailable).
//!
//! Either way the handle is signed with the process tree's key and bound to
//! the very descriptor it was made for: bytes that another tree made, or
//! that name another descriptor, are an error, never a handle.
//!
//! ```
//! use mp_proc::{Error, Lock, TicketFailure, codec};
//! let lock = Lock::new()?;
//! // Encoded outside a child's args and a socket: the lock goes as a ticket.
//! let bytes = codec::encode(&lock)?;
//! let same: Lock = codec::decode(&bytes)?; // redeemed (here, from this very process)
//! let _held = same.acquire()?;
//! assert!(lock.try_acquire()?.is_none());
//! // A ticket is good for one receiver.
//! assert!(matches!(
//!     codec::decode::<Lock>(&bytes),
//!     Err(Error::TicketUnavailable { kind: "Lock", reason: TicketFailure::AlreadyRedeemed, .. })
//! ));
//! # Ok::<(), mp_proc::Error>(())
//! ```

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::connection::Connection;
use crate::error::Result;

/// The most tickets a process has outstanding at once; one more is an error
/// when the handle is encoded.
pub const MAX_TICKETS: usize = crate::rt::sharer::MAX_TICKETS;

/// Sends the descriptor `fd` (a duplicate of it) over `conn`, a duplex
/// connection, as CPython's `reduction.send_handle` does: one byte with the
/// descriptor attached, outside of the message framing. The peer takes it
/// with [`recv_handle`] (or Python's `reduction.recv_handle`).
///
/// ```
/// use std::io::{Read, Seek, Write};
/// use std::os::fd::AsFd;
/// let (a, b) = mp_proc::pipe(true)?;
/// let mut file = tempfile_like()?;
/// mp_proc::reduction::send_handle(&a, file.as_fd())?;
/// let mut received = std::fs::File::from(mp_proc::reduction::recv_handle(&b)?);
/// received.write_all(b"foo").unwrap();
/// let mut text = String::new();
/// file.rewind().unwrap();
/// file.read_to_string(&mut text).unwrap();
/// assert_eq!(text, "foo"); // the same open file
/// # fn tempfile_like() -> mp_proc::Result<std::fs::File> {
/// #     let path = std::env::temp_dir().join(format!("mp-doc-{}", std::process::id()));
/// #     let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true)
/// #         .open(&path).unwrap();
/// #     std::fs::remove_file(&path).unwrap();
/// #     Ok(f)
/// # }
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn send_handle(conn: &Connection, fd: BorrowedFd<'_>) -> Result<()> {
    conn.send_handle(fd)
}

/// Receives a descriptor sent with [`send_handle`]. A byte that came
/// without one is [`Error::DescriptorsMissing`](crate::Error::DescriptorsMissing),
/// and the connection stays usable.
///
/// ```
/// use std::io::Write;
/// let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
/// let conn = mp_proc::Connection::from_fd(ours.into(), true, true);
/// // CPython's test_missing_fd_transfer: one byte, no descriptor.
/// peer.write_all(b"\0").unwrap();
/// assert!(matches!(
///     mp_proc::reduction::recv_handle(&conn),
///     Err(mp_proc::Error::DescriptorsMissing { claimed: 1, arrived: 0 })
/// ));
/// peer.write_all(&[0, 0, 0, 1, 5]).unwrap(); // one frame: the byte 5
/// assert_eq!(conn.recv::<u8>()?, 5);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn recv_handle(conn: &Connection) -> Result<OwnedFd> {
    conn.recv_handle()
}

/// Sets how long the tickets issued from now on by this process stay
/// redeemable (default: 5 minutes). A ticket not redeemed by then is void
/// and the sender closes its copy of the descriptor.
///
/// ```
/// use std::time::Duration;
/// let before = mp_proc::reduction::ticket_lifetime();
/// mp_proc::reduction::set_ticket_lifetime(Duration::from_secs(60));
/// assert_eq!(mp_proc::reduction::ticket_lifetime(), Duration::from_secs(60));
/// # mp_proc::reduction::set_ticket_lifetime(before);
/// ```
pub fn set_ticket_lifetime(lifetime: Duration) {
    crate::rt::sharer::set_lifetime(lifetime)
}

/// How long the tickets issued from now on stay redeemable.
///
/// ```
/// assert!(mp_proc::reduction::ticket_lifetime() > std::time::Duration::ZERO);
/// ```
pub fn ticket_lifetime() -> Duration {
    crate::rt::sharer::lifetime()
}
