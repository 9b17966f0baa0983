//! Forwarded addresses: a process on another host connects to an address
//! of its parent's network ([`Launcher::forward`]) over its launcher's link
//! instead of the network.
//!
//! Before it forks the process, the agent makes a control socket pair
//! (seqpacket) and leaves the process's end in [`FAR`], with the forwarded
//! addresses; the process (and its fork children) inherit both. A
//! [`Client::connect`](crate::connection::Client::connect) to one of the
//! addresses makes a socket pair, sends one end to the agent with the
//! address's index (`SCM_RIGHTS`), and waits for one status byte on the
//! other: 0, the connection's bytes follow; 1, a reason follows, then end
//! of file. The agent makes the end it received a new channel and asks the
//! parent to open it ([`Up::Open`]); the parent connects to the address
//! with that index in its launcher's list (never an address the far side
//! names) and answers [`Down::Opened`], then bridges the connection both
//! ways, or [`Down::OpenFailed`]. The channel carries exactly the bytes of
//! the connection: the handshake and what follows are unchanged.
//!
//! [`Launcher::forward`]: crate::Launcher::forward

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::rt::dial::{self, WireAddress};
use crate::rt::link::{Adder, Channels, Down, Up, Writer};
use crate::sys;

/// How long the parent has to connect to a forwarded address (as
/// `connection::HANDSHAKE_TIMEOUT` for a client's connect).
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Status byte: the channel is connected, its bytes follow.
const OPENED: u8 = 0;
/// Status byte: it is not, a reason follows.
const FAILED: u8 = 1;

/// In a process an agent started (and its fork children): the agent's end
/// of the control socket pair and the forwarded addresses. Set once by
/// the agent before it forks, never taken (a fork child must not find a
/// lock held).
static FAR: OnceLock<Far> = OnceLock::new();

struct Far {
    control: OwnedFd,
    addresses: Vec<WireAddress>,
}

/// The descriptor a fork child keeps at its number for [`FAR`].
pub(crate) fn inherited() -> Option<RawFd> {
    FAR.get().map(|far| far.control.as_raw_fd())
}

/// In the agent, before the fork: the control socket pair, the process's
/// end left in [`FAR`]; the agent's end, or `None` when nothing is
/// forwarded.
pub(crate) fn prepare(forward: Vec<WireAddress>) -> std::result::Result<Option<OwnedFd>, String> {
    if forward.is_empty() {
        return Ok(None);
    }
    let (agent, process) = sys::fd::socket_pair(true).map_err(|e| format!("socketpair: {e}"))?;
    let far = Far {
        control: process,
        addresses: forward,
    };
    FAR.set(far)
        .map_err(|_| "the forwarded addresses were already set".to_owned())?;
    Ok(Some(agent))
}

/// A stream connected to `address` by `deadline`, before any handshake (the
/// connect under `Client::connect`): in a process on another host, over
/// its launcher's link if the address is one its parent forwards, else by
/// the network.
pub(crate) fn stream(address: &WireAddress, deadline: Option<Instant>) -> Result<OwnedFd> {
    match connect(address, deadline) {
        Some(forwarded) => forwarded,
        None => dial::network(address, deadline),
    }
}

/// A stream socket connected to `address` through the agent, if it is a
/// forwarded address of this process: `None` if it is not (dial the
/// network).
fn connect(address: &WireAddress, deadline: Option<Instant>) -> Option<Result<OwnedFd>> {
    let far = FAR.get()?;
    let index = far.addresses.iter().position(|a| a == address)?;
    Some(open(far, address, index as u32, deadline))
}

fn open(
    far: &Far,
    address: &WireAddress,
    index: u32,
    deadline: Option<Instant>,
) -> Result<OwnedFd> {
    let failed = |reason: String| Error::Forwarded {
        address: address.to_string(),
        reason,
    };
    let (mine, theirs) = sys::fd::socket_pair(false).map_err(|e| Error::os("socketpair", e))?;
    sys::scm::send_with_fds(
        far.control.as_fd(),
        &index.to_le_bytes(),
        &[theirs.as_raw_fd()],
    )
    .map_err(|e| failed(format!("the agent of this process is gone ({e})")))?;
    drop(theirs);
    let mut status = [0u8; 1];
    if read_by(&mine, &mut status, deadline)? == 0 {
        return Err(failed(
            "the agent closed the channel (the link to the parent has ended)".into(),
        ));
    }
    if status[0] == OPENED {
        return Ok(mine);
    }
    let mut reason = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = read_by(&mine, &mut chunk, deadline)?;
        if n == 0 || reason.len() > 64 * 1024 {
            break;
        }
        reason.extend_from_slice(&chunk[..n]);
    }
    Err(failed(String::from_utf8_lossy(&reason).into_owned()))
}

/// One read, waiting at most until `deadline` ([`Error::Timeout`]).
fn read_by(fd: &OwnedFd, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
    if let Some(d) = deadline {
        let left = d.saturating_duration_since(Instant::now());
        if !sys::fd::readable(fd.as_fd(), Some(left)).map_err(|e| Error::os("poll", e))? {
            return Err(Error::Timeout);
        }
    }
    sys::fd::read(fd.as_fd(), buf).map_err(|e| Error::os("read", e))
}

/// The agent's thread that serves the process's requests on the control
/// socket: each becomes channel `next`, `next + 1`, ... (below `end`),
/// announced to the parent, until the socket or the link is gone.
pub(crate) fn serve_requests(
    control: OwnedFd,
    mut next: u32,
    end: u32,
    channels: Channels,
    link: Writer,
) {
    let mut buf = [0u8; 8];
    loop {
        let Ok((n, mut fds)) = sys::scm::recv_with_fds(control.as_fd(), &mut buf) else {
            return;
        };
        if n == 0 {
            return;
        }
        // A malformed request is dropped (its descriptor closed: the
        // process sees end of file).
        if n != 4 || fds.len() != 1 {
            continue;
        }
        let Some(fd) = fds.pop() else { continue };
        let fd = Arc::new(fd);
        let address = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if next >= end || !channels.insert(next, fd.clone()) {
            refuse(&fd, "no channel left on the link");
            continue;
        }
        if link.send(&Up::Open { ch: next, address }).is_err() {
            return;
        }
        next += 1;
    }
}

/// The agent: the parent connected channel `ch` (or could not): the
/// process is told, and its bytes are pumped from now on.
pub(crate) fn answered(message: Down, channels: &Channels, adder: &Adder) {
    match message {
        Down::Opened { ch } => {
            if let Some(fd) = channels.get(ch) {
                // A process that gave up waiting has closed its end: the
                // pump then reads end of file, and the parent is told.
                let _ = sys::fd::write_all(fd.as_fd(), &[OPENED], true);
                adder.add(ch, fd);
            }
        }
        Down::OpenFailed { ch, reason } => {
            if let Some(fd) = channels.remove(ch) {
                refuse(&fd, &reason);
            }
        }
        _ => {}
    }
}

/// Tells the process its connection failed, and why.
fn refuse(fd: &OwnedFd, reason: &str) {
    let _ = sys::fd::write_all(fd.as_fd(), &[FAILED], true)
        .and_then(|()| sys::fd::write_all(fd.as_fd(), reason.as_bytes(), true));
}

/// The parent's side of a process's forwarded addresses.
#[derive(Clone)]
pub(crate) struct Forwarding {
    pub(crate) addresses: Arc<[WireAddress]>,
    pub(crate) channels: Channels,
    pub(crate) adder: Adder,
    pub(crate) link: Writer,
}

impl Forwarding {
    /// The agent asks for channel `ch` to forwarded address number
    /// `index`: connect to it (on a thread of its own: a connect may take
    /// time), then bridge it, or say why not.
    pub(crate) fn open(&self, ch: u32, index: u32) {
        let Some(address) = self.addresses.get(index as usize).cloned() else {
            let _ = self.link.send(&Down::OpenFailed {
                ch,
                reason: format!("no forwarded address number {index}"),
            });
            return;
        };
        if self.channels.contains(ch) {
            let _ = self.link.send(&Down::OpenFailed {
                ch,
                reason: format!("channel {ch} is in use"),
            });
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("mp-link-open".into())
            .spawn(move || this.connect(ch, &address));
        if let Err(e) = spawned {
            let _ = self.link.send(&Down::OpenFailed {
                ch,
                reason: format!("cannot start a thread: {e}"),
            });
        }
    }

    fn connect(&self, ch: u32, address: &WireAddress) {
        // This process may itself be on another host, its parent
        // forwarding the address: then the connection goes on up.
        let deadline = crate::spin::deadline_after(OPEN_TIMEOUT);
        let fd = match stream(address, deadline) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let _ = self.link.send(&Down::OpenFailed {
                    ch,
                    reason: format!("the parent cannot connect to {address}: {e}"),
                });
                return;
            }
        };
        // Known before the agent hears of it (the process writes only
        // after), pumped after (its bytes follow `Opened` on the link).
        if !self.channels.insert(ch, fd.clone()) {
            let _ = self.link.send(&Down::OpenFailed {
                ch,
                reason: "the link has ended".into(),
            });
            return;
        }
        if self.link.send(&Down::Opened { ch }).is_ok() {
            self.adder.add(ch, fd);
        }
    }
}
