//! How a handle's bytes name its descriptor, wherever the handle goes: the
//! one mechanism behind every handle's `Serialize`/`Deserialize`.
//!
//! - Into a child being started (its `args`): the descriptor's index in the
//!   child's table ([`FdRef::Inherited`]); the start method moves the
//!   descriptors, and their types travel beside them.
//! - With a message on a Unix socket (`Connection::send`): the descriptor's
//!   index among those that go with the message by `SCM_RIGHTS`
//!   ([`FdRef::Attached`]), for at most `MAX_FDS` (253) descriptors of one
//!   message; the others go as tickets.
//! - Anywhere else (a `Queue`'s ring, a one-way pipe, a manager, a pool's
//!   tasks): a ticket that the receiver redeems from the sender's
//!   [`sharer`](super::sharer) ([`FdRef::Ticket`]).
//!
//! An attached or ticketed handle comes from a peer, not from a parent, so
//! its bytes are signed with the tree's [`HandleKey`] over the handle's type
//! and the identity (device, inode) of its descriptor, and the receiver
//! checks both: bytes that no holder of the key made, or made for another
//! type, are an error; so is a descriptor other than the one the handle was
//! made for (a peer that relays signed bytes with a descriptor of its own).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::rt::sharer::{self, Ticket};
use crate::sys;
use crate::wire::handle::{HandleKey, Tag};
use crate::wire::payload::{self, Way};

/// The identity of a descriptor's file: device and inode numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

/// Where a handle's descriptor is, as its bytes say.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FdRef {
    /// Index in the descriptors of a child's args.
    Inherited(u32),
    /// Index among the descriptors that came with the message.
    Attached { index: u32, id: Identity, tag: Tag },
    /// To be redeemed from the sender.
    Ticket {
        ticket: Ticket,
        id: Identity,
        tag: Tag,
    },
}

/// The signing domain of attached and ticketed descriptors.
const DOMAIN: &str = "mp descriptor";

fn identity(fd: BorrowedFd<'_>) -> std::io::Result<Identity> {
    sys::fd::identity(fd).map(|(dev, ino)| Identity { dev, ino })
}

/// The tag of a descriptor of a handle of type `ty`, of file `id`, at
/// `place` (its index in the message, or its whole ticket), for a handle
/// whose other fields encode as `body`.
fn sign(ty: u64, id: Identity, place: &[u8], body: &[u8]) -> Tag {
    let [a, b, c] = [ty, id.dev, id.ino].map(u64::to_le_bytes);
    HandleKey::process().sign(DOMAIN, &[&a, &b, &c, place, body])
}

/// Whether `tag` is [`sign`]'s for these parts (in constant time).
fn verify(ty: u64, id: Identity, place: &[u8], body: &[u8], tag: &Tag) -> bool {
    let [a, b, c] = [ty, id.dev, id.ino].map(u64::to_le_bytes);
    HandleKey::process().verify(DOMAIN, &[&a, &b, &c, place, body], tag)
}

fn ticket_place(t: &Ticket) -> Vec<u8> {
    // The ticket's own encoding (plain data: cannot fail).
    crate::wire::payload::encode(t).unwrap_or_default()
}

/// The reference a handle of kind `kind` and type `ty` writes for `fd`,
/// by the way the value being encoded travels. `body` is the encoding of
/// the handle's other fields (its name, its state): the tag covers them too,
/// so that no field of a handle from a peer can be edited.
pub(crate) fn push<E: serde::ser::Error>(
    fd: BorrowedFd<'_>,
    kind: &'static str,
    ty: u64,
    body: &[u8],
) -> Result<FdRef, E> {
    let way = payload::way();
    if way == Way::Child {
        return payload::push_fd(fd, kind, ty).map(FdRef::Inherited);
    }
    let id = identity(fd).map_err(|e| E::custom(format!("cannot fstat a {kind}: {e}")))?;
    match way {
        // Past the most one message carries, the rest go as tickets.
        Way::Message if payload::message_has_room(fd) => {
            let index = payload::push_message_fd(fd, kind)?;
            let tag = sign(ty, id, &index.to_le_bytes(), body);
            Ok(FdRef::Attached { index, id, tag })
        }
        _ => {
            let ticket = sharer::issue(fd)
                .map_err(|e| E::custom(format!("this {kind} cannot travel as a ticket: {e}")))?;
            let tag = sign(ty, id, &ticket_place(&ticket), body);
            Ok(FdRef::Ticket { ticket, id, tag })
        }
    }
}

/// The descriptor of a handle of kind `kind` and type `ty` that `r` names,
/// for a handle whose other fields encode as `body` (see [`push`]).
pub(crate) fn take<E: serde::de::Error>(
    r: FdRef,
    kind: &'static str,
    ty: u64,
    body: &[u8],
) -> Result<OwnedFd, E> {
    let (fd, id) = match r {
        FdRef::Inherited(index) => return payload::take_fd(index, kind, ty),
        FdRef::Attached { index, id, tag } => {
            if !verify(ty, id, &index.to_le_bytes(), body, &tag) {
                return Err(payload::forged(kind));
            }
            (payload::take_message_fd(index, kind)?, id)
        }
        FdRef::Ticket { ticket, id, tag } => {
            if !verify(ty, id, &ticket_place(&ticket), body, &tag) {
                return Err(payload::forged(kind));
            }
            // Issued on another host (or network namespace): no socket
            // there reaches this process, and no descriptor crosses kernels.
            if ticket.host != sharer::here() {
                return Err(payload::decode_failure_as(Error::NotAcrossHosts {
                    kind: kind.to_owned(),
                    host: format!("the sender, pid {} there", ticket.pid),
                }));
            }
            let fd = sharer::redeem(&ticket).map_err(|reason| {
                payload::decode_failure_as(Error::TicketUnavailable {
                    kind,
                    pid: ticket.pid,
                    reason,
                })
            })?;
            (fd, id)
        }
    };
    match identity(fd.as_fd()) {
        Ok(got) if got == id => Ok(fd),
        Ok(_) => Err(payload::decode_failure(format!(
            "a {kind} came with a descriptor other than the one it was made for"
        ))),
        Err(e) => Err(payload::decode_failure(format!(
            "cannot fstat the descriptor of a {kind}: {e}"
        ))),
    }
}
