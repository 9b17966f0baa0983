//! `BaseManager`: a manager of registered types, local or remote.

use mp_proc::connection::Address;

use crate::protocol::Kind;
use crate::served::{Registration, Served, What};
use crate::{Core, Proxy, Result};

/// A built-in kind of object, to share under a type id with
/// [`BaseManagerBuilder::share`] (CPython's `register('get_queue',
/// callable=lambda: queue)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Builtin {
    /// A dict ([`DictProxy`](crate::DictProxy)).
    Dict,
    /// A list ([`ListProxy`](crate::ListProxy)).
    List,
    /// A namespace ([`NamespaceProxy`](crate::NamespaceProxy)).
    Namespace,
    /// A queue of at most `maxsize` items, 0 for unbounded
    /// ([`QueueProxy`](crate::QueueProxy)).
    Queue {
        /// The most items it holds (0: no limit).
        maxsize: usize,
    },
    /// A joinable queue ([`JoinableQueueProxy`](crate::JoinableQueueProxy)).
    JoinableQueue,
    /// A lock ([`LockProxy`](crate::LockProxy)).
    Lock,
    /// A reentrant lock ([`RLockProxy`](crate::RLockProxy)).
    RLock,
    /// A semaphore of this value ([`SemaphoreProxy`](crate::SemaphoreProxy)).
    Semaphore(usize),
    /// An event ([`EventProxy`](crate::EventProxy)).
    Event,
}

impl Builtin {
    fn kind(self) -> Kind {
        match self {
            Builtin::Dict => Kind::Dict,
            Builtin::List => Kind::List,
            Builtin::Namespace => Kind::Namespace,
            Builtin::Queue { maxsize } => Kind::Queue {
                maxsize: maxsize as u64,
                joinable: false,
            },
            Builtin::JoinableQueue => Kind::Queue {
                maxsize: 0,
                joinable: true,
            },
            Builtin::Lock => Kind::Lock,
            Builtin::RLock => Kind::RLock,
            Builtin::Semaphore(n) => Kind::Semaphore {
                value: n as u64,
                bounded: false,
            },
            Builtin::Event => Kind::Event,
        }
    }
}

/// Python's `BaseManager`: a server of registered types, started as a
/// process of its own ([`start`](BaseManagerBuilder::start)), served from
/// this process ([`serve_forever`](BaseManagerBuilder::serve_forever)), or
/// reached at its address ([`connect`](BaseManagerBuilder::connect)), on a
/// Unix socket or over TCP with an authkey.
///
/// ```
/// use mp_manager::{BaseManager, Builtin, QueueProxy};
///
/// fn main() -> mp_manager::Result<()> {
///     mp_proc::init();
///     let server = BaseManager::builder()
///         .tcp(0) // 127.0.0.1, any free port
///         .authkey(b"abracadabra")
///         .share("get_queue", Builtin::Queue { maxsize: 0 })
///         .start()?;
///     // Any process that knows the address and the key:
///     let client = BaseManager::builder()
///         .address(server.address().clone())
///         .authkey(b"abracadabra")
///         .connect()?;
///     let q: QueueProxy<String> = client.create("get_queue")?;
///     q.put("hello".into())?;
///     let same: QueueProxy<String> = server.create("get_queue")?;
///     assert_eq!(same.get()?, "hello");
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct BaseManager {
    core: Core,
}

/// The options of a [`BaseManager`] (Python's `BaseManager(address,
/// authkey)` and its `register` calls).
#[derive(Default)]
pub struct BaseManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    registry: Vec<Registration>,
    method: Option<mp_proc::StartMethod>,
    initializer: Option<crate::init::Initializer>,
    error: Option<crate::Error>,
}

impl std::fmt::Debug for BaseManagerBuilder {
    /// Never shows the authkey.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseManagerBuilder")
            .field("address", &self.address)
            .field("authkey", &self.authkey.as_ref().map(|_| "<hidden>"))
            .field(
                "types",
                &self
                    .registry
                    .iter()
                    .map(|r| r.typeid.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl BaseManager {
    /// The options, with Python's defaults: a Unix socket in a fresh temp
    /// directory, and `current_process().authkey()`.
    pub fn builder() -> BaseManagerBuilder {
        BaseManagerBuilder::default()
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.core.address
    }

    /// A new object of the type registered as `typeid` (the one object,
    /// for a shared type), as a proxy of type `P`: a
    /// [`BaseProxy`](crate::BaseProxy) for a [`Served`] type, the proxy of
    /// its kind for a [`Builtin`].
    pub fn create<P: Proxy>(&self, typeid: &str) -> Result<P> {
        Ok(P::from_reference(
            self.core.create(Kind::Registered(typeid.to_owned()))?,
        ))
    }

    /// Stops the server process (when this `BaseManager` started it) and
    /// waits for it; a connected one only disconnects.
    pub fn shutdown(mut self) -> Result<()> {
        self.core.stop()
    }

    /// Asks the server to stop serving, also one this manager only
    /// connected to (a [`serve_forever`](BaseManagerBuilder::serve_forever)
    /// elsewhere).
    pub fn stop_server(mut self) -> Result<()> {
        if self.core.process.is_some() {
            return self.core.stop();
        }
        self.core
            .link
            .call(&crate::protocol::Request::Shutdown)
            .map(|_| ())
    }
}

impl BaseManagerBuilder {
    /// Where the server listens, or where to connect.
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// Listen on TCP `port` of the loopback interface (0: any free port).
    /// To listen on other interfaces, give an [`address`](Self::address)
    /// such as `0.0.0.0:50000`, with an authkey.
    pub fn tcp(self, port: u16) -> Self {
        self.address(Address::Tcp(std::net::SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            port,
        ))))
    }

    /// How [`start`](Self::start) starts the server process (default:
    /// `mp_proc::get_start_method()`).
    pub fn start_method(mut self, method: mp_proc::StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` in the server process that [`start`](Self::start)
    /// starts, before it serves (Python's `BaseManager.start(initializer,
    /// initargs)`). The arguments may hold handles and proxies. If `f`
    /// panics, `start` fails with [`Error::Panicked`](crate::Error::Panicked)
    /// and no server is left running.
    ///
    /// ```
    /// use mp_manager::{BaseManager, QueueProxy};
    ///
    /// fn init(q: QueueProxy<String>) {
    ///     q.put("initialized".into()).unwrap();
    /// }
    ///
    /// let outer = mp_manager::SyncManager::start()?;
    /// let q = outer.queue::<String>()?;
    /// let m = BaseManager::builder().initializer(init, q.clone()).start()?;
    /// assert_eq!(q.get()?, "initialized");
    /// m.shutdown()?;
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn initializer<A: mp_proc::Payload>(mut self, f: fn(A), args: A) -> Self {
        self.initializer = Some(crate::init::Initializer::new(f, args));
        self
    }

    /// The key clients must prove they know (CPython's handshake).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// Registers `T` as `typeid`: each [`create`](BaseManager::create) makes
    /// a new object with `factory` in the server. `factory` and `T`'s code
    /// must be in the main executable to start the server with spawn or
    /// forkserver.
    pub fn register<T: Served>(self, typeid: &str, factory: fn() -> T) -> Self {
        self.push(Registration::of(typeid, factory, false))
    }

    /// Registers `T` as `typeid` with one object, made when the server
    /// starts, that every [`create`](BaseManager::create) returns.
    pub fn register_shared<T: Served>(self, typeid: &str, factory: fn() -> T) -> Self {
        self.push(Registration::of(typeid, factory, true))
    }

    /// Shares one object of a built-in kind as `typeid` (CPython's remote
    /// queue: `register('get_queue', callable=lambda: queue)`).
    pub fn share(self, typeid: &str, kind: Builtin) -> Self {
        self.push(Ok(Registration {
            typeid: typeid.to_owned(),
            what: What::Builtin(kind.kind()),
            shared: true,
            check_factory: None,
        }))
    }

    fn push(mut self, r: Result<Registration>) -> Self {
        match r {
            Ok(r) => {
                self.registry.retain(|x| x.typeid != r.typeid);
                self.registry.push(r);
            }
            Err(e) => self.error = self.error.or(Some(e)),
        }
        self
    }

    fn key(&self) -> Vec<u8> {
        self.authkey
            .clone()
            .unwrap_or_else(|| mp_proc::current_process().authkey().to_vec())
    }

    /// Starts the server process (named `BaseManager-N`) and connects to
    /// it; dropping the manager shuts it down.
    pub fn start(self) -> Result<BaseManager> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let key = self.key();
        let method = self.method.unwrap_or_else(mp_proc::get_start_method);
        let init = self.initializer.map(|i| i.resolve(method)).transpose()?;
        Core::start(
            "BaseManager",
            method,
            self.address.as_ref(),
            &key,
            self.registry,
            init,
        )
        .map(|core| BaseManager { core })
    }

    /// Connects to the server at the address given (an error within the
    /// handshake's bound if nothing there answers as a manager).
    pub fn connect(self) -> Result<BaseManager> {
        let Some(address) = &self.address else {
            return Err(crate::Error::Invalid {
                what: "BaseManager::connect",
                reason: "connect needs an address".into(),
            });
        };
        Core::connect(address, &self.key()).map(|core| BaseManager { core })
    }

    /// Serves from this process until a client asks for shutdown (Python's
    /// `get_server().serve_forever()`).
    pub fn serve_forever(self) -> Result<()> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let key = self.key();
        let address = self.address.as_ref().map(|a| a.to_string());
        let (dir, listener) = crate::server::listen(address.as_deref(), &key)?;
        mp_logging::get_logger().info(format_args!("manager serving at '{}'", listener.address()));
        crate::server::serve(listener, self.registry, None, false, false);
        drop(dir);
        Ok(())
    }
}
