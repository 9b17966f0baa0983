//! The manager's accept loop: clients are accepted at once and
//! authenticated on threads of their own, at most [`HANDSHAKES`] at a time,
//! so that a slow or silent client holds only its own thread, and a flood
//! of them costs bounded threads and descriptors.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_proc::Connection;
use mp_proc::connection::{Listener, PendingConnection, wait_fds};

/// The most clients in the handshake at once, each on a thread of its own
/// with its socket (and a duplicate to end it with) until it passes or its
/// deadline comes. Past this many, new clients wait in the listener's queue
/// (the kernel's backlog) until a place is free.
pub(super) const HANDSHAKES: usize = 32;

/// One of the [`HANDSHAKES`] places, taken at accept and given back when
/// dropped (the handshake ended, or its thread could not start), waking the
/// accept loop if it waits for a place.
pub(super) struct Slot {
    taken: Arc<AtomicUsize>,
    freed: Connection,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.taken.fetch_sub(1, Ordering::AcqRel) == HANDSHAKES {
            let _ = self.freed.send_bytes(b"");
        }
    }
}

/// The accept loop's state: the handshakes in flight, and the pipe on
/// which an ended one wakes a loop that waits for a place.
pub(super) struct Acceptor {
    taken: Arc<AtomicUsize>,
    freed_r: Connection,
    freed_w: Connection,
}

impl Acceptor {
    pub(super) fn new() -> mp_proc::Result<Acceptor> {
        let (freed_r, freed_w) = mp_proc::pipe(false)?;
        Ok(Acceptor {
            taken: Arc::default(),
            freed_r,
            freed_w,
        })
    }

    /// Accepts clients until `stop` is readable, and gives each to `start`
    /// with its place, to authenticate on a thread of its own (and drop the
    /// place when its handshake ends). The listener is watched only while a
    /// place is free.
    pub(super) fn run(
        &self,
        listener: &Listener,
        stop: &Connection,
        mut start: impl FnMut(PendingConnection, Slot),
    ) {
        let log = mp_logging::get_logger();
        loop {
            let room = self.taken.load(Ordering::Acquire) < HANDSHAKES;
            let fds = [stop.as_fd(), self.freed_r.as_fd(), listener.as_fd()];
            let fds = if room { &fds[..] } else { &fds[..2] };
            let ready = wait_fds(fds, None).unwrap_or_default();
            if ready.contains(&0) {
                return;
            }
            if ready.contains(&1) {
                while self.freed_r.poll(Some(Duration::ZERO)).unwrap_or(false) {
                    if self.freed_r.recv_bytes().is_err() {
                        break;
                    }
                }
            }
            if ready.contains(&2) {
                match listener.accept_pending() {
                    Ok(pending) => {
                        self.taken.fetch_add(1, Ordering::AcqRel);
                        let slot = Slot {
                            taken: self.taken.clone(),
                            freed: self.freed_w.clone(),
                        };
                        start(pending, slot);
                    }
                    Err(e) => log.debug(format_args!("accept failed: {e}")),
                }
            }
        }
    }
}

/// Duplicates of the sockets of the clients being served (in their
/// handshake too), by number, to end them with: shutdown(2) through one
/// ends its client's thread, whatever the socket's family.
#[derive(Default)]
pub(super) struct Sockets(Arc<Mutex<(u64, HashMap<u64, UnixStream>)>>);

/// A client's entry in [`Sockets`], held by its thread: dropped (when the
/// thread ends, however it ends), it closes the duplicate.
pub(super) struct Registered {
    sockets: Arc<Mutex<(u64, HashMap<u64, UnixStream>)>>,
    id: u64,
}

impl Sockets {
    /// Keeps a duplicate of `fd` until the entry returned is dropped.
    pub(super) fn register(&self, fd: BorrowedFd<'_>) -> std::io::Result<Registered> {
        let dup = UnixStream::from(fd.try_clone_to_owned()?);
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        let id = s.0;
        s.1.insert(id, dup);
        Ok(Registered {
            sockets: self.0.clone(),
            id,
        })
    }

    /// Shuts down every socket registered: their threads see the end of
    /// their connections.
    pub(super) fn shutdown_all(&self) {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for socket in s.1.values() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let dup = {
            let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
            s.1.remove(&self.id)
        };
        drop(dup);
    }
}
