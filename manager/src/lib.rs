#![doc = include_str!("../README.md")]

mod link;
mod protocol;
mod proxy;
mod server;
mod signals;

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mp_proc::connection::Address;
use mp_proc::{Connection, Payload, Process};

use link::{Link, unexpected};
use protocol::{Kind, Reply, Request};
pub use proxy::{DictProxy, ListProxy, NamespaceProxy, ValueProxy};

pub use mp_proc::Error;

/// `Result<T, mp_proc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Python's `multiprocessing.Manager()`: a server process, named
/// `SyncManager-N`, listening on a Unix socket `listener-*` in a fresh
/// temporary directory `pymp-*`, reached over one authenticated connection.
///
/// The manager process started by [`start`](Self::start) is shut down by
/// [`shutdown`](Self::shutdown) or when the `SyncManager` is dropped; one
/// obtained by [`connect`](Self::connect) only disconnects.
///
/// ```
/// let m = mp_manager::SyncManager::start()?;
/// assert!(m.address().to_string().contains("pymp-"));
/// m.shutdown()?;
/// # Ok::<(), mp_manager::Error>(())
/// ```
pub struct SyncManager {
    address: Address,
    link: Arc<Link>,
    /// The server process, when this manager started it.
    process: Option<Process>,
    /// Held open while this process lives (see `start`).
    _alive: Option<Connection>,
}

impl std::fmt::Debug for SyncManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncManager")
            .field("address", &self.address)
            .field("owner", &self.process.is_some())
            .finish()
    }
}

impl SyncManager {
    /// Starts a manager process and connects to it, with
    /// `current_process().authkey()` as the key.
    pub fn start() -> Result<SyncManager> {
        let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        let (reader, writer) = mp_proc::pipe(false)?;
        // The server ends when the read end of `alive` reports end of file:
        // this process is gone, however it ended (even SIGKILLed).
        let (alive_r, alive) = mp_proc::pipe(false)?;
        let mut process =
            Process::new(server::run_server, (writer, alive_r)).name(format!("SyncManager-{n}"));
        process.start()?;
        let address = match reader.recv::<String>() {
            Ok(a) => a.parse::<Address>()?,
            Err(e) => {
                let _ = process.kill();
                let _ = process.join();
                return Err(e);
            }
        };
        let link = Link::to(&address, mp_proc::current_process().authkey())?;
        Ok(SyncManager {
            address,
            link,
            process: Some(process),
            _alive: Some(alive),
        })
    }

    /// Connects to a running manager at `address` with `authkey`.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SyncManager> {
        let link = Link::to(address, authkey)?;
        let m = SyncManager {
            address: address.clone(),
            link,
            process: None,
            _alive: None,
        };
        m.request(&Request::Ping)?;
        Ok(m)
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    fn request(&self, r: &Request) -> Result<()> {
        self.link.call(r).map(|_| ())
    }

    fn create(&self, kind: Kind) -> Result<proxy::Reference> {
        match self.link.call(&Request::Create(kind))? {
            Reply::Id(id) => Ok(proxy::Reference {
                link: self.link.clone(),
                id,
            }),
            r => Err(unexpected(r)),
        }
    }

    /// A new shared `dict` (Python's `Manager().dict()`).
    pub fn dict<K: Payload + Eq + Hash, V: Payload>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(self.create(Kind::Dict)?))
    }

    /// A new shared `list` (Python's `Manager().list()`).
    pub fn list<T: Payload>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(self.create(Kind::List)?))
    }

    /// A new `Namespace` (Python's `Manager().Namespace()`).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::new(self.create(Kind::Namespace)?))
    }

    /// A new shared value (Python's `Manager().Value(typecode, v)`).
    pub fn value<T: Payload>(&self, v: T) -> Result<ValueProxy<T>> {
        let bytes = protocol::Bytes::from(mp_proc::codec::encode(&v)?);
        Ok(ValueProxy::new(self.create(Kind::Value(bytes))?))
    }

    /// How many objects the server holds (Python's `_number_of_objects`).
    #[doc(hidden)]
    pub fn number_of_objects(&self) -> Result<usize> {
        match self.link.call(&Request::NumberOfObjects)? {
            Reply::Count(n) => Ok(n as usize),
            r => Err(unexpected(r)),
        }
    }

    /// Stops the manager process (when this `SyncManager` started it) and
    /// waits for it; a connected one only disconnects.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        mp_logging::get_logger().info("sending shutdown message to manager");
        let sent = self.request(&Request::Shutdown);
        let code = match process.join_timeout(std::time::Duration::from_secs(1)) {
            Ok(Some(code)) => Ok(code),
            _ => {
                let _ = process.terminate();
                process.join()
            }
        };
        sent.and(code.map(|_| ()))
    }
}

impl Drop for SyncManager {
    /// As [`shutdown`](Self::shutdown).
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
