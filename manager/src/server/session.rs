//! A session's side of a client connection: its place in the session,
//! given up however its thread ends, and its requests, read strictly.

use std::os::fd::AsFd;

use mp_proc::Connection;

use super::Server;
use crate::protocol::{self, Request, SessionId};

/// A connection's place in its session, given up however the connection's
/// thread ends (the client gone, a reply that cannot be sent, a panic): the
/// session's last connection gives back its references and locks. The
/// owner's connection ending without a shutdown request means the owner is
/// gone (even SIGKILLed), or can no longer be watched: the server stops.
pub(super) struct Member<'a> {
    pub(super) server: &'a Server,
    pub(super) session: SessionId,
    pub(super) owner: bool,
    /// The connection ended with a shutdown request.
    pub(super) stopping: bool,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.server.leave(self.session);
        if self.owner && !self.stopping {
            let log = mp_logging::get_logger();
            if std::thread::panicking() {
                log.error("the thread serving the manager's owner failed: exiting");
            } else {
                log.info("the manager's owner is gone: exiting");
            }
            let _ = self.server.stop.send_bytes(b"owner gone");
        }
    }
}

/// Ends a connection for its client too, however its thread ends (the
/// serving loop holds a duplicate of the socket, which would keep it open).
pub(super) struct HangUp<'a>(pub(super) &'a Connection);

impl Drop for HangUp<'_> {
    fn drop(&mut self) {
        if let Ok(fd) = self.0.as_fd().try_clone_to_owned() {
            let _ = std::os::unix::net::UnixStream::from(fd).shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Reads one connection's requests, strictly
/// ([`decode_request`](protocol::decode_request)), into buffers kept
/// between requests.
#[derive(Default)]
pub(super) struct Requests {
    frame: Vec<u8>,
    scratch: Vec<u8>,
}

impl Requests {
    /// Frames up to this size are read into the kept buffer.
    const FRAME: usize = 4096;

    pub(super) fn recv(&mut self, conn: &Connection) -> mp_proc::Result<Request> {
        self.frame.resize(Self::FRAME, 0);
        let long;
        let bytes = match conn.recv_bytes_into(&mut self.frame) {
            Ok(n) => &self.frame[..n],
            Err(mp_proc::Error::BufferTooShort(whole)) => {
                long = whole;
                &long[..]
            }
            Err(e) => return Err(e),
        };
        protocol::decode_request(bytes, &mut self.scratch)
    }
}
