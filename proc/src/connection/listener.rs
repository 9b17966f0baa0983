//! `Address`, `Listener` and `Client`: Python's `multiprocessing.connection`
//! sockets, with its handshake when a key is given.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{Connection, answer_challenge, deliver_challenge};
use crate::error::{Error, OsContext, Result};

/// How long a peer has to complete the handshake: a silent one cannot hold
/// `accept` or `connect` for ever (CPython has no bound).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a [`Listener`] listens (Python's `address` and `family`).
///
/// `FromStr` reads `host:port` as TCP, `@name` as a Linux abstract socket,
/// and anything else as a Unix socket path; `Display` writes them back.
///
/// ```
/// use mp_proc::connection::Address;
/// let a: Address = "127.0.0.1:5000".parse()?;
/// assert!(matches!(a, Address::Tcp(_)));
/// let u: Address = "/tmp/pymp-x/listener-1".parse()?;
/// assert_eq!(u.to_string(), "/tmp/pymp-x/listener-1");
/// let n: Address = "@mp-demo".parse()?;
/// assert_eq!(n, Address::Abstract("mp-demo".into()));
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix socket at a path (`AF_UNIX`).
    Unix(PathBuf),
    /// A TCP address (`AF_INET`, `AF_INET6`).
    Tcp(SocketAddr),
    /// A Linux abstract Unix socket name (CPython's `'\0name'`), with no
    /// file to clean up.
    Abstract(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if s.is_empty() {
            return Err(Error::Os {
                op: "parse an address",
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty address"),
            });
        }
        if let Some(name) = s.strip_prefix('@').or_else(|| s.strip_prefix('\0')) {
            return Ok(Address::Abstract(name.to_owned()));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(a));
        }
        if let Some((host, port)) = s.rsplit_once(':')
            && !host.contains('/')
            && let Ok(port) = port.parse::<u16>()
        {
            use std::net::ToSocketAddrs;
            if let Some(a) = (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
            {
                return Ok(Address::Tcp(a));
            }
        }
        Ok(Address::Unix(PathBuf::from(s)))
    }
}

/// Bounds (or unbounds, `None`) a socket's blocking reads and writes.
fn set_timeouts<F: AsFd>(fd: &F, d: Option<Duration>) {
    use nix::sys::socket::{setsockopt, sockopt};
    use nix::sys::time::TimeVal;
    let t = match d {
        Some(d) => TimeVal::new(d.as_secs() as _, d.subsec_micros() as _),
        None => TimeVal::new(0, 0),
    };
    let _ = setsockopt(fd, sockopt::ReceiveTimeout, &t);
    let _ = setsockopt(fd, sockopt::SendTimeout, &t);
}

/// A handshake read or write that hit the socket's time bound is
/// [`Error::Timeout`].
fn timed_out(e: Error) -> Error {
    match e {
        Error::Os { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Error::Timeout
        }
        e => e,
    }
}

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A server socket that hands out a [`Connection`] per client, after the
/// handshake when it has a key (Python's `Listener`).
///
/// ```
/// use mp_proc::connection::{Address, Client, Listener};
/// let l = Listener::bind("127.0.0.1:0".parse()?, Some(b"key"))?;
/// let addr = l.address().clone();
/// let t = std::thread::spawn(move || {
///     let c = Client::connect(&addr, Some(b"key")).unwrap();
///     c.send_bytes(b"hello").unwrap();
/// });
/// let conn = l.accept()?;
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// t.join().unwrap();
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Listener {
    socket: Socket,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never shown.
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticates", &self.authkey.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl Listener {
    /// Listens at `address` (a TCP port 0 gets a free port: see
    /// [`address`](Self::address)). With a key, every client must pass
    /// CPython's handshake.
    pub fn bind(address: Address, authkey: Option<&[u8]>) -> Result<Listener> {
        let (socket, address) = match address {
            Address::Unix(path) => {
                let l = UnixListener::bind(&path).os("bind")?;
                (Socket::Unix(l), Address::Unix(path))
            }
            Address::Abstract(name) => {
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .os("bind")?;
                let l = UnixListener::bind_addr(&a).os("bind")?;
                (Socket::Unix(l), Address::Abstract(name))
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).os("bind")?;
                let bound = l.local_addr().os("bind")?;
                (Socket::Tcp(l), Address::Tcp(bound))
            }
        };
        Ok(Listener {
            socket,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// How long a client has to complete the handshake in
    /// [`accept`](Self::accept) ([`HANDSHAKE_TIMEOUT`] unless set).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// The bound address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a client and returns its connection. A client that fails
    /// the handshake (or does not finish it within [`HANDSHAKE_TIMEOUT`]) is
    /// an error, and the listener goes on serving.
    pub fn accept(&self) -> Result<Connection> {
        let fd: OwnedFd = match &self.socket {
            Socket::Unix(l) => l.accept().os("accept")?.0.into(),
            Socket::Tcp(l) => {
                let (s, _) = l.accept().os("accept")?;
                let _ = s.set_nodelay(true);
                s.into()
            }
        };
        set_timeouts(&fd, Some(self.handshake_timeout));
        let conn = Connection::from_fd(fd, true, true);
        if let Some(key) = &self.authkey {
            deliver_challenge(&conn, key)
                .and_then(|()| answer_challenge(&conn, key))
                .map_err(timed_out)?;
        }
        set_timeouts(&conn, None);
        Ok(conn)
    }
}

impl AsFd for Listener {
    /// The listening socket: readable when a client waits to be accepted.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.socket {
            Socket::Unix(l) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        }
    }
}

impl Drop for Listener {
    /// Closes the socket and removes its file (an abstract name has none).
    fn drop(&mut self) {
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to a [`Listener`] (Python's `Client`).
#[derive(Debug)]
pub struct Client(());

impl Client {
    /// Connects to `address`; with a key, runs CPython's handshake (the
    /// client's half first). See [`Listener`] for an example.
    pub fn connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
        let fd: OwnedFd = match address {
            Address::Unix(path) => UnixStream::connect(path).os("connect")?.into(),
            Address::Abstract(name) => {
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .os("connect")?;
                UnixStream::connect_addr(&a).os("connect")?.into()
            }
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, HANDSHAKE_TIMEOUT).os("connect")?;
                let _ = s.set_nodelay(true);
                s.into()
            }
        };
        set_timeouts(&fd, Some(HANDSHAKE_TIMEOUT));
        let conn = Connection::from_fd(fd, true, true);
        if let Some(key) = authkey {
            answer_challenge(&conn, key)
                .and_then(|()| deliver_challenge(&conn, key))
                .map_err(timed_out)?;
        }
        set_timeouts(&conn, None);
        Ok(conn)
    }
}
