//! One session per manager per client process, shared by the manager handle
//! and every proxy of that process, over persistent authenticated
//! connections (CPython opens a new connection, with a full handshake, for
//! every create, incref and decref).
//!
//! A session usually has one connection. A call takes an idle connection
//! and gives it back when answered, so a thread blocked in `queue.get()`
//! holds its own connection and another thread's `put` opens a second one
//! (once) instead of waiting behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mp_proc::Connection;
use mp_proc::connection::{Address, Client};

use crate::protocol::{Failure, Reply, Request, SessionId};
use crate::{Error, Result};

pub(crate) struct Link {
    pub(crate) address: Address,
    authkey: Vec<u8>,
    session: SessionId,
    /// The process whose session this is.
    session_pid: u32,
    /// Connections not in a call. The first one stays open while the link
    /// lives, so the session does too.
    idle: Mutex<Vec<Connection>>,
}

/// The links of this process, by address (and pid: a forked child finds
/// its parent's entries, whose connections it does not have).
static LINKS: Mutex<Vec<(u32, Address, Weak<Link>)>> = Mutex::new(Vec::new());

/// The authkeys this process (or the parent it forked from) used, by
/// address: a proxy received without its key (one read back from a dict)
/// reconnects with the key its manager was reached with (CPython gh-78740
/// fails there, using the process's own key).
static KEYS: Mutex<Vec<(Address, Vec<u8>)>> = Mutex::new(Vec::new());

/// The key to reach `address` with when a proxy did not bring one.
pub(crate) fn known_key(address: &Address) -> Vec<u8> {
    KEYS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(a, _)| a == address)
        .map(|(_, k)| k.clone())
        .unwrap_or_else(|| mp_proc::current_process().authkey().to_vec())
}

fn remember_key(address: &Address, authkey: &[u8]) {
    let mut keys = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    keys.retain(|(a, _)| a != address);
    keys.push((address.clone(), authkey.to_vec()));
}

impl Link {
    /// This process's link to `address` with `authkey`, made (and
    /// authenticated) if there is none: a caller with another key gets a
    /// link of its own, and is refused if the key is wrong.
    pub(crate) fn to(address: &Address, authkey: &[u8]) -> Result<Arc<Link>> {
        let pid = std::process::id();
        let mut links = LINKS.lock().unwrap_or_else(|p| p.into_inner());
        links.retain(|(p, _, l)| *p == pid && l.strong_count() > 0);
        if let Some(l) = links
            .iter()
            .filter(|(_, a, _)| a == address)
            .filter_map(|(_, _, l)| l.upgrade())
            .find(|l| l.authkey == authkey)
        {
            return Ok(l);
        }
        let conn = Client::connect(address, Some(authkey))?;
        // Something that is not a manager may never answer: bounded, as the
        // handshake is.
        conn.send(&Request::Hello(None))?;
        if !conn.poll(Some(mp_proc::connection::HANDSHAKE_TIMEOUT))? {
            return Err(Error::Timeout);
        }
        let session = match answer(conn.recv::<Reply>())? {
            Reply::Session(s) => s,
            r => return Err(unexpected(r)),
        };
        Ok(Link::enter(&mut links, address, authkey, session, conn))
    }

    /// A new link on `conn` (in `session`), entered in `links` (this
    /// process's) and its key remembered.
    fn enter(
        links: &mut Vec<(u32, Address, Weak<Link>)>,
        address: &Address,
        authkey: &[u8],
        session: SessionId,
        conn: Connection,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            address: address.clone(),
            authkey: authkey.to_vec(),
            session,
            session_pid: std::process::id(),
            idle: Mutex::new(vec![conn]),
        });
        remember_key(address, authkey);
        links.push((std::process::id(), address.clone(), Arc::downgrade(&link)));
        link
    }

    /// The link of the process that started the server at `address`, on
    /// the connection it made for it (in `session`).
    pub(crate) fn owned(
        address: &Address,
        authkey: &[u8],
        session: SessionId,
        conn: Connection,
    ) -> Arc<Link> {
        let mut links = LINKS.lock().unwrap_or_else(|p| p.into_inner());
        Link::enter(&mut links, address, authkey, session, conn)
    }

    /// The key this link was authenticated with.
    pub(crate) fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// One round trip, on an idle connection of this session (a new one if
    /// every connection is in a call).
    pub(crate) fn call(&self, request: &Request) -> Result<Reply> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = Client::connect(&self.address, Some(&self.authkey))?;
                answer(exchange(&c, &Request::Hello(Some(self.session))))?;
                c
            }
        };
        let reply = exchange(&conn, request);
        // A connection that failed in transport is dropped; one that carried
        // a whole reply (a failure too) is kept.
        if matches!(reply, Ok(_) | Err(Error::Decode(_))) {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        answer(reply)
    }
}

impl Drop for Link {
    /// The last proxy of this process to the server is gone: the locks its
    /// threads still hold are released before this returns (so before the
    /// process ends, for a target that returns), on a connection already
    /// open (none is made now; the server releases them anyway when the
    /// connections end).
    fn drop(&mut self) {
        if self.session_pid != std::process::id() {
            return; // a forked child's copy: the session is the parent's
        }
        let idle = self.idle.get_mut().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(conn) = idle {
            let _ = exchange(&conn, &Request::Leave);
        }
    }
}

/// Sends `request` on `conn` and reads its reply (errors of transport only).
fn exchange(conn: &Connection, request: &Request) -> Result<Reply> {
    conn.send(request)?;
    conn.recv::<Reply>()
}

/// A failure the server reported becomes the matching `Error`.
fn answer(reply: Result<Reply>) -> Result<Reply> {
    match reply? {
        Reply::Fail(f) => Err(failure(f)),
        r => Ok(r),
    }
}

fn failure(f: Failure) -> Error {
    match f {
        Failure::Empty => Error::Empty,
        Failure::Full => Error::Full,
        Failure::Timeout => Error::Timeout,
        Failure::BrokenBarrier => Error::BrokenBarrier,
        Failure::NotHeld(what) => Error::NotHeld {
            what: static_name(&what),
        },
        Failure::WouldDeadlock => Error::WouldDeadlock,
        Failure::TooManyReleases(bound) => Error::TooManyReleases {
            bound: usize::try_from(bound).unwrap_or(usize::MAX),
        },
        Failure::TaskDoneTooManyTimes => Error::TaskDoneTooManyTimes,
        Failure::Remote(message) => remote(message),
        Failure::Index { what, index, len } => Error::Index {
            what: static_name(&what),
            index: usize::try_from(index).unwrap_or(usize::MAX),
            len: usize::try_from(len).unwrap_or(usize::MAX),
        },
        Failure::Attribute { object, name } => Error::Attribute {
            object: static_name(&object),
            name,
        },
        Failure::ActionPanicked(message) => Error::ActionPanicked {
            what: "Barrier",
            message,
        },
        Failure::Closed => Error::Closed,
    }
}

/// The errors name what failed with a `&'static str`: a name the server
/// sends is one of these, or the generic word.
fn static_name(what: &str) -> &'static str {
    const NAMES: &[&str] = &["Lock", "RLock", "Condition", "list", "Array", "Namespace"];
    NAMES
        .iter()
        .find(|n| **n == what)
        .copied()
        .unwrap_or("object")
}

/// An error the server reported (Python's `RemoteError`).
pub(crate) fn remote(message: String) -> Error {
    Error::Remote { message }
}

/// A reply of the wrong shape.
pub(crate) fn unexpected(r: Reply) -> Error {
    remote(format!("unexpected reply from the manager: {r:?}"))
}

/// A number for the calling thread, unique in this process: with the
/// session, it names the owner of an `RLock` or a `Condition`.
pub(crate) fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}
