//! What every object in the server shares: the [`Object`] trait the table
//! holds, the [`Handler`] trait by which a request reaches its kind, and
//! the [`Call`] a handler runs in (its client, its session, how it waits,
//! what to give back if the reply is lost).
//!
//! The synchronisation kinds are mp-proc's in-process primitives
//! (`mp_proc::plumbing::local`), owned by a client session and a thread in
//! it. A call that waits (a `get` on an empty queue, an `acquire` of a held
//! lock) also watches its client's connection: a client that hangs up
//! mid-call cancels the wait, and what the call took is given back (an item
//! goes back to the front of its queue, a lock is released), so a dead
//! client loses nothing for the others.

use std::any::Any;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_proc::Connection;
use mp_proc::plumbing::local;

use crate::protocol::{Bytes, Failure, Reply, SessionId, Thread, Wait};

/// The owner of a lock: a session (client process) and a thread in it.
pub(crate) type Owner = (SessionId, Thread);

/// An object in the server's table, of any kind.
pub(crate) trait Object: Any + Send + Sync {
    /// Releases what `session` holds of this object (its process is gone).
    fn release_session(&self, _session: SessionId) {}
}

/// A kind of object that serves requests carrying `Op` (a kind may serve
/// more than one: a condition's lock takes a lock's requests).
pub(crate) trait Handler<Op>: Object + Sized {
    /// Serves one request, in `call`.
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply;
}

/// Serves `op` on `object`, if it is of kind `H`.
pub(crate) fn dispatch<H: Handler<Op>, Op>(
    object: Arc<dyn Object>,
    op: Op,
    call: &mut Call<'_>,
) -> Reply {
    let object: Arc<dyn Any + Send + Sync> = object;
    match object.downcast::<H>() {
        Ok(h) => h.serve(op, call),
        Err(_) => wrong_kind(),
    }
}

/// What to do if a reply cannot be delivered (the client is gone): give
/// back what the call took, given the reply (which holds the item a `get`
/// took).
pub(crate) type Undo = Box<dyn FnOnce(Reply) + Send>;

/// One request's context: its client's connection (watched while the call
/// waits), the session and thread it comes from, and how to give back
/// what it took if its reply is lost.
pub(crate) struct Call<'a> {
    pub(crate) client: &'a Connection,
    pub(crate) session: SessionId,
    pub(crate) undo: Option<Undo>,
    /// For each value the request stores, in order, the references it
    /// holds (see [`Pin`](super::Pin)); those a handler does not keep are
    /// given back when the call ends.
    pub(crate) pins: Vec<Vec<super::Pin>>,
}

impl Call<'_> {
    /// If the reply is lost, `undo` gives back what the call took.
    pub(crate) fn on_lost(&mut self, undo: impl FnOnce(Reply) + Send + 'static) {
        self.undo = Some(Box::new(undo));
    }

    /// The pins of the next value the request stores (none if it holds no
    /// proxy).
    pub(crate) fn next_pins(&mut self) -> Vec<super::Pin> {
        self.pins.pop().unwrap_or_default()
    }

    /// The references of the next value the request stores beside
    /// another (a dict's key, beside its value).
    pub(crate) fn held(&mut self) -> Held {
        Held(self.next_pins())
    }

    /// `bytes`, the next value the request stores, with its pins.
    pub(crate) fn stored(&mut self, bytes: Bytes) -> Stored {
        Stored {
            bytes,
            _pins: self.next_pins(),
        }
    }

    /// The owner of a lock taken by `thread` in this call's session.
    pub(crate) fn owner(&self, thread: Thread) -> Owner {
        (self.session, thread)
    }

    /// Runs `f` with a wait of at most `wait` (`None`: no deadline) that
    /// is cancelled if the client hangs up meanwhile.
    pub(crate) fn waiting<R>(&self, wait: Wait, f: impl FnOnce(&local::Wait<'_>) -> R) -> R {
        let client = self.client;
        // A client sends nothing while it waits for a reply, so a readable
        // connection means it hung up.
        let hung_up = move || {
            mp_proc::connection::wait_fds(&[client.as_fd()], Some(Duration::ZERO))
                .map(|r| !r.is_empty())
                .unwrap_or(true)
        };
        let until = match wait {
            None => local::Wait::forever(),
            Some(d) => local::Wait::timeout(d),
        };
        f(&until.or_cancel(&hung_up, CHECK_CLIENT))
    }
}

/// The longest a waiting call goes without checking its client.
const CHECK_CLIENT: Duration = Duration::from_millis(200);

pub(crate) fn fail(f: Failure) -> Reply {
    Reply::Fail(f)
}

/// A request for another kind of object than the one it names.
pub(crate) fn wrong_kind() -> Reply {
    fail(Failure::Remote(
        "the object does not have that method".into(),
    ))
}

/// A value in a container, with the references it holds (the proxies
/// in it), given back when it is dropped.
pub(crate) struct Stored {
    pub(crate) bytes: Bytes,
    _pins: Vec<super::Pin>,
}

impl Stored {
    /// The value, taken out of its container for a reply: its references
    /// are lent to the proxies in it, which the client adopts.
    pub(crate) fn into_reply(mut self) -> Bytes {
        for pin in &mut self._pins {
            pin.lend = true;
        }
        std::mem::take(&mut self.bytes)
    }

    /// A value that holds no references (an array's initial items).
    pub(crate) fn plain(bytes: Bytes) -> Stored {
        Stored {
            bytes,
            _pins: Vec::new(),
        }
    }
}

/// The references held by a value a container keeps beside a [`Stored`]
/// one (a dict's key: a proxy in it keeps its object while the key is
/// stored), given back when dropped.
pub(crate) struct Held(Vec<super::Pin>);

impl Held {
    /// The value goes to a client in a reply: its references are lent to
    /// the proxies in it, which the client adopts.
    pub(crate) fn lend(mut self) {
        for pin in &mut self.0 {
            pin.lend = true;
        }
    }
}

/// A container's state under a lock (nobody waits on a container).
pub(crate) struct Guarded<S>(Mutex<S>);

impl<S> Guarded<S> {
    pub(crate) fn new(state: S) -> Guarded<S> {
        Guarded(Mutex::new(state))
    }

    /// Runs `f` on the state, under its lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut mp_proc::plumbing::lock(&self.0))
    }
}
