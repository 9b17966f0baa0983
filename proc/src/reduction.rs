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
pub fn send_handle(conn: &Connection, fd: BorrowedFd<'_>) -> Result<()> {
    conn.send_handle(fd)
}

/// Receives a descriptor sent with [`send_handle`]. A byte that came
/// without one is [`Error::DescriptorsMissing`](crate::Error::DescriptorsMissing).
pub fn recv_handle(conn: &Connection) -> Result<OwnedFd> {
    conn.recv_handle()
}

/// Sets how long the tickets issued from now on by this process stay
/// redeemable (default: 5 minutes). A ticket not redeemed by then is void
/// and the sender closes its copy of the descriptor.
pub fn set_ticket_lifetime(lifetime: Duration) {
    crate::rt::sharer::set_lifetime(lifetime)
}

/// How long the tickets issued from now on stay redeemable.
pub fn ticket_lifetime() -> Duration {
    crate::rt::sharer::lifetime()
}
