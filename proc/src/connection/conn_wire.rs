//! A `Connection` as a handle: what its bytes are when it travels (into a
//! child's args, with a message, as a ticket), signed with its descriptor.

use std::os::fd::AsFd;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::*;

/// What a `Connection` is on the wire: where its descriptor is, and its
/// state, including bytes already read from the OS but not yet consumed.
#[derive(Serialize, Deserialize)]
struct Wire {
    fd: crate::rt::handles::FdRef,
    state: State,
}

/// A `Connection`'s state on the wire (signed with its descriptor when it
/// comes from a peer: see [`handles::push`](crate::rt::handles::push)).
#[derive(Serialize, Deserialize)]
struct State {
    readable: bool,
    writable: bool,
    max_frame: u64,
    pending: Vec<u8>,
    /// The descriptors that came with `pending`'s messages, by batch.
    pending_fds: Vec<PendingBatch>,
}

/// A batch of descriptors read with `pending` bytes: where its read ended
/// (counted from the first pending byte), its descriptors, whether some were
/// lost.
#[derive(Serialize, Deserialize)]
struct PendingBatch {
    end: u64,
    fds: Vec<crate::rt::handles::FdRef>,
    lost: bool,
}

/// The kind of the descriptors of a connection's buffered messages (errors
/// say "a {kind}").
const PENDING_FD: &str = "Connection's buffered descriptor";

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        // A reader blocked in recv holds the lock; its bytes are its own.
        // Buffered bytes take the descriptors that came with them along.
        let ty = crate::wire::handle::handle_type(PENDING_FD, 0);
        let (pending, pending_fds) = match self.inner.reader.try_lock() {
            Ok(r) => {
                let bytes = r
                    .buf
                    .get(r.start..r.end)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                let mut batches = Vec::new();
                for (end, fds, lost) in r.intake.pending(r.consumed()) {
                    let fds = fds
                        .iter()
                        .map(|fd| crate::rt::handles::push(fd.as_fd(), PENDING_FD, ty, &[]))
                        .collect::<std::result::Result<_, _>>()?;
                    batches.push(PendingBatch { end, fds, lost });
                }
                (bytes, batches)
            }
            Err(_) => (Vec::new(), Vec::new()),
        };
        let state = State {
            readable: self.inner.readable,
            writable: self.inner.writable,
            max_frame: self.max_frame_len(),
            pending,
            pending_fds,
        };
        // Signed only when it goes to a peer (a child's args are trusted).
        let body = match payload::way() {
            payload::Way::Child => Vec::new(),
            _ => payload::encode(&state).map_err(S::Error::custom)?,
        };
        let fd = crate::rt::handles::push(
            self.inner.fd.as_fd(),
            "Connection",
            crate::wire::handle::handle_type("Connection", 0),
            &body,
        )?;
        Wire { fd, state }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let Wire { fd, state } = Wire::deserialize(deserializer)?;
        let body = match fd {
            crate::rt::handles::FdRef::Inherited(_) => Vec::new(),
            _ => payload::encode(&state).map_err(D::Error::custom)?,
        };
        let fd = crate::rt::handles::take(
            fd,
            "Connection",
            crate::wire::handle::handle_type("Connection", 0),
            &body,
        )?;
        // The connection's tag, checked above, covers these references.
        let ty = crate::wire::handle::handle_type(PENDING_FD, 0);
        let mut batches = Vec::with_capacity(state.pending_fds.len().min(2));
        for batch in state.pending_fds {
            let fds = batch
                .fds
                .into_iter()
                .map(|r| crate::rt::handles::take(r, PENDING_FD, ty, &[]))
                .collect::<std::result::Result<_, _>>()?;
            batches.push((batch.end, fds, batch.lost));
        }
        let conn = Connection::from_fd(fd, state.readable, state.writable);
        conn.set_max_frame_len(state.max_frame);
        if !state.pending.is_empty() {
            let mut r = lock(&conn.inner.reader);
            let mut buf = state.pending;
            let end = buf.len();
            buf.resize(end.max(READ_BUF), 0);
            r.buf = buf.into_boxed_slice();
            r.end = end;
            r.intake = Intake::restored(end as u64, batches);
        }
        Ok(conn)
    }
}
