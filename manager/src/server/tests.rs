//! The server against bad clients: it answers with an error or drops the
//! client, never panics, and every other client goes on.

use std::io::Write;
use std::os::fd::AsFd;

use mp_proc::connection::Client;

use super::*;
use crate::kinds::{dict, queue, semaphore};

const KEY: &[u8] = b"server tests";

/// A server on a thread of this process (also for `trust_tests`).
pub(super) struct Running {
    _dir: tempfile::TempDir,
    pub(super) address: Address,
    thread: std::thread::JoinHandle<()>,
}

pub(super) fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let address = Address::Unix(dir.path().join("s"));
    let listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
    let thread = std::thread::spawn(move || serve(listener, Vec::new(), None, false, false));
    Running {
        _dir: dir,
        address,
        thread,
    }
}

impl Running {
    /// An authenticated connection, in no session yet.
    pub(super) fn raw(&self) -> Connection {
        Client::connect(&self.address, Some(KEY)).unwrap()
    }

    /// A new session's connection, and the session's id.
    pub(super) fn session(&self) -> (Connection, SessionId) {
        let c = self.raw();
        match call(&c, &Request::Hello(None)) {
            Reply::Session(id) => (c, id),
            r => panic!("{r:?}"),
        }
    }

    fn client(&self) -> Connection {
        self.session().0
    }

    pub(super) fn stop(self) {
        let c = self.client();
        call(&c, &Request::Shutdown);
        self.thread.join().unwrap();
    }
}

pub(super) fn call(c: &Connection, r: &Request) -> Reply {
    c.send(r).unwrap();
    c.recv().unwrap()
}

pub(super) fn is_failure(r: &Reply) -> bool {
    matches!(r, Reply::Fail(_))
}

#[test]
fn garbage_gets_an_error_and_the_client_goes_on() {
    let _g = mp_testkit::guard();
    let s = start();
    let c = s.client();
    c.send_bytes(b"\xff\xff\xff\xff garbage").unwrap();
    assert!(is_failure(&c.recv::<Reply>().unwrap()));
    assert!(matches!(call(&c, &Request::Ping), Reply::Ok));
    // Garbage instead of the first request: refused and dropped.
    let raw = s.raw();
    raw.send_bytes(b"junk").unwrap();
    assert!(is_failure(&raw.recv::<Reply>().unwrap()));
    assert!(raw.recv_bytes().is_err(), "dropped");
    assert!(matches!(call(&c, &Request::Ping), Reply::Ok));
    drop((c, raw));
    s.stop();
}

#[test]
fn an_oversized_or_truncated_frame_drops_only_that_client() {
    let _g = mp_testkit::guard();
    let s = start();
    let other = s.client();
    for frame in [
        &0x7fff_ffffu32.to_be_bytes()[..],        // over the limit
        &[0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7][..], // then the peer hangs up
    ] {
        let c = s.client();
        let fd = c.as_fd().try_clone_to_owned().unwrap();
        let mut stream = std::os::unix::net::UnixStream::from(fd);
        stream.write_all(frame).unwrap();
        if frame.len() > 4 {
            drop(stream);
            drop(c);
            assert!(matches!(call(&other, &Request::Ping), Reply::Ok));
            continue;
        }
        assert!(c.recv_bytes().is_err(), "dropped");
        assert!(matches!(call(&other, &Request::Ping), Reply::Ok));
    }
    drop(other);
    s.stop();
}

#[test]
fn unknown_objects_and_methods_are_errors() {
    let _g = mp_testkit::guard();
    let s = start();
    let c = s.client();
    assert!(is_failure(&call(&c, &Request::Dict(999, dict::Op::Len))));
    assert!(is_failure(&call(&c, &Request::IncRef(999))));
    let Reply::Id(q) = call(
        &c,
        &Request::Create(Kind::Queue {
            maxsize: 0,
            joinable: false,
        }),
    ) else {
        panic!("no queue")
    };
    // A dict's method on a queue, a registered method on a built-in,
    // a queue's join on a plain queue, an unknown type.
    assert!(is_failure(&call(&c, &Request::Dict(q, dict::Op::Len))));
    assert!(is_failure(&call(
        &c,
        &Request::Call(q, "put".into(), Bytes::default())
    )));
    assert!(is_failure(&call(
        &c,
        &Request::Queue(q, queue::Op::TaskDone)
    )));
    assert!(is_failure(&call(
        &c,
        &Request::Create(Kind::Registered("Nope".into()))
    )));
    let barrier = Kind::Barrier {
        parties: 0,
        timeout: None,
    };
    assert!(is_failure(&call(&c, &Request::Create(barrier))));
    // A barrier whose action is not a function this tree signed.
    let forged = Kind::BarrierWithAction {
        parties: 2,
        timeout: None,
        action: Bytes::from(vec![0xff; 40]),
    };
    assert!(matches!(
        call(&c, &Request::Create(forged)),
        Reply::Fail(Failure::Remote(m)) if m.contains("action is refused")
    ));
    assert!(is_failure(&call(&c, &Request::Hello(None))));
    // Joining a session that does not exist.
    let raw = s.raw();
    assert!(is_failure(&call(&raw, &Request::Hello(Some(12345)))));
    assert!(matches!(call(&c, &Request::Ping), Reply::Ok));
    drop((c, raw));
    s.stop();
}

/// A client that hangs up while its `get` waits takes nothing: the item
/// that arrives goes to the next client.
#[test]
fn a_client_gone_mid_call_loses_nothing() {
    let _g = mp_testkit::guard();
    let s = start();
    let b = s.client();
    let Reply::Id(q) = call(
        &b,
        &Request::Create(Kind::Queue {
            maxsize: 0,
            joinable: false,
        }),
    ) else {
        panic!("no queue")
    };
    let a = s.client();
    a.send(&Request::Queue(q, queue::Op::Get(None))).unwrap();
    drop(a);
    let item = Bytes::from(vec![7]);
    assert!(matches!(
        call(&b, &Request::Queue(q, queue::Op::Put(item.clone(), None))),
        Reply::Ok
    ));
    match call(&b, &Request::Queue(q, queue::Op::Get(None))) {
        Reply::Maybe(Some(got)) => assert_eq!(got, item),
        r => panic!("{r:?}"),
    }
    drop(b);
    s.stop();
}

#[test]
fn a_wrong_authkey_is_refused_before_any_request() {
    let _g = mp_testkit::guard();
    let s = start();
    let wrong = Client::connect(&s.address, Some(b"wrong"));
    assert!(matches!(wrong, Err(mp_proc::Error::Authentication(_))));
    let c = s.client();
    assert!(matches!(call(&c, &Request::Ping), Reply::Ok));
    drop(c);
    s.stop();
}

/// A client that hangs up while its semaphore `acquire` waits takes
/// nothing: the unit released meanwhile goes to the next client (given
/// back if the gone client's wait took it before it noticed).
#[test]
fn a_client_gone_mid_acquire_takes_no_unit() {
    let _g = mp_testkit::guard();
    let s = start();
    let b = s.client();
    let kind = Kind::Semaphore {
        value: 0,
        bounded: false,
    };
    let Reply::Id(sem) = call(&b, &Request::Create(kind)) else {
        panic!("no semaphore")
    };
    let a = s.client();
    a.send(&Request::Semaphore(sem, semaphore::Op::Acquire(None)))
        .unwrap();
    drop(a);
    assert!(matches!(
        call(&b, &Request::Semaphore(sem, semaphore::Op::Release)),
        Reply::Ok
    ));
    let acquire = Request::Semaphore(sem, semaphore::Op::Acquire(None));
    assert!(matches!(call(&b, &acquire), Reply::Bool(true)));
    assert!(matches!(
        call(&b, &Request::Semaphore(sem, semaphore::Op::Value)),
        Reply::Count(0)
    ));
    drop(b);
    s.stop();
}

/// Long enough for any server to answer; a bug shows as `Bool(false)`.
const LONG: Option<std::time::Duration> = Some(std::time::Duration::from_secs(30));

fn create(c: &Connection, kind: Kind) -> u64 {
    match call(c, &Request::Create(kind)) {
        Reply::Id(id) => id,
        r => panic!("{r:?}"),
    }
}

fn lock_op(c: &Connection, id: u64, thread: u64, op: crate::kinds::lock::Op) -> Reply {
    call(c, &Request::Lock(id, thread, op))
}

/// A client that hangs up while it waits for a lock, or in a condition's
/// wait, takes nothing: the lock comes free for the others (given back
/// if the gone client's wait took it before it noticed).
#[test]
fn a_client_gone_mid_lock_or_condition_wait_leaves_the_lock_to_others() {
    use crate::kinds::condition;
    use crate::kinds::lock::Op::{Acquire, Release};
    let _g = mp_testkit::guard();
    let s = start();
    let a = s.client();
    let c = create(&a, Kind::Condition);
    assert!(matches!(
        lock_op(&a, c, 1, Acquire(None)),
        Reply::Bool(true)
    ));
    // Gone mid-acquire.
    let b = s.client();
    b.send(&Request::Lock(c, 1, Acquire(None))).unwrap();
    drop(b);
    assert!(matches!(lock_op(&a, c, 1, Release), Reply::Ok));
    let d = s.client();
    assert!(matches!(
        lock_op(&d, c, 1, Acquire(LONG)),
        Reply::Bool(true)
    ));
    assert!(matches!(lock_op(&d, c, 1, Release), Reply::Ok));
    // Gone mid-wait (the wait released the lock), then notified.
    let e = s.client();
    assert!(matches!(
        lock_op(&e, c, 1, Acquire(None)),
        Reply::Bool(true)
    ));
    e.send(&Request::Condition(c, 1, condition::Op::Wait(None)))
        .unwrap();
    assert!(matches!(
        lock_op(&d, c, 1, Acquire(LONG)),
        Reply::Bool(true)
    ));
    drop(e);
    let notify_all = Request::Condition(c, 1, condition::Op::NotifyAll);
    assert!(matches!(call(&d, &notify_all), Reply::Ok));
    assert!(matches!(lock_op(&d, c, 1, Release), Reply::Ok));
    let f = s.client();
    assert!(matches!(
        lock_op(&f, c, 7, Acquire(LONG)),
        Reply::Bool(true)
    ));
    drop((a, d, f));
    s.stop();
}

/// An RLock (a Condition's lock too) is owned by a session's thread:
/// another thread of the session, or the same thread number in another
/// session, neither takes nor releases it; its owner takes it again; a
/// session that ends gives it back.
#[test]
fn an_rlock_is_owned_by_a_sessions_thread_and_freed_with_its_session() {
    use crate::kinds::lock::Op::{Acquire, Locked, Release};
    let _g = mp_testkit::guard();
    let s = start();
    let (a, session) = s.session();
    let a2 = s.raw();
    assert!(matches!(
        call(&a2, &Request::Hello(Some(session))),
        Reply::Session(_)
    ));
    let b = s.client();
    for kind in [Kind::RLock, Kind::Condition] {
        let r = create(&a, kind);
        assert!(matches!(call(&b, &Request::IncRef(r)), Reply::Ok)); // outlives a
        let now = Some(std::time::Duration::ZERO);
        assert!(matches!(
            lock_op(&a, r, 1, Acquire(None)),
            Reply::Bool(true)
        ));
        assert!(matches!(
            lock_op(&a2, r, 1, Acquire(None)),
            Reply::Bool(true)
        ));
        assert!(matches!(
            lock_op(&a2, r, 2, Acquire(now)),
            Reply::Bool(false)
        ));
        assert!(matches!(
            lock_op(&b, r, 1, Acquire(now)),
            Reply::Bool(false)
        ));
        assert!(is_failure(&lock_op(&a, r, 2, Release)));
        assert!(is_failure(&lock_op(&b, r, 1, Release)));
        assert!(matches!(lock_op(&a2, r, 1, Release), Reply::Ok));
        assert!(matches!(lock_op(&a, r, 1, Release), Reply::Ok));
        assert!(is_failure(&lock_op(&a, r, 1, Release)));
        assert!(matches!(
            lock_op(&a, r, 1, Acquire(None)),
            Reply::Bool(true)
        ));
        assert!(matches!(lock_op(&b, r, 1, Locked), Reply::Bool(true)));
    }
    // The session ends with its last connection: its locks come free.
    drop(a);
    drop(a2);
    for r in [1, 2] {
        assert!(matches!(
            lock_op(&b, r, 1, Acquire(LONG)),
            Reply::Bool(true)
        ));
    }
    drop(b);
    s.stop();
}

/// The extremes of every number a request carries (counts, bounds,
/// indices, waits) are answered, never a panic or an overflow, and the
/// client goes on.
#[test]
fn extreme_numbers_in_requests_are_answered() {
    use crate::kinds::{barrier, condition, event, list, lock};
    use std::time::Duration;
    let _g = mp_testkit::guard();
    let s = start();
    let c = s.client();
    let huge = Some(Duration::MAX);
    let now = Some(Duration::ZERO);
    let sem = create(
        &c,
        Kind::Semaphore {
            value: u64::MAX,
            bounded: false,
        },
    );
    assert!(is_failure(&call(
        &c,
        &Request::Semaphore(sem, semaphore::Op::Release)
    )));
    assert!(matches!(
        call(&c, &Request::Semaphore(sem, semaphore::Op::Acquire(huge))),
        Reply::Bool(true)
    ));
    let bounded = create(
        &c,
        Kind::Semaphore {
            value: u64::MAX,
            bounded: true,
        },
    );
    assert!(is_failure(&call(
        &c,
        &Request::Semaphore(bounded, semaphore::Op::Release)
    )));
    let q = create(
        &c,
        Kind::Queue {
            maxsize: u64::MAX,
            joinable: true,
        },
    );
    let item = Bytes::from(vec![1]);
    assert!(matches!(
        call(&c, &Request::Queue(q, queue::Op::Put(item, huge))),
        Reply::Ok
    ));
    assert!(matches!(
        call(&c, &Request::Queue(q, queue::Op::Get(huge))),
        Reply::Maybe(Some(_))
    ));
    assert!(matches!(
        call(&c, &Request::Queue(q, queue::Op::Join(now))),
        Reply::Fail(_)
    ));
    assert!(matches!(
        call(&c, &Request::Queue(q, queue::Op::TaskDone)),
        Reply::Ok
    ));
    assert!(is_failure(&call(
        &c,
        &Request::Queue(q, queue::Op::TaskDone)
    )));
    assert!(matches!(
        call(&c, &Request::Queue(q, queue::Op::Join(huge))),
        Reply::Ok
    ));
    let cond = create(&c, Kind::Condition);
    let thread = u64::MAX;
    assert!(matches!(
        lock_op(&c, cond, thread, lock::Op::Acquire(huge)),
        Reply::Bool(true)
    ));
    let notify = condition::Op::Notify(u64::MAX);
    assert!(matches!(
        call(&c, &Request::Condition(cond, thread, notify)),
        Reply::Ok
    ));
    let wait = condition::Op::Wait(now);
    assert!(matches!(
        call(&c, &Request::Condition(cond, thread, wait)),
        Reply::Bool(false)
    ));
    assert!(matches!(
        lock_op(&c, cond, thread, lock::Op::Release),
        Reply::Ok
    ));
    let b = create(
        &c,
        Kind::Barrier {
            parties: u64::MAX,
            timeout: huge,
        },
    );
    assert!(matches!(
        call(&c, &Request::Barrier(b, barrier::Op::Wait(now))),
        Reply::Fail(Failure::BrokenBarrier)
    ));
    assert!(matches!(
        call(&c, &Request::Barrier(b, barrier::Op::Parties)),
        Reply::Count(_)
    ));
    let e = create(&c, Kind::Event);
    assert!(matches!(
        call(&c, &Request::Event(e, event::Op::Set)),
        Reply::Ok
    ));
    assert!(matches!(
        call(&c, &Request::Event(e, event::Op::Wait(huge))),
        Reply::Bool(true)
    ));
    let l = create(&c, Kind::Array(vec![Bytes::from(vec![0])]));
    for i in [1, u64::MAX] {
        assert!(matches!(
            call(&c, &Request::List(l, list::Op::Get(i))),
            Reply::Fail(Failure::Index { .. })
        ));
    }
    for id in [0, u64::MAX] {
        assert!(is_failure(&call(&c, &Request::Queue(id, queue::Op::Qsize))));
        assert!(matches!(call(&c, &Request::DecRef(id)), Reply::Ok));
    }
    assert!(matches!(call(&c, &Request::Ping), Reply::Ok));
    drop(c);
    s.stop();
}

/// A sort's reordering (`Permute`) applies only to the version of the list
/// it read: a change in between makes it a no (the client reads again),
/// and anything but a permutation of the items is refused.
#[test]
fn a_list_reorders_only_the_version_it_was_read_at() {
    use crate::kinds::list::Op;
    let _g = mp_testkit::guard();
    let s = start();
    let c = s.client();
    let id = match call(&c, &Request::Create(Kind::List)) {
        Reply::Id(id) => id,
        r => panic!("{r:?}"),
    };
    let b = |x: &[u8]| Bytes::from(x.to_vec());
    let list = |op| call(&c, &Request::List(id, op));
    assert!(matches!(
        list(Op::Extend(vec![b(b"b"), b(b"a")])),
        Reply::Ok
    ));
    let version = |r: Reply| match r {
        Reply::Versioned(v, items) => (v, items),
        r => panic!("{r:?}"),
    };
    let (v, items) = version(list(Op::Snapshot));
    assert_eq!(items, [b(b"b"), b(b"a")]);
    // Someone else's change in between: not applied.
    assert!(matches!(list(Op::Push(b(b"c"))), Reply::Ok));
    assert!(matches!(
        list(Op::Permute(v, vec![1, 0])),
        Reply::Bool(false)
    ));
    let (v2, items) = version(list(Op::Snapshot));
    assert_ne!(v, v2);
    assert_eq!(items, [b(b"b"), b(b"a"), b(b"c")]);
    // Not a permutation of the 3 items: too short, a repeat, out of range.
    for perm in [
        vec![1, 0],
        vec![0, 0, 1],
        vec![0, 1, 3],
        vec![0, 1, u64::MAX],
    ] {
        assert!(is_failure(&list(Op::Permute(v2, perm))));
    }
    // Nothing moved, and a read leaves the version alone.
    let (v3, items) = version(list(Op::Snapshot));
    assert_eq!((v3, &items[..]), (v2, &[b(b"b"), b(b"a"), b(b"c")][..]));
    assert!(matches!(
        list(Op::Permute(v2, vec![1, 0, 2])),
        Reply::Bool(true)
    ));
    match list(Op::ToVec) {
        Reply::List(items) => assert_eq!(items, [b(b"a"), b(b"b"), b(b"c")]),
        r => panic!("{r:?}"),
    }
    // The same version again: it moved on with the reordering.
    assert!(matches!(
        list(Op::Permute(v2, vec![1, 0, 2])),
        Reply::Bool(false)
    ));
    drop(c);
    s.stop();
}

/// A condition over a lock shares it; one over anything but a plain lock
/// (an event, a condition, an id of nothing) is refused. `ReleaseOwn` is
/// the holder's only; a closed queue refuses puts and, drained, gets.
#[test]
fn a_condition_over_a_lock_shares_it_and_release_own_is_the_holders() {
    use crate::kinds::condition;
    use crate::kinds::lock::Op::{Acquire, Locked, ReleaseOwn};
    let _g = mp_testkit::guard();
    let s = start();
    let a = s.client();
    let l = create(&a, Kind::Lock);
    let c = create(&a, Kind::ConditionOver(l));
    assert!(matches!(
        lock_op(&a, l, 1, Acquire(None)),
        Reply::Bool(true)
    ));
    // Held through the lock: the condition's lock is held too.
    let notify = Request::Condition(c, 1, condition::Op::Notify(1));
    assert!(matches!(call(&a, &notify), Reply::Ok));
    assert!(matches!(
        call(&a, &Request::Condition(c, 2, condition::Op::Notify(1))),
        Reply::Fail(Failure::NotHeld(_))
    ));
    assert!(matches!(
        lock_op(&a, l, 2, ReleaseOwn),
        Reply::Fail(Failure::NotHeld(_))
    ));
    assert!(matches!(lock_op(&a, c, 1, ReleaseOwn), Reply::Ok));
    assert!(matches!(lock_op(&a, l, 1, Locked), Reply::Bool(false)));
    let e = create(&a, Kind::Event);
    for not_a_lock in [e, c, u64::MAX] {
        assert!(
            is_failure(&call(&a, &Request::Create(Kind::ConditionOver(not_a_lock)))),
            "{not_a_lock}"
        );
    }
    let q = create(
        &a,
        Kind::Queue {
            maxsize: 0,
            joinable: false,
        },
    );
    let put = Request::Queue(q, queue::Op::Put(Bytes::from(vec![1]), None));
    assert!(matches!(call(&a, &put), Reply::Ok));
    assert!(matches!(
        call(&a, &Request::Queue(q, queue::Op::Close)),
        Reply::Ok
    ));
    assert!(matches!(call(&a, &put), Reply::Fail(Failure::Closed)));
    let get = Request::Queue(q, queue::Op::Get(None));
    assert!(matches!(call(&a, &get), Reply::Maybe(Some(_))));
    assert!(matches!(call(&a, &get), Reply::Fail(Failure::Closed)));
    drop(a);
    s.stop();
}
