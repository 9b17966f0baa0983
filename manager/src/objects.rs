//! The server's shared objects and their operations.
//!
//! Each object has its own lock and condition variable. A call that waits
//! (a `get` on an empty queue, an `acquire` of a held lock) waits on its
//! object's condition variable, and also watches its client's connection:
//! a client that hangs up mid-call ends the wait, and what the call took is
//! given back (an item goes back to the front of its queue, a lock is
//! released), so a dead client loses nothing for the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::AsFd;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mp_proc::Connection;

use crate::protocol::{
    BarrierOp, Bytes, ConditionOp, DictOp, EventOp, Failure, Kind, ListOp, LockOp, NamespaceOp,
    QueueOp, Reply, SemaphoreOp, SessionId, ValueOp, Wait,
};
use crate::served::{Args, Served};

/// The owner of a lock: a session (client process) and a thread in it.
pub(crate) type Owner = (SessionId, u64);

pub(crate) struct LockState {
    reentrant: bool,
    owner: Option<Owner>,
    depth: u64,
}

pub(crate) struct QueueState {
    items: VecDeque<Bytes>,
    maxsize: u64,
    /// Items put and not yet marked done, for a joinable queue.
    unfinished: Option<u64>,
}

pub(crate) struct ConditionState {
    lock: LockState,
    waiters: VecDeque<u64>,
    notified: HashSet<u64>,
    next_ticket: u64,
}

pub(crate) struct BarrierState {
    parties: u64,
    timeout: Wait,
    waiting: u64,
    generation: u64,
    broken: bool,
    /// A generation ended by `reset`: its waiters fail.
    reset: Option<u64>,
}

pub(crate) enum Object {
    Dict(HashMap<Bytes, Bytes>),
    List(Vec<Bytes>),
    Namespace(HashMap<String, Bytes>),
    Value(Bytes),
    Queue(QueueState),
    Lock(LockState),
    Semaphore { value: u64, bound: Option<u64> },
    Condition(ConditionState),
    Event(bool),
    Barrier(BarrierState),
    Registered(Box<dyn Served>),
}

/// An object with its lock and its condition variable.
pub(crate) struct Shared {
    state: Mutex<Object>,
    changed: Condvar,
}

/// What to do if the reply cannot be delivered (the client is gone): give
/// back what the call took.
pub(crate) enum Undo {
    /// The item in the reply goes back to the front of its queue.
    PutBack,
    Release(Owner),
    Signal,
}

fn lock_state(reentrant: bool) -> LockState {
    LockState {
        reentrant,
        owner: None,
        depth: 0,
    }
}

impl Object {
    /// A new object of a built-in kind (`None` for a registered type).
    pub(crate) fn new(kind: Kind) -> Option<Object> {
        Some(match kind {
            Kind::Dict => Object::Dict(HashMap::new()),
            Kind::List => Object::List(Vec::new()),
            Kind::Array(items) => Object::List(items),
            Kind::Namespace => Object::Namespace(HashMap::new()),
            Kind::Value(v) => Object::Value(v),
            Kind::Queue { maxsize, joinable } => Object::Queue(QueueState {
                items: VecDeque::new(),
                maxsize,
                unfinished: joinable.then_some(0),
            }),
            Kind::Lock => Object::Lock(lock_state(false)),
            Kind::RLock => Object::Lock(lock_state(true)),
            Kind::Semaphore { value, bounded } => Object::Semaphore {
                value,
                bound: bounded.then_some(value),
            },
            Kind::Condition => Object::Condition(ConditionState {
                lock: lock_state(true),
                waiters: VecDeque::new(),
                notified: HashSet::new(),
                next_ticket: 0,
            }),
            Kind::Event => Object::Event(false),
            Kind::Barrier { parties: 0, .. } => return None,
            Kind::Barrier { parties, timeout } => Object::Barrier(BarrierState {
                parties,
                timeout,
                waiting: 0,
                generation: 0,
                broken: false,
                reset: None,
            }),
            Kind::Registered(_) => return None,
        })
    }
}

fn fail(f: Failure) -> Reply {
    Reply::Fail(f)
}

fn wrong_kind() -> Reply {
    fail(Failure::Remote(
        "the object does not have that method".into(),
    ))
}

/// How a wait ended.
enum Waited<R> {
    Ready(R),
    TimedOut,
    /// The client hung up.
    Gone,
}

/// The longest a waiting call goes without checking its client.
const CHECK_CLIENT: Duration = Duration::from_millis(200);

impl Shared {
    pub(crate) fn new(object: Object) -> Shared {
        Shared {
            state: Mutex::new(object),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Object> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `ready` gives a value (checked under the object's lock),
    /// for at most `wait`, while `client` is there.
    fn wait_until<'a, R>(
        &'a self,
        mut guard: MutexGuard<'a, Object>,
        client: &Connection,
        wait: Wait,
        mut ready: impl FnMut(&mut Object) -> Option<R>,
    ) -> (MutexGuard<'a, Object>, Waited<R>) {
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

    /// Runs an operation of a container (which nobody waits on) under the
    /// object's lock.
    pub(crate) fn with(&self, f: impl FnOnce(&mut Object) -> Reply) -> Reply {
        f(&mut self.lock())
    }

    /// Gives back what a call took, for a client that did not get its
    /// `reply` (which holds the item a `get` took).
    pub(crate) fn undo(&self, undo: Undo, reply: Reply) {
        let mut o = self.lock();
        match (&mut *o, undo) {
            (Object::Queue(q), Undo::PutBack) => {
                if let Reply::Maybe(Some(item)) = reply {
                    q.items.push_front(item)
                }
            }
            (Object::Lock(l), Undo::Release(who)) => release_all(l, who),
            (Object::Condition(c), Undo::Release(who)) => release_all(&mut c.lock, who),
            (Object::Semaphore { value, .. }, Undo::Signal) => *value = value.saturating_add(1),
            _ => {}
        }
        drop(o);
        self.changed.notify_all();
    }

    /// Releases the locks `session` holds (its process is gone).
    pub(crate) fn release_session(&self, session: SessionId) {
        let mut o = self.lock();
        let lock = match &mut *o {
            Object::Lock(l) => l,
            Object::Condition(c) => &mut c.lock,
            _ => return,
        };
        if lock.owner.is_some_and(|(s, _)| s == session) {
            lock.owner = None;
            lock.depth = 0;
            drop(o);
            self.changed.notify_all();
        }
    }

    pub(crate) fn queue(&self, op: QueueOp, client: &Connection) -> (Reply, Option<Undo>) {
        let guard = self.lock();
        let reply = match op {
            QueueOp::Put(item, wait) => {
                let mut item = Some(item);
                let (_g, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Queue(q) if q.maxsize == 0 || (q.items.len() as u64) < q.maxsize => {
                        q.items.extend(item.take());
                        if let Some(n) = &mut q.unfinished {
                            *n += 1;
                        }
                        Some(Reply::Ok)
                    }
                    Object::Queue(_) => None,
                    _ => Some(wrong_kind()),
                });
                match w {
                    Waited::Ready(r) => r,
                    _ => fail(Failure::Full),
                }
            }
            QueueOp::Get(wait) => {
                let (_g, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Queue(q) => q.items.pop_front().map(Ok),
                    _ => Some(Err(wrong_kind())),
                });
                match w {
                    Waited::Ready(Ok(item)) => {
                        self.changed.notify_all();
                        return (Reply::Maybe(Some(item)), Some(Undo::PutBack));
                    }
                    Waited::Ready(Err(r)) => r,
                    _ => fail(Failure::Empty),
                }
            }
            QueueOp::Qsize => {
                return match &*guard {
                    Object::Queue(q) => (Reply::Count(q.items.len() as u64), None),
                    _ => (wrong_kind(), None),
                };
            }
            QueueOp::Full => {
                return match &*guard {
                    Object::Queue(q) => (
                        Reply::Bool(q.maxsize > 0 && q.items.len() as u64 >= q.maxsize),
                        None,
                    ),
                    _ => (wrong_kind(), None),
                };
            }
            QueueOp::TaskDone => {
                let mut guard = guard;
                match &mut *guard {
                    Object::Queue(QueueState {
                        unfinished: Some(n),
                        ..
                    }) => {
                        if *n == 0 {
                            fail(Failure::TaskDoneTooManyTimes)
                        } else {
                            *n -= 1;
                            Reply::Ok
                        }
                    }
                    _ => wrong_kind(),
                }
            }
            QueueOp::Join(wait) => {
                let (_g, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Queue(QueueState {
                        unfinished: Some(n),
                        ..
                    }) => (*n == 0).then_some(Reply::Ok),
                    _ => Some(wrong_kind()),
                });
                match w {
                    Waited::Ready(r) => r,
                    _ => fail(Failure::Timeout),
                }
            }
        };
        self.changed.notify_all();
        (reply, None)
    }

    pub(crate) fn lock_op(
        &self,
        who: Owner,
        op: LockOp,
        client: &Connection,
    ) -> (Reply, Option<Undo>) {
        let mut guard = self.lock();
        let reply = match op {
            LockOp::Acquire(wait) => {
                match &*guard {
                    Object::Lock(l) if !l.reentrant && l.owner == Some(who) && wait.is_none() => {
                        return (fail(Failure::WouldDeadlock), None);
                    }
                    Object::Lock(_) => {}
                    _ => return (wrong_kind(), None),
                }
                let (_g, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Lock(l) => try_take(l, who).then_some(()),
                    _ => None,
                });
                return match w {
                    Waited::Ready(()) => (Reply::Bool(true), Some(Undo::Release(who))),
                    _ => (Reply::Bool(false), None),
                };
            }
            LockOp::Release => match &mut *guard {
                Object::Lock(l) => release(l, who, if l.reentrant { "RLock" } else { "Lock" }),
                _ => wrong_kind(),
            },
            LockOp::Locked => {
                return match &*guard {
                    Object::Lock(l) => (Reply::Bool(l.owner.is_some()), None),
                    _ => (wrong_kind(), None),
                };
            }
        };
        drop(guard);
        self.changed.notify_all();
        (reply, None)
    }

    pub(crate) fn semaphore(&self, op: SemaphoreOp, client: &Connection) -> (Reply, Option<Undo>) {
        let mut guard = self.lock();
        let reply = match op {
            SemaphoreOp::Acquire(wait) => {
                let (_g, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Semaphore { value, .. } if *value > 0 => {
                        *value -= 1;
                        Some(true)
                    }
                    Object::Semaphore { .. } => None,
                    _ => Some(false),
                });
                return match w {
                    Waited::Ready(true) => (Reply::Bool(true), Some(Undo::Signal)),
                    Waited::Ready(false) => (wrong_kind(), None),
                    _ => (Reply::Bool(false), None),
                };
            }
            SemaphoreOp::Release => match &mut *guard {
                Object::Semaphore {
                    value,
                    bound: Some(b),
                } if *value >= *b => fail(Failure::TooManyReleases(*b)),
                Object::Semaphore { value, .. } => match value.checked_add(1) {
                    Some(v) => {
                        *value = v;
                        Reply::Ok
                    }
                    None => fail(Failure::Remote("semaphore value overflow".into())),
                },
                _ => wrong_kind(),
            },
            SemaphoreOp::Value => {
                return match &*guard {
                    Object::Semaphore { value, .. } => (Reply::Count(*value), None),
                    _ => (wrong_kind(), None),
                };
            }
        };
        drop(guard);
        self.changed.notify_all();
        (reply, None)
    }

    pub(crate) fn condition(
        &self,
        who: Owner,
        op: ConditionOp,
        client: &Connection,
    ) -> (Reply, Option<Undo>) {
        let mut guard = self.lock();
        if !matches!(&*guard, Object::Condition(_)) {
            return (wrong_kind(), None);
        }
        let reply = match op {
            ConditionOp::Acquire(wait) => {
                let (_g, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Condition(c) => try_take(&mut c.lock, who).then_some(()),
                    _ => None,
                });
                return match w {
                    Waited::Ready(()) => (Reply::Bool(true), Some(Undo::Release(who))),
                    _ => (Reply::Bool(false), None),
                };
            }
            ConditionOp::Release => match &mut *guard {
                Object::Condition(c) => release(&mut c.lock, who, "Condition"),
                _ => wrong_kind(),
            },
            ConditionOp::Notify(n) => match &mut *guard {
                Object::Condition(c) if c.lock.owner == Some(who) => {
                    for _ in 0..n {
                        match c.waiters.pop_front() {
                            Some(t) => {
                                c.notified.insert(t);
                            }
                            None => break,
                        }
                    }
                    Reply::Ok
                }
                _ => fail(Failure::NotHeld("Condition".into())),
            },
            ConditionOp::NotifyAll => match &mut *guard {
                Object::Condition(c) if c.lock.owner == Some(who) => {
                    let all: Vec<u64> = c.waiters.drain(..).collect();
                    c.notified.extend(all);
                    Reply::Ok
                }
                _ => fail(Failure::NotHeld("Condition".into())),
            },
            ConditionOp::Wait(wait) => return self.condition_wait(guard, who, wait, client),
        };
        drop(guard);
        self.changed.notify_all();
        (reply, None)
    }

    /// `Condition.wait`: releases the lock, waits for a notification (or
    /// the timeout), and takes the lock again at its depth.
    fn condition_wait<'a>(
        &'a self,
        mut guard: MutexGuard<'a, Object>,
        who: Owner,
        wait: Wait,
        client: &Connection,
    ) -> (Reply, Option<Undo>) {
        let (ticket, depth) = match &mut *guard {
            Object::Condition(c) if c.lock.owner == Some(who) => {
                let depth = c.lock.depth;
                c.lock.owner = None;
                c.lock.depth = 0;
                let t = c.next_ticket;
                c.next_ticket += 1;
                c.waiters.push_back(t);
                (t, depth)
            }
            _ => return (fail(Failure::NotHeld("Condition".into())), None),
        };
        self.changed.notify_all();
        let (mut guard, w) = self.wait_until(guard, client, wait, |o| match o {
            Object::Condition(c) => c.notified.remove(&ticket).then_some(()),
            _ => None,
        });
        let notified = matches!(w, Waited::Ready(()));
        if let Object::Condition(c) = &mut *guard
            && !notified
        {
            c.waiters.retain(|t| *t != ticket);
        }
        if matches!(w, Waited::Gone) {
            return (Reply::Bool(false), None);
        }
        let (_g, w) = self.wait_until(guard, client, None, |o| match o {
            Object::Condition(c) => try_take(&mut c.lock, who).then(|| c.lock.depth = depth),
            _ => None,
        });
        match w {
            Waited::Ready(()) => (Reply::Bool(notified), Some(Undo::Release(who))),
            _ => (Reply::Bool(false), None),
        }
    }

    pub(crate) fn event(&self, op: EventOp, client: &Connection) -> Reply {
        let mut guard = self.lock();
        let reply = match op {
            EventOp::Set | EventOp::Clear => match &mut *guard {
                Object::Event(flag) => {
                    *flag = matches!(op, EventOp::Set);
                    Reply::Ok
                }
                _ => wrong_kind(),
            },
            EventOp::IsSet => {
                return match &*guard {
                    Object::Event(flag) => Reply::Bool(*flag),
                    _ => wrong_kind(),
                };
            }
            EventOp::Wait(wait) => {
                let (_g, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Event(true) => Some(Reply::Bool(true)),
                    Object::Event(false) => None,
                    _ => Some(wrong_kind()),
                });
                return match w {
                    Waited::Ready(r) => r,
                    _ => Reply::Bool(false),
                };
            }
        };
        drop(guard);
        self.changed.notify_all();
        reply
    }

    pub(crate) fn barrier(&self, op: BarrierOp, client: &Connection) -> Reply {
        let mut guard = self.lock();
        let Object::Barrier(b) = &mut *guard else {
            return wrong_kind();
        };
        let reply = match op {
            BarrierOp::Wait(wait) => {
                if b.broken {
                    return fail(Failure::BrokenBarrier);
                }
                let index = b.waiting;
                b.waiting += 1;
                if b.waiting == b.parties {
                    b.generation += 1;
                    b.waiting = 0;
                    drop(guard);
                    self.changed.notify_all();
                    return Reply::Count(index);
                }
                let generation = b.generation;
                let wait = wait.or(b.timeout);
                let (mut guard, w) = self.wait_until(guard, client, wait, |o| match o {
                    Object::Barrier(b) if b.generation != generation => {
                        Some(b.reset != Some(generation))
                    }
                    Object::Barrier(b) if b.broken => {
                        b.waiting = b.waiting.saturating_sub(1);
                        Some(false)
                    }
                    _ => None,
                });
                let reply = match w {
                    Waited::Ready(true) => Reply::Count(index),
                    Waited::Ready(false) => fail(Failure::BrokenBarrier),
                    _ => {
                        // A waiter that times out breaks the barrier.
                        if let Object::Barrier(b) = &mut *guard {
                            b.broken = true;
                            b.waiting = b.waiting.saturating_sub(1);
                        }
                        fail(Failure::BrokenBarrier)
                    }
                };
                drop(guard);
                self.changed.notify_all();
                return reply;
            }
            BarrierOp::Abort => {
                b.broken = true;
                Reply::Ok
            }
            BarrierOp::Reset => {
                if b.waiting > 0 {
                    b.reset = Some(b.generation);
                    b.generation += 1;
                    b.waiting = 0;
                }
                b.broken = false;
                Reply::Ok
            }
            BarrierOp::Parties => return Reply::Count(b.parties),
            BarrierOp::NWaiting => return Reply::Count(b.waiting),
            BarrierOp::Broken => return Reply::Bool(b.broken),
        };
        drop(guard);
        self.changed.notify_all();
        reply
    }

    /// A method of a registered type; a panic in it is the call's error.
    pub(crate) fn call(&self, method: &str, args: &[u8]) -> Reply {
        let mut guard = self.lock();
        let Object::Registered(served) = &mut *guard else {
            return wrong_kind();
        };
        let result = quietly(|| served.call_method(method, Args::new(args)));
        match result {
            Ok(Ok(bytes)) => Reply::Value(Bytes::from(bytes)),
            Ok(Err(e)) => fail(Failure::Remote(e.to_string())),
            Err(panic) => fail(Failure::Remote(format!(
                "method {method:?} panicked: {}",
                mp_proc::plumbing::panic_message(&*panic)
            ))),
        }
    }
}

thread_local! {
    /// This thread runs user code whose panic is its caller's error, sent
    /// back with its message: it is not printed here too.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs user code (a registered type's method or factory), catching a
/// panic without printing it: the client gets it as its call's error (as
/// CPython's server sends the exception back without a traceback).
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r
}

/// Takes the lock for `who` if it is free (or held by `who`, reentrant).
fn try_take(l: &mut LockState, who: Owner) -> bool {
    match l.owner {
        None => {
            l.owner = Some(who);
            l.depth = 1;
            true
        }
        Some(o) if o == who && l.reentrant => {
            l.depth += 1;
            true
        }
        _ => false,
    }
}

/// One release by `who`: a `Lock` may be released by any thread (as
/// `threading.Lock`), an `RLock` only by its owner.
fn release(l: &mut LockState, who: Owner, what: &str) -> Reply {
    match l.owner {
        Some(o) if o == who || !l.reentrant => {
            l.depth -= 1;
            if l.depth == 0 || !l.reentrant {
                l.owner = None;
                l.depth = 0;
            }
            Reply::Ok
        }
        _ => fail(Failure::NotHeld(what.into())),
    }
}

/// Releases every level `who` holds.
fn release_all(l: &mut LockState, who: Owner) {
    if l.owner == Some(who) {
        l.owner = None;
        l.depth = 0;
    }
}

/// The operations of the container kinds (never waiting).
pub(crate) fn dict(d: &mut Object, op: DictOp) -> Reply {
    let Object::Dict(d) = d else {
        return wrong_kind();
    };
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

pub(crate) fn list(l: &mut Object, op: ListOp) -> Reply {
    let Object::List(l) = l else {
        return wrong_kind();
    };
    let out_of_range = || fail(Failure::Remote("list index out of range".into()));
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

pub(crate) fn namespace(n: &mut Object, op: NamespaceOp) -> Reply {
    let Object::Namespace(n) = n else {
        return wrong_kind();
    };
    match op {
        NamespaceOp::Set(name, v) => {
            n.insert(name, v);
            Reply::Ok
        }
        NamespaceOp::Get(name) => match n.get(&name) {
            Some(v) => Reply::Maybe(Some(v.clone())),
            None => fail(Failure::Remote(format!(
                "'Namespace' object has no attribute '{name}'"
            ))),
        },
    }
}

pub(crate) fn value(v: &mut Object, op: ValueOp) -> Reply {
    let Object::Value(v) = v else {
        return wrong_kind();
    };
    match op {
        ValueOp::Get => Reply::Maybe(Some(v.clone())),
        ValueOp::Set(new) => {
            *v = new;
            Reply::Ok
        }
    }
}
