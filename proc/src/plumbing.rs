//! What the sibling crates (mp-pool, mp-manager, mp-dummy) need from
//! mp-proc and a user does not: hidden from the docs, no stability promise.
//! One place, so that the public API is what the docs show.

pub use crate::connection::fds::wait_fds_rw;
pub use crate::function::{BoundFunction, ErasedFunction, FnPtr, StarFunction};
pub use crate::mutex::lock;
pub use crate::rt::child::{exit_request_code, is_exit_request, panic_message};
pub use crate::rt::keyfile::{FileRefusal, open_private_file};
pub use crate::spin::{deadline_after, poll_until, spin_until_ready};
pub use crate::sync::condition::wait_for_with;
pub use crate::sys::signal_fds::{SignalFd, SignalFds};
pub use crate::wire::codec::{Packed, decode_failure, is_receiving_from_parent, is_spawning};
pub use crate::wire::handle::{HandleKey, type_tag};

/// Whether the calling thread may run on more than one CPU: a waiter pinned
/// to one CPU must not spin for a peer that needs that very CPU.
pub fn several_cpus() -> bool {
    crate::sys::process::several_cpus()
}

/// The in-process primitives (locks owned by any id, waits with deadlines
/// and cancellation) that mp-dummy's thread primitives and mp-manager's
/// server are made of.
pub mod local {
    pub use crate::local::*;
}

/// mp-proc's decoders, as the fuzz targets (fuzz/) and the corpus replay
/// tests drive them.
pub mod fuzzing {
    pub use crate::fuzzing::*;
}

/// This executable's build identity (what an agent compares with its
/// parent's): equal in two processes running the same build.
///
/// ```
/// assert_eq!(mp_proc::plumbing::build_identity(), mp_proc::plumbing::build_identity());
/// ```
pub fn build_identity() -> Vec<u8> {
    crate::sys::image::build_identity()
}

/// Receives one message of `conn` and decodes it as `T` (strictly), its
/// bytes waited for no later than `deadline` (`None`: as long as it takes;
/// [`Error::Timeout`](crate::Error::Timeout) after it): a peer that sends
/// half a message does not hold the caller. The message may be as long as
/// the connection's frame limit, and 64 KiB at most. After a timeout in
/// the middle of a message the connection has lost its place: use it no
/// more.
///
/// ```
/// use std::time::{Duration, Instant};
/// use mp_proc::plumbing::{deadline_after, recv_by};
/// let (a, b) = mp_proc::pipe(true)?;
/// a.send(&7u32)?;
/// assert_eq!(recv_by::<u32>(&b, deadline_after(Duration::from_secs(5)))?, 7);
/// let r = recv_by::<u32>(&b, Some(Instant::now()));
/// assert!(matches!(r, Err(mp_proc::Error::Timeout)));
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn recv_by<T: serde::de::DeserializeOwned>(
    conn: &crate::Connection,
    deadline: Option<std::time::Instant>,
) -> crate::Result<T> {
    let max = usize::try_from(conn.max_frame_len()).unwrap_or(usize::MAX);
    let bytes = conn.recv_bytes_by(max, deadline)?;
    crate::codec::decode(&bytes)
}

/// The first IPv4 address of an interface of this host that is up and
/// running (it has a carrier: not an empty docker0 or virbr0) and not a
/// loopback (`None`: there is none), for a listener to say where it can be
/// reached.
///
/// ```
/// if let Some(ip) = mp_proc::plumbing::first_up_ipv4() {
///     assert!(!ip.is_loopback());
/// }
/// ```
pub fn first_up_ipv4() -> Option<std::net::Ipv4Addr> {
    crate::sys::process::first_up_ipv4()
}

/// The one argument that makes a copy of this executable an agent (the far
/// side of a [`Launcher`](crate::Launcher)'s link): a program that runs
/// `<its executable> AGENT_MARKER` with a link as its standard input and
/// output serves one process over it.
///
/// ```
/// assert_eq!(mp_proc::plumbing::AGENT_MARKER, "--mp-proc-remote");
/// ```
pub const AGENT_MARKER: &str = crate::rt::remote::MARKER;

/// Waits for the tries in flight of the threads that probe hosts known to
/// be down (see [`Launcher::is_down`](crate::Launcher::is_down)) and keeps
/// new tries from starting until the guard is dropped: a try holds
/// descriptors while it runs, which a test that counts this process's
/// descriptors must not see.
///
/// ```
/// let quiet = mp_proc::plumbing::hold_host_probes();
/// drop(quiet);
/// ```
pub fn hold_host_probes() -> impl Drop {
    crate::hosts::hold_probes()
}
