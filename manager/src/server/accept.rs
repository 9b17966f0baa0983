//! The manager's accept loop: clients are accepted at once and
//! authenticated on threads of their own, at most [`HANDSHAKES`] at a time,
//! so that a slow or silent client holds only its own thread, and a flood
//! of them costs bounded threads and descriptors.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Accepts clients until `stop` is readable, and gives each to `start`
/// with its place, to authenticate on a thread of its own (and drop the
/// place when its handshake ends). The listener is watched only while a
/// place is free.
pub(super) fn accept_clients(
    listener: &Listener,
    stop: &Connection,
    mut start: impl FnMut(PendingConnection, Slot),
) {
    let log = mp_logging::get_logger();
    // Where an ended handshake wakes a loop that waits for a place.
    let Ok((freed_r, freed_w)) = mp_proc::pipe(false) else {
        log.error("manager cannot accept: no pipe");
        return;
    };
    let taken = Arc::new(AtomicUsize::new(0));
    loop {
        let room = taken.load(Ordering::Acquire) < HANDSHAKES;
        let fds = [stop.as_fd(), freed_r.as_fd(), listener.as_fd()];
        let fds = if room { &fds[..] } else { &fds[..2] };
        let ready = wait_fds(fds, None).unwrap_or_default();
        if ready.contains(&0) {
            return;
        }
        if ready.contains(&1) {
            while freed_r.poll(Some(Duration::ZERO)).unwrap_or(false) {
                if freed_r.recv_bytes().is_err() {
                    break;
                }
            }
        }
        if ready.contains(&2) {
            match listener.accept_pending() {
                Ok(pending) => {
                    taken.fetch_add(1, Ordering::AcqRel);
                    let slot = Slot {
                        taken: taken.clone(),
                        freed: freed_w.clone(),
                    };
                    start(pending, slot);
                }
                Err(e) => log.debug(format_args!("accept failed: {e}")),
            }
        }
    }
}
