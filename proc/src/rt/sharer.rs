//! The sharer: the descriptors of handles that travel where descriptors
//! cannot go along (a `Queue`'s ring, a one-way pipe, a manager, a pool's
//! tasks) wait here, and the one process that redeems a handle's ticket gets
//! its descriptor by `SCM_RIGHTS` (CPython's `resource_sharer`).
//!
//! STUB: the interface only; the service is being written.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, TicketFailure};

/// The most tickets a process has outstanding at once (each holds a
/// descriptor until it is redeemed or expires).
pub(crate) const MAX_TICKETS: usize = 512;

/// What a receiver needs to redeem one descriptor from its sender. It is
/// signed by the handle that carries it (not here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket {
    /// The issuing process.
    pub(crate) pid: u32,
    /// The abstract Unix socket name of its sharer.
    pub(crate) name: String,
    /// The secret that names the descriptor there: good for one redemption.
    pub(crate) id: [u8; 16],
    /// When it expires: `CLOCK_MONOTONIC` in nanoseconds (one clock for
    /// every process of a host).
    pub(crate) expires: u64,
}

/// Keeps a duplicate of `fd` for one redemption within the lifetime.
pub(crate) fn issue(_fd: BorrowedFd<'_>) -> Result<Ticket> {
    Err(Error::NotImplemented {
        what: "tickets",
        reason: "not yet",
    })
}

/// Gets the descriptor of `ticket` from its sender.
pub(crate) fn redeem(_ticket: &Ticket) -> std::result::Result<OwnedFd, TicketFailure> {
    Err(TicketFailure::SenderGone)
}

/// Sets the lifetime of the tickets issued from now on.
pub(crate) fn set_lifetime(_lifetime: Duration) {}

/// The lifetime of the tickets issued from now on.
pub(crate) fn lifetime() -> Duration {
    Duration::from_secs(300)
}
