#![doc = include_str!("../README.md")]

mod server;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mp_proc::connection::{Address, Client};
use mp_proc::{Connection, Process};
use serde::{Deserialize, Serialize};

pub use mp_proc::Error;

/// `Result<T, mp_proc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request to the manager's server (typed, never code).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Is the server there? (a round trip)
    Ping,
    /// Stop serving and exit.
    Shutdown,
}

/// The server's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Ok,
    Error(String),
}

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
    conn: Mutex<Connection>,
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
        let authkey = mp_proc::current_process().authkey().to_vec();
        let conn = Client::connect(&address, Some(&authkey))?;
        Ok(SyncManager {
            address,
            conn: Mutex::new(conn),
            process: Some(process),
            _alive: Some(alive),
        })
    }

    /// Connects to a running manager at `address` with `authkey`.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SyncManager> {
        let conn = Client::connect(address, Some(authkey))?;
        let m = SyncManager {
            address: address.clone(),
            conn: Mutex::new(conn),
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
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.send(r)?;
        match conn.recv::<Reply>()? {
            Reply::Ok => Ok(()),
            Reply::Error(e) => Err(Error::Os {
                op: "manager request",
                source: std::io::Error::other(e),
            }),
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
