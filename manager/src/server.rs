//! The manager's server: a listener, a thread per client connection,
//! sessions that own references and locks, and the object table.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use mp_proc::Connection;
use mp_proc::connection::{Address, Listener};
use serde::{Deserialize, Serialize};

use crate::kinds::registered::{Registered, quietly};
use crate::kinds::{
    self, barrier, dict, event, list, lock, namespace, queue, semaphore, set, value,
};
use crate::protocol::{Bytes, Failure, Kind, Reply, Request, SessionId};
use crate::served::{Maker, Registration, What};
use crate::shared_memory::Segments;

mod accept;
pub(crate) mod object;
mod session;
use object::{Call, Object, dispatch};
use session::{HangUp, Member, Requests};

struct Entry {
    refs: usize,
    /// References lent to proxies in transit to another process.
    lent: usize,
    object: Arc<dyn Object>,
}

/// The objects, by id.
type Table = RwLock<HashMap<u64, Entry>>;

/// One fewer reference to object `id`; the last frees it, after the
/// table's lock is let go (the object may hold pins, whose drop takes it).
fn decref(table: &Table, id: u64) {
    let freed = {
        let mut t = table.write().unwrap_or_else(|p| p.into_inner());
        match t.get_mut(&id) {
            Some(e) if e.refs > 1 => {
                e.refs -= 1;
                None
            }
            Some(_) => t.remove(&id),
            None => None,
        }
    };
    drop(freed);
}

/// A reference held by a value stored in a container of the server (a
/// proxy in a dict's value): the object lives while the value is kept,
/// and the reference is given back when the value is dropped (removed,
/// overwritten, or its container freed).
pub(crate) struct Pin {
    table: Weak<Table>,
    id: u64,
    /// Its value goes to a client in a reply: the reference is lent to
    /// the proxy in it (which the client adopts) instead of given back.
    pub(crate) lend: bool,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let Some(table) = self.table.upgrade() else {
            return;
        };
        if self.lend {
            let mut t = table.write().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = t.get_mut(&self.id) {
                e.lent += 1;
                return;
            }
        }
        decref(&table, self.id);
    }
}

/// A registered type in the server.
struct Type {
    /// A user type's maker and factory; `None` for a built-in kind.
    make: Option<(Maker, Bytes)>,
    builtin: Option<Kind>,
    /// The one object of a shared type.
    instance: Option<u64>,
}

/// A session's references: how many each object has from it.
type Held = Arc<Mutex<HashMap<u64, usize>>>;

/// A client process: its references (by object) and its connections.
struct Session {
    conns: usize,
    held: Held,
}

/// The server's state: the table's lock is held only to find, add or
/// count; each object has its own lock, so clients of different objects
/// never wait on each other.
struct Server {
    table: Arc<Table>,
    next: AtomicU64,
    sessions: Mutex<HashMap<SessionId, Session>>,
    types: HashMap<String, Type>,
    /// Written to end the serving loop (a shutdown request).
    stop: Connection,
    /// The shared memory blocks made here (a `SharedMemoryManager`'s
    /// server), unlinked when serving stops.
    segments: Option<Segments>,
    /// Every pool made here, for the server's end to reach each one.
    #[cfg(feature = "pool")]
    pools: kinds::pool::Pools,
}

fn failure(message: impl Into<String>) -> Reply {
    Reply::Fail(Failure::Remote(message.into()))
}

fn freed(id: u64) -> Reply {
    failure(format!("no object {id}: it was freed, or never existed"))
}

impl Server {
    fn insert(&self, object: Arc<dyn Object>, refs: usize) -> u64 {
        #[cfg(feature = "pool")]
        self.pools.note(&object);
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Entry {
                    refs,
                    lent: 0,
                    object,
                },
            );
        id
    }

    /// A new object of `kind` (the one object of a shared registered type),
    /// with one reference for the caller.
    fn create(&self, kind: Kind) -> Result<u64, Reply> {
        if let Kind::Registered(typeid) = &kind {
            let t = self
                .types
                .get(typeid)
                .ok_or_else(|| failure(format!("no type {typeid:?} is registered")))?;
            if let Some(id) = t.instance {
                self.entry(id, |e| e.refs += 1);
                return Ok(id);
            }
            let object = make(t, typeid).map_err(|e| failure(e.to_string()))?;
            return Ok(self.insert(object, 1));
        }
        if let Kind::ConditionOver(lock) = kind {
            let object = self.get(lock).ok_or_else(|| freed(lock))?;
            let object = kinds::condition::over(object).map_err(failure)?;
            return Ok(self.insert(object, 1));
        }
        match kinds::make(kind) {
            Ok(o) => Ok(self.insert(o, 1)),
            Err(why) => Err(failure(why)),
        }
    }

    /// Runs `f` on object `id`'s entry; false if there is no such object.
    fn entry(&self, id: u64, f: impl FnOnce(&mut Entry)) -> bool {
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        t.get_mut(&id).map(f).is_some()
    }

    fn decref(&self, id: u64) {
        decref(&self.table, id);
    }

    /// Pins for the values a request stores, each holding the references
    /// lent to it: a lent reference is taken over (or, none left to take, a
    /// new one is counted, as an `Adopt` does); an id of no object gets none.
    /// In reverse order, for [`Call::next_pins`] to pop.
    fn pin(&self, values: Vec<Vec<u64>>) -> Vec<Vec<Pin>> {
        let mut pins: Vec<Vec<Pin>> = values
            .into_iter()
            .map(|ids| {
                ids.into_iter()
                    .filter(|&id| {
                        self.entry(id, |e| match e.lent {
                            0 => e.refs += 1,
                            _ => e.lent -= 1,
                        })
                    })
                    .map(|id| Pin {
                        table: Arc::downgrade(&self.table),
                        id,
                        lend: false,
                    })
                    .collect()
            })
            .collect();
        pins.reverse();
        pins
    }

    fn get(&self, id: u64) -> Option<Arc<dyn Object>> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|e| e.object.clone())
    }

    /// Joins session `id`, or opens a new one under a fresh random id.
    fn join(&self, id: Option<SessionId>) -> Option<(SessionId, Held)> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let id = match id {
            Some(id) => id,
            None => {
                let id = loop {
                    let mut random = [0u8; 16];
                    if let Err(e) = getrandom::fill(&mut random) {
                        mp_logging::get_logger().error(format_args!("no random session id: {e}"));
                        return None;
                    }
                    let id = SessionId::from_ne_bytes(random);
                    if !sessions.contains_key(&id) {
                        break id;
                    }
                };
                sessions.insert(
                    id,
                    Session {
                        conns: 0,
                        held: Arc::default(),
                    },
                );
                id
            }
        };
        let s = sessions.get_mut(&id)?;
        s.conns += 1;
        Some((id, s.held.clone()))
    }

    /// A connection of session `id` ended; the last one gives back the
    /// session's references and locks (its process is gone).
    fn leave(&self, id: SessionId) {
        let ended = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            match sessions.get_mut(&id) {
                Some(s) if s.conns > 1 => {
                    s.conns -= 1;
                    None
                }
                Some(_) => sessions.remove(&id),
                None => None,
            }
        };
        let Some(session) = ended else { return };
        self.release_locks(id);
        let held = std::mem::take(&mut *session.held.lock().unwrap_or_else(|p| p.into_inner()));
        for (object, n) in held {
            for _ in 0..n {
                self.decref(object);
            }
        }
    }
}

impl Server {
    /// The objects the server holds now.
    fn objects(&self) -> Vec<Arc<dyn Object>> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.object.clone())
            .collect()
    }

    /// Releases what the threads of session `id` hold (its locks).
    fn release_locks(&self, id: SessionId) {
        for o in self.objects() {
            o.release_session(id);
        }
    }
}

/// A new object of a registered type (a panicking factory is an error).
fn make(t: &Type, typeid: &str) -> crate::Result<Arc<dyn Object>> {
    if let Some(kind) = &t.builtin {
        return kinds::make(kind.clone()).map_err(crate::link::remote);
    }
    let Some((make, factory)) = &t.make else {
        return Err(crate::link::remote(format!("{typeid:?} has no factory")));
    };
    match quietly(|| make(factory.clone())) {
        Ok(served) => served.map(|s| Arc::new(Registered::new(s)) as Arc<dyn Object>),
        Err(p) => Err(crate::link::remote(format!(
            "the factory of {typeid:?} panicked: {}",
            mp_proc::plumbing::panic_message(&*p)
        ))),
    }
}

/// What a server process is started with.
#[derive(Serialize, Deserialize)]
pub(crate) struct ServerArgs {
    /// The owner's connection, already trusted (the owner made it): the
    /// address (or why there is none) goes back on it, it is the owner's
    /// first connection, and its end means the owner is gone.
    pub(crate) owner: Connection,
    /// Where to listen; `None`: a Unix socket in a fresh temp directory.
    pub(crate) address: Option<String>,
    pub(crate) authkey: Bytes,
    pub(crate) registry: Vec<Registration>,
    /// Whether the server makes shared memory blocks (and unlinks them
    /// when it stops).
    pub(crate) segments: bool,
}

/// What the owner reads first: the address and its session, or an error.
pub(crate) type Report = std::result::Result<(String, SessionId), String>;

/// The target of a manager process: listens, tells the owner the address
/// (or why it could not), and serves until shut down or until its owner is
/// gone.
pub(crate) fn run_server(args: ServerArgs) {
    let log = mp_logging::get_logger();
    let (dir, listener) = match listen(args.address.as_deref(), &args.authkey) {
        Ok(l) => l,
        Err(e) => {
            log.error(format_args!("manager cannot listen: {e}"));
            let _ = args.owner.send(&Report::Err(e.to_string()));
            return;
        }
    };
    log.info(format_args!("manager serving at '{}'", listener.address()));
    serve(
        listener,
        args.registry,
        Some(args.owner),
        true,
        args.segments,
    );
    log.info("manager exiting with exitcode 0");
    drop(dir); // after the listener (which removes the socket)
}

/// Binds the listener: at `address`, or on a Unix socket `listener-*` in a
/// fresh temp directory `pymp-*` (mode 0700), which is returned too.
pub(crate) fn listen(
    address: Option<&str>,
    authkey: &[u8],
) -> crate::Result<(Option<tempfile::TempDir>, Listener)> {
    let os = |op, e| mp_proc::Error::Os { op, source: e };
    if let Some(a) = address {
        let address: Address = a.parse()?;
        return Ok((None, Listener::bind(address, Some(authkey))?));
    }
    let dir = tempfile::Builder::new()
        .prefix("pymp-")
        .rand_bytes(8)
        .tempdir()
        .map_err(|e| os("mkdtemp", e))?;
    // Only this user may reach the socket (CPython's pymp- directories are
    // 0700 too).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| os("chmod", e))?;
    mp_logging::get_logger().info(format_args!(
        "created temp directory {}",
        dir.path().display()
    ));
    // The bind's own error, kept whole (tempfile sees only its kind, to
    // try another name if the path exists).
    let mut refused = None;
    let named = tempfile::Builder::new()
        .prefix("listener-")
        .rand_bytes(8)
        .make_in(dir.path(), |path| {
            Listener::bind(Address::Unix(path.to_path_buf()), Some(authkey)).map_err(|e| {
                let kind = match &e {
                    mp_proc::Error::Os { source, .. } => source.kind(),
                    _ => std::io::ErrorKind::Other,
                };
                refused = Some(e);
                std::io::Error::from(kind)
            })
        });
    let named = match named {
        Ok(named) => named,
        Err(e) => return Err(refused.unwrap_or_else(|| os("bind", e))),
    };
    // The listener removes its socket file itself.
    let (listener, path) = named.into_parts();
    let _ = path.keep();
    Ok((Some(dir), listener))
}

/// A client for a thread of its own: the owner's connection (trusted, with
/// its session), or one accepted and still to authenticate, with its place.
enum Arrival {
    Owner(Connection, (SessionId, Held)),
    Pending(mp_proc::connection::PendingConnection, accept::Slot),
}

/// Serves clients, each on a thread of its own, until a shutdown request
/// (or SIGTERM, with `signals`), or until the `owner`'s connection ends.
/// Clients are accepted at once and authenticated on their own threads (at
/// most [`accept::HANDSHAKES`] at a time), so a slow one holds only its own.
/// With `segments`, it makes shared memory blocks for its clients, and
/// unlinks them when it stops, however it stops.
pub(crate) fn serve(
    listener: Listener,
    registry: Vec<Registration>,
    owner: Option<Connection>,
    signals: bool,
    segments: bool,
) {
    let log = mp_logging::get_logger();
    let Ok((stop_r, stop_w)) = mp_proc::pipe(false) else {
        return;
    };
    let Ok(acceptor) = accept::Acceptor::new() else {
        return;
    };
    if signals {
        crate::signals::install(&stop_w);
    }
    let mut server = Server {
        table: Arc::default(),
        next: AtomicU64::new(0),
        sessions: Mutex::default(),
        types: HashMap::new(),
        stop: stop_w,
        segments: segments.then(Segments::default),
        #[cfg(feature = "pool")]
        pools: kinds::pool::Pools::default(),
    };
    for r in registry {
        let mut t = Type {
            make: None,
            builtin: None,
            instance: None,
        };
        match r.what {
            What::Served { make, factory } => match make.get() {
                Ok(m) => t.make = Some((m, factory)),
                Err(e) => {
                    log.error(format_args!("cannot register {:?}: {e}", r.typeid));
                    continue;
                }
            },
            What::Builtin(kind) => t.builtin = Some(kind),
        }
        if r.shared {
            match make(&t, &r.typeid) {
                // The server holds the one reference that keeps it.
                Ok(o) => t.instance = Some(server.insert(o, 1)),
                Err(e) => {
                    log.error(format_args!("cannot make {:?}: {e}", r.typeid));
                    continue;
                }
            }
        }
        server.types.insert(r.typeid, t);
    }
    let server = Arc::new(server);
    // Each client's thread, and a duplicate of its socket: shutdown(2)
    // through it ends the thread when serving stops (any socket family), in
    // its handshake too. A thread closes its duplicate when it ends.
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let sockets = accept::Sockets::default();
    let mut add = |arrival: Arrival| {
        threads.retain(|t| !t.is_finished());
        let fd = match &arrival {
            Arrival::Owner(conn, _) => conn.as_fd(),
            Arrival::Pending(p, _) => p.as_fd(),
        };
        let Ok(socket) = sockets.register(fd) else {
            return;
        };
        let server = server.clone();
        let run = move || match arrival {
            Arrival::Owner(conn, owner) => {
                let _socket = socket;
                serve_client(conn, &server, Some(owner));
            }
            Arrival::Pending(pending, slot) => match pending.authenticate() {
                Ok(conn) => {
                    drop(slot);
                    let _socket = socket;
                    serve_client(conn, &server, None);
                }
                Err(e) => {
                    // Its descriptors are closed before its place is free.
                    drop(socket);
                    drop(slot);
                    mp_logging::get_logger().debug(format_args!("refused a client: {e}"));
                }
            },
        };
        // A thread that cannot start drops its client (and gives back its
        // place): the server goes on.
        match std::thread::Builder::new().spawn(run) {
            Ok(thread) => threads.push(thread),
            Err(e) => log.error(format_args!("no thread for a client: {e}")),
        }
    };
    if let Some(conn) = owner {
        let Some((session, held)) = server.join(None) else {
            return;
        };
        let report = Report::Ok((listener.address().to_string(), session));
        if conn.send(&report).is_err() {
            return;
        }
        add(Arrival::Owner(conn, (session, held)));
    }
    acceptor.run(&listener, &stop_r, |pending, slot| {
        add(Arrival::Pending(pending, slot))
    });
    // Stopped (a shutdown request unlinked them already; the owner gone,
    // SIGTERM): the blocks go first, while SIGTERM only writes to the stop
    // pipe.
    if let Some(segments) = &server.segments {
        segments.unlink_all();
    }
    // No pool worker outlives the server (before SIGTERM's default action
    // is back: a server killed now would leave them behind), those of pools
    // held only by a running call too.
    #[cfg(feature = "pool")]
    kinds::pool::terminate_all(server.pools.live());
    if signals {
        crate::signals::uninstall();
    }
    // Ends every client's connection. Served from a longer-lived process
    // (`serve_forever`, not a server process about to exit), also waits for
    // each client's thread (a waiting call notices within its check
    // interval), so that nothing is left behind.
    sockets.shutdown_all();
    if !signals {
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Serves one client connection until it ends, then ends it for the client
/// too. The owner's connection comes with its session.
fn serve_client(conn: Connection, server: &Server, owner: Option<(SessionId, Held)>) {
    let _hang_up = HangUp(&conn);
    match owner {
        None => serve_connection(&conn, server),
        Some((session, held)) => {
            let mut member = Member {
                server,
                session,
                owner: true,
                stopping: false,
            };
            member.stopping = serve_session(&conn, server, session, &held);
        }
    }
}

fn serve_connection(conn: &Connection, server: &Server) {
    // The first request joins a session.
    let (session, held) = match Requests::default().recv(conn) {
        Ok(Request::Hello(id)) => match server.join(id) {
            Some(s) => s,
            None => {
                let reply =
                    failure("no such session (only the process that opened a session joins it)");
                let _ = conn.send(&reply);
                return;
            }
        },
        _ => {
            let _ = conn.send(&failure("the first request must be Hello"));
            return;
        }
    };
    let _member = Member {
        server,
        session,
        owner: false,
        stopping: false,
    };
    if conn.send(&Reply::Session(session)).is_ok() {
        serve_session(conn, server, session, &held);
    }
}

/// Serves requests until the connection ends; true if it ended with a
/// shutdown request.
fn serve_session(
    conn: &Connection,
    server: &Server,
    session: SessionId,
    held: &Mutex<HashMap<u64, usize>>,
) -> bool {
    let held = || held.lock().unwrap_or_else(|p| p.into_inner());
    // One more reference held by this session.
    let hold = |id: u64| *held().entry(id).or_default() += 1;
    // One fewer; false if the session held none (nothing to give back).
    let release = |id: u64| match held().get_mut(&id) {
        Some(c) if *c > 0 => {
            *c -= 1;
            true
        }
        _ => false,
    };
    let mut requests = Requests::default();
    loop {
        let request = match requests.recv(conn) {
            Ok(r) => r,
            Err(mp_proc::Error::Decode(e)) => {
                let reply = failure(format!("a request that does not decode: {e}"));
                if conn.send(&reply).is_err() {
                    return false;
                }
                continue;
            }
            Err(_) => return false, // gone, or no longer framed
        };
        let mut call = Call {
            client: conn,
            session,
            undo: None,
            pins: Vec::new(),
        };
        let reply = match request {
            Request::Hello(_) => failure("already in a session"),
            Request::Ping => Reply::Ok,
            Request::Shutdown => {
                mp_logging::get_logger().debug("manager received shutdown message");
                // Before the reply: when `shutdown()` returns, the blocks
                // are gone (CPython's SharedMemoryServer.shutdown).
                if let Some(segments) = &server.segments {
                    segments.unlink_all();
                }
                let _ = conn.send(&Reply::Ok);
                let _ = server.stop.send_bytes(b"stop");
                return true;
            }
            Request::Create(kind) => match server.create(kind) {
                Ok(id) => {
                    hold(id);
                    Reply::Id(id)
                }
                Err(r) => r,
            },
            Request::IncRef(id) => {
                if server.entry(id, |e| e.refs += 1) {
                    hold(id);
                    Reply::Ok
                } else {
                    freed(id)
                }
            }
            Request::Lend(id) => {
                if server.entry(id, |e| {
                    e.refs += 1;
                    e.lent += 1;
                }) {
                    Reply::Ok
                } else {
                    freed(id)
                }
            }
            // Takes over a lent reference (a copy received twice, with none
            // left to take, gets a reference of its own).
            Request::Adopt(id) => {
                if server.entry(id, |e| match e.lent {
                    0 => e.refs += 1,
                    _ => e.lent -= 1,
                }) {
                    hold(id);
                    Reply::Ok
                } else {
                    freed(id)
                }
            }
            Request::DecRef(id) => {
                if release(id) {
                    server.decref(id);
                }
                Reply::Ok
            }
            Request::Leave => {
                server.release_locks(session);
                Reply::Ok
            }
            Request::NumberOfObjects => {
                Reply::Count(server.table.read().unwrap_or_else(|p| p.into_inner()).len() as u64)
            }
            Request::Dict(id, op) => server.on::<dict::Dict, _>(id, op, &mut call),
            Request::List(id, op) => server.on::<list::List, _>(id, op, &mut call),
            Request::DictHolding(id, values, op) => {
                call.pins = server.pin(values);
                server.on::<dict::Dict, _>(id, op, &mut call)
            }
            Request::ListHolding(id, values, op) => {
                call.pins = server.pin(values);
                server.on::<list::List, _>(id, op, &mut call)
            }
            Request::Namespace(id, op) => server.on::<namespace::Namespace, _>(id, op, &mut call),
            Request::Value(id, op) => server.on::<value::Value, _>(id, op, &mut call),
            Request::Queue(id, op) => server.on::<queue::Queue, _>(id, op, &mut call),
            Request::Set(id, op) => server.on::<set::Set, _>(id, op, &mut call),
            Request::NamespaceHolding(id, values, op) => {
                call.pins = server.pin(values);
                server.on::<namespace::Namespace, _>(id, op, &mut call)
            }
            Request::ValueHolding(id, values, op) => {
                call.pins = server.pin(values);
                server.on::<value::Value, _>(id, op, &mut call)
            }
            Request::SetHolding(id, values, op) => {
                call.pins = server.pin(values);
                server.on::<set::Set, _>(id, op, &mut call)
            }
            Request::Lock(id, thread, op) => {
                server.on::<lock::Lock, _>(id, (thread, op), &mut call)
            }
            Request::Semaphore(id, op) => server.on::<semaphore::Semaphore, _>(id, op, &mut call),
            Request::Condition(id, thread, op) => {
                server.on::<lock::Lock, _>(id, (thread, op), &mut call)
            }
            Request::Event(id, op) => server.on::<event::Event, _>(id, op, &mut call),
            Request::Barrier(id, op) => server.on::<barrier::Barrier, _>(id, op, &mut call),
            Request::Call(id, method, args) => {
                server.on::<Registered, _>(id, (method, args), &mut call)
            }
            #[cfg(feature = "pool")]
            Request::Pool(id, op) => server.on::<kinds::pool::PoolObject, _>(id, op, &mut call),
            Request::Segment(op) => match &server.segments {
                Some(segments) => segments.serve(op),
                None => failure("this manager makes no shared memory (a SharedMemoryManager does)"),
            },
        };
        if conn.send(&reply).is_err() {
            // The client is gone: give back what its call took.
            if let Some(undo) = call.undo {
                undo(reply);
            }
            return false;
        }
    }
}

impl Server {
    /// Serves `op` on object `id`, which must be of kind `H`.
    fn on<H: object::Handler<Op>, Op>(&self, id: u64, op: Op, call: &mut Call<'_>) -> Reply {
        match self.get(id) {
            Some(o) => dispatch::<H, _>(o, op, call),
            None => freed(id),
        }
    }
}

#[cfg(all(test, feature = "pool"))]
mod pool_tests;

#[cfg(test)]
mod trust_tests;

#[cfg(test)]
mod tests;
