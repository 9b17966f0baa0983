//! What every object in the server shares: the [`Object`] trait the table
//! holds, the [`Handler`] trait by which a request reaches its kind, the
//! [`Call`] a handler runs in (its client, its session, what to give back
//! if the reply is lost), and [`Waitable`], the state and condition
//! variable of the kinds whose calls wait.
//!
//! A call that waits (a `get` on an empty queue, an `acquire` of a held
//! lock) waits on its object's condition variable, and also watches its
//! client's connection: a client that hangs up mid-call ends the wait, and
//! what the call took is given back (an item goes back to the front of its
//! queue, a lock is released), so a dead client loses nothing for the
//! others.

use std::any::Any;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mp_proc::Connection;

use crate::protocol::{Failure, Reply, SessionId, Thread, Wait};

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
}

impl Call<'_> {
    /// If the reply is lost, `undo` gives back what the call took.
    pub(crate) fn on_lost(&mut self, undo: impl FnOnce(Reply) + Send + 'static) {
        self.undo = Some(Box::new(undo));
    }

    /// The owner of a lock taken by `thread` in this call's session.
    pub(crate) fn owner(&self, thread: Thread) -> Owner {
        (self.session, thread)
    }
}

pub(crate) fn fail(f: Failure) -> Reply {
    Reply::Fail(f)
}

/// A request for another kind of object than the one it names.
pub(crate) fn wrong_kind() -> Reply {
    fail(Failure::Remote(
        "the object does not have that method".into(),
    ))
}

/// How a wait ended.
pub(crate) enum Waited<R> {
    Ready(R),
    TimedOut,
    /// The client hung up.
    Gone,
}

/// The longest a waiting call goes without checking its client.
const CHECK_CLIENT: Duration = Duration::from_millis(200);

/// An object's state with its lock and its condition variable, notified
/// on every change.
pub(crate) struct Waitable<S> {
    state: Mutex<S>,
    changed: Condvar,
}

impl<S> Waitable<S> {
    pub(crate) fn new(state: S) -> Waitable<S> {
        Waitable {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        mp_proc::plumbing::lock(&self.state)
    }

    /// Wakes every waiter, to check its condition again.
    pub(crate) fn changed(&self) {
        self.changed.notify_all();
    }

    /// Runs `f` on the state, then wakes the waiters.
    pub(crate) fn change<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed();
        r
    }

    /// Waits until `ready` gives a value (checked under the lock), for at
    /// most `wait`, while `client` is there.
    pub(crate) fn wait_until<'a, R>(
        &'a self,
        mut guard: MutexGuard<'a, S>,
        client: &Connection,
        wait: Wait,
        mut ready: impl FnMut(&mut S) -> Option<R>,
    ) -> (MutexGuard<'a, S>, Waited<R>) {
        // A wait too long to represent is a wait without end.
        let deadline = wait.and_then(mp_proc::plumbing::deadline_after);
        let mut first = true;
        loop {
            if let Some(r) = ready(&mut guard) {
                return (guard, Waited::Ready(r));
            }
            // Checked under the lock, after `ready`: a client that hangs up
            // gets nothing more. A client sends nothing while it waits for
            // a reply, so a readable connection means it hung up.
            if !first {
                let readable =
                    mp_proc::connection::wait_fds(&[client.as_fd()], Some(Duration::ZERO))
                        .map(|r| !r.is_empty())
                        .unwrap_or(true);
                if readable {
                    return (guard, Waited::Gone);
                }
            }
            first = false;
            let slice = match deadline {
                None => CHECK_CLIENT,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(CHECK_CLIENT),
                    _ => return (guard, Waited::TimedOut),
                },
            };
            guard = self
                .changed
                .wait_timeout(guard, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
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
