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
    let thread = std::thread::spawn(move || serve(listener, Vec::new(), None, false));
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
