//! `Address`, `Listener` and `Client`: Python's `multiprocessing.connection`
//! sockets, with its handshake when a key is given.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Connection;
use super::auth::{answer_challenge_by, deliver_challenge_by};
use crate::error::{Error, OsContext, Result};
use crate::rt::dial::WireAddress;

/// How long a peer has to complete the handshake, from the moment it is
/// accepted (or starts to connect) to the last message: one deadline for
/// the whole exchange, so that a silent peer, or one that sends a byte at a
/// time, cannot hold `accept` or `connect` longer (CPython has no bound).
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
            return Err(Error::Invalid {
                what: "parse an address",
                reason: "the address is empty".into(),
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

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A server socket that hands out a [`Connection`] per client, after the
/// handshake when it has a key (Python's `Listener`).
///
/// [`accept`](Self::accept) takes the next client and runs the handshake
/// with it, as CPython's does; a server that must not wait for one client
/// before it takes the next splits the two with
/// [`accept_pending`](Self::accept_pending) and
/// [`PendingConnection::authenticate`].
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
    authkey: Option<Arc<[u8]>>,
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
            authkey: authkey.map(Arc::from),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// How long a client has to complete the handshake, counted from its
    /// accept ([`HANDSHAKE_TIMEOUT`] unless set; `Duration::MAX`: no bound).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// The bound address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a client and returns its connection: [`accept_pending`]
    /// then [`authenticate`]. A client that fails the handshake, or does not
    /// finish it within the handshake timeout, is an error (the timeout is
    /// [`Error::Timeout`]), and the listener goes on serving.
    ///
    /// [`accept_pending`]: Self::accept_pending
    /// [`authenticate`]: PendingConnection::authenticate
    pub fn accept(&self) -> Result<Connection> {
        self.accept_pending()?.authenticate()
    }

    /// Waits for a client and returns it before the handshake (the first
    /// half of [`accept`](Self::accept)): nothing is read from or written to
    /// the client, so this returns as soon as one is queued, however slow
    /// it is. Its handshake deadline starts now; run the handshake with
    /// [`PendingConnection::authenticate`], on another thread if the server
    /// must go on accepting meanwhile.
    ///
    /// An error here is accept(2)'s (e.g. `EMFILE`, or a TCP client that
    /// reset before it was taken); the listener stays usable.
    ///
    /// ```
    /// use mp_proc::connection::{Client, Listener};
    /// let l = Listener::bind("127.0.0.1:0".parse()?, Some(b"key"))?;
    /// let addr = l.address().clone();
    /// // A client that connects and says nothing.
    /// let silent = std::net::TcpStream::connect(addr.to_string())?;
    /// let good = std::thread::spawn(move || {
    ///     let c = Client::connect(&addr, Some(b"key"))?;
    ///     c.send_bytes(b"hello")
    /// });
    /// // Each handshake on a thread of its own: the silent client holds only
    /// // its own thread (until its deadline), not the accept loop.
    /// let mut handshakes = Vec::new();
    /// for _ in 0..2 {
    ///     let pending = l.accept_pending()?;
    ///     handshakes.push(std::thread::spawn(move || pending.authenticate()));
    /// }
    /// let conn = handshakes.pop().unwrap().join().unwrap()?;
    /// assert_eq!(conn.recv_bytes()?, b"hello");
    /// good.join().unwrap()?;
    /// drop(silent); // its handshake ends (an error) as it closes
    /// assert!(handshakes.pop().unwrap().join().unwrap().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_pending(&self) -> Result<PendingConnection> {
        let fd: OwnedFd = match &self.socket {
            Socket::Unix(l) => l.accept().os("accept")?.0.into(),
            Socket::Tcp(l) => {
                let (s, _) = l.accept().os("accept")?;
                let _ = s.set_nodelay(true);
                s.into()
            }
        };
        Ok(PendingConnection {
            conn: Connection::from_fd(fd, true, true),
            authkey: self.authkey.clone(),
            deadline: Instant::now().checked_add(self.handshake_timeout),
        })
    }
}

impl AsFd for Listener {
    /// The listening socket: readable when a client waits to be accepted.
    fn as_fd(&self) -> BorrowedFd<'_> {
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

/// A client accepted by [`Listener::accept_pending`] that has not passed
/// the handshake yet: the two halves of CPython's `Listener.accept()` (the
/// accept, then `deliver_challenge` and `answer_challenge`), so that a
/// server can accept on one thread and authenticate on others.
///
/// Nothing may be read or sent before [`authenticate`](Self::authenticate)
/// returns the [`Connection`]. Its descriptor ([`AsFd`]) is the client's
/// socket, for a server to wait on it or to `shutdown(2)` a duplicate of it
/// to end a handshake early (e.g. when it stops serving). Dropping it
/// closes the connection. See [`Listener::accept_pending`] for an example.
pub struct PendingConnection {
    conn: Connection,
    authkey: Option<Arc<[u8]>>,
    /// The end of the handshake's time (`None`: no bound).
    deadline: Option<Instant>,
}

impl fmt::Debug for PendingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never shown.
        f.debug_struct("PendingConnection")
            .field("conn", &self.conn)
            .field("authenticates", &self.authkey.is_some())
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl PendingConnection {
    /// Runs the handshake (when the listener has a key) and returns the
    /// connection. The whole handshake must end by the deadline set when
    /// the client was accepted (the listener's handshake timeout later):
    /// past it, whatever the client has sent, this is [`Error::Timeout`].
    /// A wrong key is [`Error::Authentication`]; a client that closes
    /// midway is [`Error::Eof`] or [`Error::TruncatedFrame`]. On an error
    /// the connection is closed.
    ///
    /// ```
    /// use mp_proc::connection::{Address, Client, Listener};
    /// let l = Listener::bind(Address::Abstract(format!("mp-doc-{}", std::process::id())), Some(b"key"))?;
    /// let addr = l.address().clone();
    /// let t = std::thread::spawn(move || Client::connect(&addr, Some(b"key")));
    /// let conn = l.accept_pending()?.authenticate()?;
    /// conn.send(&"authenticated")?;
    /// assert_eq!(t.join().unwrap()?.recv::<String>()?, "authenticated");
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn authenticate(self) -> Result<Connection> {
        let deadline = self.deadline;
        self.handshake(deadline)
    }

    /// As [`authenticate`](Self::authenticate), with `deadline` in place of
    /// the one set at accept (a server that queues its pending clients may
    /// give them less time, or more).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mp_proc::connection::Listener;
    /// let l = Listener::bind("127.0.0.1:0".parse()?, Some(b"key"))?;
    /// let silent = std::net::TcpStream::connect(l.address().to_string())?;
    /// let pending = l.accept_pending()?;
    /// let deadline = Instant::now().checked_add(Duration::from_millis(10)).expect("in range");
    /// let r = pending.authenticate_by(deadline);
    /// assert!(matches!(r, Err(mp_proc::Error::Timeout)));
    /// # drop(silent);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authenticate_by(self, deadline: Instant) -> Result<Connection> {
        self.handshake(Some(deadline))
    }

    fn handshake(self, deadline: Option<Instant>) -> Result<Connection> {
        if let Some(key) = &self.authkey {
            deliver_challenge_by(&self.conn, key, deadline)?;
            answer_challenge_by(&self.conn, key, deadline)?;
        }
        Ok(self.conn)
    }
}

impl AsFd for PendingConnection {
    /// The client's socket.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.as_fd()
    }
}

/// Connects to a [`Listener`] (Python's `Client`).
#[derive(Debug)]
pub struct Client(());

impl Client {
    /// Connects to `address`; with a key, runs CPython's handshake (the
    /// client's half first). The connect and the whole handshake must end
    /// within [`HANDSHAKE_TIMEOUT`] (then [`Error::Timeout`]), whatever the
    /// server does: a listener whose queue is full, a server that says
    /// nothing or drips its challenge a byte at a time. See [`Listener`] for
    /// an example.
    pub fn connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
        Client::connect_by(
            address,
            authkey,
            Instant::now().checked_add(HANDSHAKE_TIMEOUT),
        )
    }

    /// [`connect`](Self::connect), done by `deadline` (`None`: no bound).
    pub(crate) fn connect_by(
        address: &Address,
        authkey: Option<&[u8]>,
        deadline: Option<Instant>,
    ) -> Result<Connection> {
        let conn = Connection::from_fd(connect_stream(address, deadline)?, true, true);
        if let Some(key) = authkey {
            answer_challenge_by(&conn, key, deadline)?;
            deliver_challenge_by(&conn, key, deadline)?;
        }
        Ok(conn)
    }
}

/// A stream connected to `address` by `deadline`, before any handshake: in
/// a process on another host, over its launcher's link if the address is
/// one its parent forwards ([`Launcher::forward`](crate::Launcher::forward)),
/// else by the network.
pub(crate) fn connect_stream(address: &Address, deadline: Option<Instant>) -> Result<OwnedFd> {
    crate::rt::tunnel::stream(&WireAddress::from(address), deadline)
}

impl From<&Address> for WireAddress {
    fn from(a: &Address) -> WireAddress {
        match a {
            Address::Unix(p) => WireAddress::Unix(p.clone()),
            Address::Tcp(a) => WireAddress::Tcp(*a),
            Address::Abstract(n) => WireAddress::Abstract(n.clone()),
        }
    }
}

impl From<WireAddress> for Address {
    fn from(a: WireAddress) -> Address {
        match a {
            WireAddress::Unix(p) => Address::Unix(p),
            WireAddress::Tcp(a) => Address::Tcp(a),
            WireAddress::Abstract(n) => Address::Abstract(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::dial::connect_unix;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A server that sends the start of a challenge one byte at a time,
    /// forever (until the client is gone or `stop` is set).
    fn dripping_server(name: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let l = UnixListener::bind_addr(&a).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let bytes = [0u8, 0, 1, 0].iter().chain(b"#CHALLENGE#".iter().cycle());
            for b in bytes {
                if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }

    /// The client's handshake has one deadline too: a server that drips its
    /// challenge cannot hold `connect` past it.
    #[test]
    fn a_dripping_server_is_cut_off_at_the_clients_deadline() {
        let name = format!("mp-unit-drip-{}", std::process::id());
        let stop = Arc::new(AtomicBool::new(false));
        let server = dripping_server(&name, stop.clone());
        let deadline = Instant::now()
            .checked_add(Duration::from_millis(300))
            .expect("a deadline in range");
        let r = Client::connect_by(&Address::Abstract(name), Some(b"key"), Some(deadline));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }

    /// A listener whose queue is full makes connect(2) wait: bounded by the
    /// deadline too.
    #[test]
    fn a_full_listen_queue_is_cut_off_at_the_deadline() {
        use nix::sys::socket::{
            AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
        };
        let name = format!("mp-unit-full-{}", std::process::id());
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
        bind(l.as_raw_fd(), &addr).unwrap();
        listen(&l, Backlog::new(0).unwrap()).unwrap();
        // Fill the queue (a backlog of 0 still takes one).
        let mut queued = Vec::new();
        let r = loop {
            let deadline = Instant::now()
                .checked_add(Duration::from_millis(100))
                .expect("a deadline in range");
            match connect_unix(&addr, Some(deadline)) {
                Ok(fd) if queued.len() < 8 => queued.push(fd),
                r => break r,
            }
        };
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(!queued.is_empty());
    }
}
