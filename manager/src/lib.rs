#![doc = include_str!("../README.md")]

mod base;
mod cluster;
mod fuzzing;
mod init;
/// What the workspace's fuzz targets and tests need and users do not:
/// hidden from the docs, no stability promise.
#[doc(hidden)]
pub mod plumbing {
    /// The manager's decoders, as the fuzz targets drive them.
    pub mod fuzzing {
        pub use crate::fuzzing::*;
    }
}
mod kinds;
mod link;
mod protocol;
#[cfg(test)]
mod protocol_props;
mod proxy;
mod served;
mod server;
mod shared_memory;
mod signals;

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_proc::connection::Address;
use mp_proc::{Payload, Process};

pub use base::{BaseManager, BaseManagerBuilder, Builtin};
pub use cluster::{ClusterBarrier, ClusterBuilder, ClusterCondition, ClusterContext, ClusterValue};
pub use init::SyncManagerBuilder;
pub use kinds::barrier::BarrierProxy;
pub use kinds::condition::ConditionProxy;
pub use kinds::dict::DictProxy;
pub use kinds::event::EventProxy;
pub use kinds::list::{ArrayProxy, ListProxy};
pub use kinds::lock::{AcquirerProxy, LockProxy, ProxyGuard, RLockProxy};
pub use kinds::namespace::NamespaceProxy;
#[cfg(feature = "pool")]
pub use kinds::pool_proxy::{PoolIter, PoolProxy, PoolResult};
pub use kinds::queue::{JoinableQueueProxy, QueueProxy};
pub use kinds::registered::BaseProxy;
pub use kinds::semaphore::{BoundedSemaphoreProxy, SemaphoreProxy};
pub use kinds::set::SetProxy;
pub use kinds::value::ValueProxy;
use link::{Link, unexpected};
/// The error of a [`PoolProxy`]'s calls: mp-pool's, as a local pool's.
#[cfg(feature = "pool")]
pub use mp_pool::Error as PoolError;
use protocol::{Kind, Reply, Request};
pub use proxy::{Proxy, Reference};
pub use served::{Args, Served, no_such_method, reply};
pub use shared_memory::SharedMemoryManager;

pub use mp_proc::Error;

/// `Result<T, mp_proc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// A running manager, as `SyncManager` and `BaseManager` hold it.
pub(crate) struct Core {
    address: Address,
    link: Arc<Link>,
    /// The server process, when this manager started it.
    process: Option<Process>,
}

impl std::fmt::Debug for Core {
    /// Never shows the authkey.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address)
            .field("owner", &self.process.is_some())
            .finish()
    }
}

impl Core {
    /// Starts a server process named `{kind}-N` listening at `address` (a
    /// fresh temp directory when `None`) and connects to it; with `init`,
    /// the server runs it first (an error if it panics).
    pub(crate) fn start(
        kind: &str,
        method: mp_proc::StartMethod,
        address: Option<&Address>,
        authkey: &[u8],
        registry: Vec<served::Registration>,
        init: Option<init::Init>,
    ) -> Result<Core> {
        Core::start_full(kind, method, address, authkey, registry, false, init)
    }

    /// As [`start`](Self::start); with `segments`, the server also makes
    /// shared memory blocks, and unlinks them when it stops (a
    /// `SharedMemoryManager`'s).
    pub(crate) fn start_serving(
        kind: &str,
        method: mp_proc::StartMethod,
        address: Option<&Address>,
        authkey: &[u8],
        registry: Vec<served::Registration>,
        segments: bool,
    ) -> Result<Core> {
        Core::start_full(kind, method, address, authkey, registry, segments, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_full(
        kind: &str,
        method: mp_proc::StartMethod,
        address: Option<&Address>,
        authkey: &[u8],
        registry: Vec<served::Registration>,
        segments: bool,
        init: Option<init::Init>,
    ) -> Result<Core> {
        let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("{kind}-{n}");
        for r in &registry {
            r.check(method)?;
        }
        // The owner's connection: made here, so trusted without a handshake;
        // the server reports on it, and ends when it ends (this process is
        // gone, however it ended, even SIGKILLed).
        let (mine, theirs) = mp_proc::pipe(true)?;
        let args = server::ServerArgs {
            owner: theirs,
            address: address.map(|a| a.to_string()),
            authkey: protocol::Bytes::from(authkey.to_vec()),
            registry,
            segments,
        };
        let initialized = init.is_some();
        let process = match init {
            None => Process::new(server::run_server, args),
            Some(init) => Process::new(init::run_server_initialized, (init, args)),
        };
        let mut process = process.name(name.clone()).start_method(method);
        process.start()?;
        if initialized {
            init::started(&name, mine.recv::<init::Initialized>(), &mut process)?;
        }
        let reported = match mine.recv::<server::Report>() {
            Ok(Ok((a, session))) => a.parse::<Address>().map(|a| (a, session)),
            Ok(Err(e)) => Err(link::remote(e)),
            Err(e) => Err(e),
        };
        let (address, session) = match reported {
            Ok(r) => r,
            Err(e) => {
                let _ = process.kill();
                let _ = process.join();
                return Err(e);
            }
        };
        let link = Link::owned(&address, authkey, session, mine);
        Ok(Core {
            address,
            link,
            process: Some(process),
        })
    }

    /// Connects to a running manager.
    pub(crate) fn connect(address: &Address, authkey: &[u8]) -> Result<Core> {
        let link = Link::to(address, authkey)?;
        link.call(&Request::Ping)?;
        Ok(Core {
            address: address.clone(),
            link,
            process: None,
        })
    }

    pub(crate) fn create(&self, kind: Kind) -> Result<Reference> {
        match self.link.call(&Request::Create(kind))? {
            Reply::Id(id) => Ok(Reference {
                link: self.link.clone(),
                id,
            }),
            r => Err(unexpected(r)),
        }
    }

    /// Stops the server process (when this one started it) and waits for it.
    pub(crate) fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        mp_logging::get_logger().info("sending shutdown message to manager");
        let sent = self.link.call(&Request::Shutdown).map(|_| ());
        let code = match process.join_timeout(Duration::from_secs(1)) {
            Ok(Some(code)) => Ok(code),
            _ => {
                let _ = process.terminate();
                process.join()
            }
        };
        sent.and(code.map(|_| ()))
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Python's `multiprocessing.Manager()`: a server process, named
/// `SyncManager-N`, listening on a Unix socket `listener-*` in a fresh
/// temporary directory `pymp-*`. Other processes connect there with the
/// authkey (CPython's handshake); the process that starts the server
/// reaches it on a socket pair it made for it, whose end also tells the
/// server that its owner is gone.
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
#[derive(Debug)]
pub struct SyncManager {
    core: Core,
}

impl SyncManager {
    /// Starts a manager process and connects to it, with
    /// `current_process().authkey()` as the key.
    pub fn start() -> Result<SyncManager> {
        SyncManager::start_with(mp_proc::get_start_method())
    }

    /// As [`start`](Self::start), with the server process started by
    /// `method` (Python's `get_context(method).Manager()`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start_with(mp_proc::StartMethod::Spawn)?;
    /// m.shutdown()?;
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn start_with(method: mp_proc::StartMethod) -> Result<SyncManager> {
        SyncManager::builder().start_method(method).start()
    }

    /// The options of a manager to start: its start method, and an
    /// initializer run in the server process before it serves (Python's
    /// `SyncManager().start(initializer, initargs)`).
    ///
    /// ```
    /// let m = mp_manager::SyncManager::builder()
    ///     .start_method(mp_proc::StartMethod::Spawn)
    ///     .start()?;
    /// m.shutdown()?;
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn builder() -> SyncManagerBuilder {
        SyncManagerBuilder::default()
    }

    /// Connects to a running manager at `address` with `authkey` (an error
    /// within the handshake's bound if nothing there answers as a manager).
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SyncManager> {
        Core::connect(address, authkey).map(|core| SyncManager { core })
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.core.address
    }

    fn create(&self, kind: Kind) -> Result<Reference> {
        self.core.create(kind)
    }

    /// A new shared `dict` (Python's `Manager().dict()`).
    pub fn dict<K: Payload + Eq + Hash, V: Payload>(&self) -> Result<DictProxy<K, V>> {
        Ok(Proxy::from_reference(self.create(Kind::Dict)?))
    }

    /// A new shared `list` (Python's `Manager().list()`).
    pub fn list<T: Payload>(&self) -> Result<ListProxy<T>> {
        Ok(Proxy::from_reference(self.create(Kind::List)?))
    }

    /// A new `Namespace` (Python's `Manager().Namespace()`).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(Proxy::from_reference(self.create(Kind::Namespace)?))
    }

    /// A new shared value (Python's `Manager().Value(typecode, v)`).
    pub fn value<T: Payload>(&self, v: T) -> Result<ValueProxy<T>> {
        let bytes = protocol::Bytes::from(mp_proc::codec::encode(&v)?);
        Ok(Proxy::from_reference(self.create(Kind::Value(bytes))?))
    }

    /// A fixed-length shared array (Python's `Manager().Array(typecode, seq)`).
    pub fn array<T: Payload>(&self, items: &[T]) -> Result<ArrayProxy<T>> {
        let items = items
            .iter()
            .map(|v| Ok(protocol::Bytes::from(mp_proc::codec::encode(v)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Proxy::from_reference(self.create(Kind::Array(items))?))
    }

    /// A new shared queue, unbounded (Python's `Manager().Queue()`).
    pub fn queue<T: Payload>(&self) -> Result<QueueProxy<T>> {
        self.queue_with_maxsize(0)
    }

    /// A new shared queue of at most `maxsize` items (0: unbounded).
    pub fn queue_with_maxsize<T: Payload>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        let kind = Kind::Queue {
            maxsize: maxsize as u64,
            joinable: false,
        };
        Ok(Proxy::from_reference(self.create(kind)?))
    }

    /// A new shared joinable queue (Python's `Manager().JoinableQueue()`).
    pub fn joinable_queue<T: Payload>(&self) -> Result<JoinableQueueProxy<T>> {
        let kind = Kind::Queue {
            maxsize: 0,
            joinable: true,
        };
        Ok(Proxy::from_reference(self.create(kind)?))
    }

    /// A new shared `Lock`.
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(Proxy::from_reference(self.create(Kind::Lock)?))
    }

    /// A new shared `RLock`.
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(Proxy::from_reference(self.create(Kind::RLock)?))
    }

    /// A new shared `Semaphore` of initial `value`.
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        let kind = Kind::Semaphore {
            value: value as u64,
            bounded: false,
        };
        Ok(Proxy::from_reference(self.create(kind)?))
    }

    /// A new shared `BoundedSemaphore` of initial (and greatest) `value`.
    pub fn bounded_semaphore(&self, value: usize) -> Result<BoundedSemaphoreProxy> {
        let kind = Kind::Semaphore {
            value: value as u64,
            bounded: true,
        };
        Ok(Proxy::from_reference(self.create(kind)?))
    }

    /// A new shared `Condition` (its lock is an `RLock`, as Python's default).
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(Proxy::from_reference(self.create(Kind::Condition)?))
    }

    /// A new shared `Event`.
    pub fn event(&self) -> Result<EventProxy> {
        Ok(Proxy::from_reference(self.create(Kind::Event)?))
    }

    /// A new shared `Barrier` for `parties` waiters, whose `wait` gives up
    /// after `timeout` (`None`: never) unless a call says otherwise.
    pub fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(Error::Invalid {
                what: "Barrier",
                reason: "a Barrier needs at least one party".into(),
            });
        }
        let kind = Kind::Barrier {
            parties: parties as u64,
            timeout,
        };
        Ok(Proxy::from_reference(self.create(kind)?))
    }

    /// A new `multiprocessing.Pool` of `processes` workers (`None`: one
    /// per CPU) in the server process, whose descendants they are, started
    /// by the server's default start method (Python's `Manager().Pool()`);
    /// an error if it cannot start. The pool ends when
    /// its last proxy is dropped, or with the server.
    ///
    /// ```
    /// fn double(x: u32) -> u32 {
    ///     2 * x
    /// }
    /// let m = mp_manager::SyncManager::start()?;
    /// let pool = m.pool(Some(2))?;
    /// assert_eq!(pool.processes()?, 2);
    /// assert_eq!(pool.map(double, [1, 2, 3])?, [2, 4, 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "pool")]
    pub fn pool(&self, processes: Option<usize>) -> Result<PoolProxy> {
        self.make_pool(processes, None)
    }

    /// As [`pool`](Self::pool), its workers started by `method` (Python's
    /// `Pool(processes, context=get_context(method))` in the server).
    ///
    /// ```
    /// fn double(x: u32) -> u32 {
    ///     2 * x
    /// }
    /// let m = mp_manager::SyncManager::start()?;
    /// let pool = m.pool_with(Some(1), mp_proc::StartMethod::Spawn)?;
    /// assert_eq!(pool.apply(double, 21)?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "pool")]
    pub fn pool_with(
        &self,
        processes: Option<usize>,
        method: mp_proc::StartMethod,
    ) -> Result<PoolProxy> {
        self.make_pool(processes, Some(method))
    }

    #[cfg(feature = "pool")]
    fn make_pool(
        &self,
        processes: Option<usize>,
        method: Option<mp_proc::StartMethod>,
    ) -> Result<PoolProxy> {
        if processes == Some(0) {
            return Err(Error::Invalid {
                what: "Pool",
                reason: "processes must be at least 1".into(),
            });
        }
        let kind = Kind::Pool {
            processes: processes.map(|n| n as u64),
            method,
        };
        let pool: PoolProxy = Proxy::from_reference(self.create(kind)?);
        // A pool that could not start says why now.
        pool.processes().map_err(|e| match e {
            mp_pool::Error::Proc(p) => Arc::try_unwrap(p.0).unwrap_or_else(|p| Error::Remote {
                message: p.to_string(),
            }),
            e => Error::Remote {
                message: format!("the manager's pool did not start: {e}"),
            },
        })?;
        Ok(pool)
    }

    /// How many objects the server holds (Python's `_number_of_objects`, a
    /// debugging aid): each lives while a proxy to it exists anywhere.
    ///
    /// ```
    /// let m = mp_manager::SyncManager::start()?;
    /// let d = m.dict::<String, u32>()?;
    /// assert_eq!(m.number_of_objects()?, 1);
    /// drop(d);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn number_of_objects(&self) -> Result<usize> {
        proxy::count(self.core.link.call(&Request::NumberOfObjects)?)
    }

    /// Stops the manager process (when this `SyncManager` started it) and
    /// waits for it; a connected one only disconnects.
    pub fn shutdown(mut self) -> Result<()> {
        self.core.stop()
    }
}
