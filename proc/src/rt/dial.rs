//! Dialling an address: [`WireAddress`] (an address as the runtime and the
//! link carry it; `connection::Address` is the user's) and [`network`], the
//! connect under `Client::connect` when the address is not forwarded (see
//! `rt::tunnel::stream`).

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, OsContext, Result};

/// An address (`connection::Address`'s three kinds), as the runtime keeps
/// it and the link carries it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WireAddress {
    Unix(PathBuf),
    Tcp(SocketAddr),
    Abstract(String),
}

impl fmt::Display for WireAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireAddress::Unix(p) => write!(f, "{}", p.display()),
            WireAddress::Tcp(a) => write!(f, "{a}"),
            WireAddress::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

/// A stream connected to `address` by the network, by `deadline`.
pub(crate) fn network(address: &WireAddress, deadline: Option<Instant>) -> Result<OwnedFd> {
    Ok(match address {
        WireAddress::Unix(path) => connect_unix(
            &nix::sys::socket::UnixAddr::new(path).os("connect")?,
            deadline,
        )?,
        WireAddress::Abstract(name) => connect_unix(
            &nix::sys::socket::UnixAddr::new_abstract(name.as_bytes()).os("connect")?,
            deadline,
        )?,
        WireAddress::Tcp(a) => {
            let s = match deadline {
                None => TcpStream::connect(a),
                Some(d) => TcpStream::connect_timeout(a, time_left(d)?),
            };
            let s = match s {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(Error::Timeout);
                }
                s => s.os("connect")?,
            };
            let _ = s.set_nodelay(true);
            s.into()
        }
    })
}

/// The time until `deadline`; [`Error::Timeout`] if none is left.
pub(crate) fn time_left(deadline: Instant) -> Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(Error::Timeout),
    }
}

/// A Unix stream socket connected to `addr`, by `deadline`: connect(2)
/// waits while the listener's queue is full, bounded by the socket's send
/// timeout, which is set for it (at least a microsecond: zero means no
/// bound) and cleared after.
pub(crate) fn connect_unix(
    addr: &nix::sys::socket::UnixAddr,
    deadline: Option<Instant>,
) -> Result<OwnedFd> {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socket, sockopt};
    use nix::sys::time::TimeVal;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .os("connect")?;
    let set_timeout = |d: Duration| {
        let d = d.max(Duration::from_micros(1));
        let secs = d.as_secs().min(i32::MAX as u64);
        let t = TimeVal::new(secs as _, d.subsec_micros() as _);
        setsockopt(&fd, sockopt::SendTimeout, &t).os("connect")
    };
    loop {
        if let Some(d) = deadline {
            set_timeout(time_left(d)?)?;
        }
        match nix::sys::socket::connect(fd.as_raw_fd(), addr) {
            Ok(()) => break,
            Err(Errno::EINTR) => continue,
            // The send timeout passed with the listener's queue still full.
            Err(Errno::EAGAIN) if deadline.is_some() => return Err(Error::Timeout),
            Err(e) => return Err(e).os("connect"),
        }
    }
    if deadline.is_some() {
        setsockopt(&fd, sockopt::SendTimeout, &TimeVal::new(0, 0)).os("connect")?;
    }
    Ok(fd)
}
