//! The manager's server process.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, RwLock};

use mp_proc::Connection;
use mp_proc::connection::{Address, Listener};

use crate::protocol::{Bytes, DictOp, Kind, ListOp, NamespaceOp, Reply, Request, ValueOp};

/// A shared object.
enum Object {
    Dict(HashMap<Bytes, Bytes>),
    List(Vec<Bytes>),
    Namespace(HashMap<String, Bytes>),
    Value(Bytes),
}

struct Entry {
    refs: usize,
    /// References lent to proxies in transit to another process.
    lent: usize,
    object: Arc<Mutex<Object>>,
}

/// The server's objects: the table's lock is held only to find, add or
/// count; each object has its own lock, so clients of different objects
/// never wait on each other.
#[derive(Default)]
struct Objects {
    table: RwLock<HashMap<u64, Entry>>,
    next: Mutex<u64>,
}

impl Objects {
    fn create(&self, kind: Kind) -> u64 {
        let object = match kind {
            Kind::Dict => Object::Dict(HashMap::new()),
            Kind::List => Object::List(Vec::new()),
            Kind::Namespace => Object::Namespace(HashMap::new()),
            Kind::Value(v) => Object::Value(v),
        };
        let id = {
            let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Entry {
                    refs: 1,
                    lent: 0,
                    object: Arc::new(Mutex::new(object)),
                },
            );
        id
    }

    /// Runs `f` on object `id`'s entry; false if there is no such object.
    fn entry(&self, id: u64, f: impl FnOnce(&mut Entry)) -> bool {
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        t.get_mut(&id).map(f).is_some()
    }

    fn incref(&self, id: u64) -> bool {
        self.entry(id, |e| e.refs += 1)
    }

    fn lend(&self, id: u64) -> bool {
        self.entry(id, |e| {
            e.refs += 1;
            e.lent += 1;
        })
    }

    /// Takes over a lent reference (a copy deserialized twice, with none
    /// left to take, gets a reference of its own).
    fn adopt(&self, id: u64) -> bool {
        self.entry(id, |e| match e.lent {
            0 => e.refs += 1,
            _ => e.lent -= 1,
        })
    }

    fn decref(&self, id: u64) {
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = t.get_mut(&id) {
            e.refs -= 1;
            if e.refs == 0 {
                t.remove(&id);
            }
        }
    }

    fn get(&self, id: u64) -> Option<Arc<Mutex<Object>>> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|e| e.object.clone())
    }

    fn len(&self) -> u64 {
        self.table.read().unwrap_or_else(|p| p.into_inner()).len() as u64
    }
}

/// The target of the manager process: makes its temp directory and socket,
/// tells the parent the address on `report`, and serves until shut down or
/// until its owner is gone (`alive` at end of file).
pub(crate) fn run_server((report, alive): (Connection, Connection)) {
    let log = mp_logging::get_logger();
    let authkey = mp_proc::current_process().authkey().to_vec();
    let dir = match tempfile::Builder::new()
        .prefix("pymp-")
        .rand_bytes(8)
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            log.error(format_args!("manager cannot make its temp directory: {e}"));
            return;
        }
    };
    // Only this user may reach the socket (CPython's pymp- directories are
    // 0700 too).
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)) {
        log.error(format_args!(
            "manager cannot protect its temp directory: {e}"
        ));
        return;
    }
    log.info(format_args!(
        "created temp directory {}",
        dir.path().display()
    ));
    let listener = tempfile::Builder::new()
        .prefix("listener-")
        .rand_bytes(8)
        .make_in(dir.path(), |path| {
            Listener::bind(Address::Unix(path.to_path_buf()), Some(&authkey))
                .map_err(std::io::Error::other)
        });
    let listener = match listener {
        Ok(named) => {
            // The listener removes its socket file itself.
            let (l, path) = named.into_parts();
            let _ = path.keep();
            l
        }
        Err(e) => {
            log.error(format_args!("manager cannot listen: {e}"));
            return;
        }
    };
    log.info(format_args!("manager serving at '{}'", listener.address()));
    if report.send(&listener.address().to_string()).is_err() {
        return;
    }
    drop(report);

    // Clients are served on threads of their own; a shutdown request wakes
    // this loop through the stop pipe.
    let Ok((stop_r, stop_w)) = mp_proc::pipe(false) else {
        return;
    };
    crate::signals::install(&stop_w);
    let stop_w = Arc::new(stop_w);
    let objects = Arc::new(Objects::default());
    loop {
        let fds = [listener.as_fd(), stop_r.as_fd(), alive.as_fd()];
        let ready = mp_proc::connection::wait_fds(&fds, None).unwrap_or_default();
        if ready.contains(&1) {
            break;
        }
        if ready.contains(&2) {
            log.info("the manager's owner is gone: exiting");
            break;
        }
        if ready.contains(&0) {
            match listener.accept() {
                Ok(conn) => {
                    let stop = stop_w.clone();
                    let objects = objects.clone();
                    std::thread::spawn(move || serve_client(conn, &stop, &objects));
                }
                Err(e) => log.debug(format_args!("refused a client: {e}")),
            }
        }
    }
    crate::signals::uninstall();
    log.info("manager exiting with exitcode 0");
    drop(listener); // removes the socket
    drop(dir); // and the directory
}

/// Serves one client connection until it ends; the references it held are
/// released then (also when its process was killed).
fn serve_client(conn: Connection, stop: &Connection, objects: &Objects) {
    let mut held: HashMap<u64, usize> = HashMap::new();
    loop {
        let request = match conn.recv::<Request>() {
            Ok(r) => r,
            Err(mp_proc::Error::Decode(e)) => {
                let _ = conn.send(&Reply::Error(format!(
                    "a request that does not decode: {e}"
                )));
                continue;
            }
            Err(_) => break, // gone
        };
        let reply = match request {
            Request::Ping => Reply::Ok,
            Request::Shutdown => {
                mp_logging::get_logger().debug("manager received shutdown message");
                let _ = conn.send(&Reply::Ok);
                let _ = stop.send_bytes(b"stop");
                break;
            }
            Request::Create(kind) => {
                let id = objects.create(kind);
                *held.entry(id).or_default() += 1;
                Reply::Id(id)
            }
            Request::IncRef(id) | Request::Lend(id) | Request::Adopt(id) => {
                let (found, leased) = match request {
                    Request::IncRef(_) => (objects.incref(id), true),
                    Request::Lend(_) => (objects.lend(id), false),
                    _ => (objects.adopt(id), true),
                };
                if !found {
                    Reply::Error(format!("no object {id}: it was freed"))
                } else {
                    if leased {
                        *held.entry(id).or_default() += 1;
                    }
                    Reply::Ok
                }
            }
            Request::DecRef(id) => {
                if let Some(n) = held.get_mut(&id)
                    && *n > 0
                {
                    *n -= 1;
                    objects.decref(id);
                }
                Reply::Ok
            }
            Request::NumberOfObjects => Reply::Count(objects.len()),
            Request::Dict(id, op) => with(objects, id, |o| match o {
                Object::Dict(d) => dict(d, op),
                _ => wrong_kind(id),
            }),
            Request::List(id, op) => with(objects, id, |o| match o {
                Object::List(l) => list(l, op),
                _ => wrong_kind(id),
            }),
            Request::Namespace(id, op) => with(objects, id, |o| match o {
                Object::Namespace(n) => match op {
                    NamespaceOp::Set(name, v) => {
                        n.insert(name, v);
                        Reply::Ok
                    }
                    NamespaceOp::Get(name) => match n.get(&name) {
                        Some(v) => Reply::Maybe(Some(v.clone())),
                        None => {
                            Reply::Error(format!("'Namespace' object has no attribute '{name}'"))
                        }
                    },
                },
                _ => wrong_kind(id),
            }),
            Request::Value(id, op) => with(objects, id, |o| match o {
                Object::Value(v) => match op {
                    ValueOp::Get => Reply::Maybe(Some(v.clone())),
                    ValueOp::Set(new) => {
                        *v = new;
                        Reply::Ok
                    }
                },
                _ => wrong_kind(id),
            }),
        };
        if conn.send(&reply).is_err() {
            break;
        }
    }
    for (id, n) in held {
        for _ in 0..n {
            objects.decref(id);
        }
    }
}

/// Runs `f` on object `id` under its own lock.
fn with(objects: &Objects, id: u64, f: impl FnOnce(&mut Object) -> Reply) -> Reply {
    match objects.get(id) {
        None => Reply::Error(format!("no object {id}: it was freed")),
        Some(o) => f(&mut o.lock().unwrap_or_else(|p| p.into_inner())),
    }
}

fn wrong_kind(id: u64) -> Reply {
    Reply::Error(format!("object {id} does not have that method"))
}

fn list(l: &mut Vec<Bytes>, op: ListOp) -> Reply {
    let out_of_range = || Reply::Error("list index out of range".into());
    match op {
        ListOp::Push(v) => {
            l.push(v);
            Reply::Ok
        }
        ListOp::Get(i) => match l.get(i as usize) {
            Some(v) => Reply::Maybe(Some(v.clone())),
            None => out_of_range(),
        },
        ListOp::Set(i, v) => match l.get_mut(i as usize) {
            Some(slot) => {
                *slot = v;
                Reply::Ok
            }
            None => out_of_range(),
        },
        ListOp::Pop => Reply::Maybe(l.pop()),
        ListOp::Len => Reply::Count(l.len() as u64),
        ListOp::Extend(items) => {
            l.extend(items);
            Reply::Ok
        }
        ListOp::ToVec => Reply::List(l.clone()),
    }
}

fn dict(d: &mut HashMap<Bytes, Bytes>, op: DictOp) -> Reply {
    match op {
        DictOp::Get(k) => Reply::Maybe(d.get(&k).cloned()),
        DictOp::Insert(k, v) => Reply::Maybe(d.insert(k, v)),
        DictOp::Remove(k) => Reply::Maybe(d.remove(&k)),
        DictOp::ContainsKey(k) => Reply::Bool(d.contains_key(&k)),
        DictOp::Len => Reply::Count(d.len() as u64),
        DictOp::Keys => Reply::List(d.keys().cloned().collect()),
        DictOp::Values => Reply::List(d.values().cloned().collect()),
        DictOp::Items => Reply::Pairs(d.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        DictOp::Clear => {
            d.clear();
            Reply::Ok
        }
        DictOp::Update(pairs) => {
            d.extend(pairs);
            Reply::Ok
        }
    }
}
