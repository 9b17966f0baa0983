//! The server against clients it should not trust: a session is joined
//! only by the process that opened it, requests are decoded strictly, and
//! a session's thread gives back what its session held however it ends.

use std::time::Duration;

use super::tests::{call, is_failure, start};
use super::*;
use crate::kinds::{dict, lock, queue};
use crate::protocol;

fn raw_call(c: &Connection, bytes: &[u8]) -> Reply {
    c.send_bytes(bytes).unwrap();
    c.recv().unwrap()
}

#[test]
fn a_session_is_joined_only_with_its_id_which_no_other_client_can_guess() {
    let _g = mp_testkit::guard();
    let s = start();
    let (a, id) = s.session();
    let Reply::Id(dict) = call(&a, &Request::Create(Kind::Dict)) else {
        panic!("no dict")
    };
    for guess in [0, 1, 2, 3, id ^ 1, id.wrapping_add(1), !id] {
        let b = s.raw();
        assert!(is_failure(&call(&b, &Request::Hello(Some(guess)))));
        assert!(b.recv_bytes().is_err(), "a failed join is dropped");
    }
    // Another session gives back a reference it does not hold: nothing.
    let (b, other) = s.session();
    assert_ne!(other, id);
    for _ in 0..3 {
        assert!(matches!(call(&b, &Request::DecRef(dict)), Reply::Ok));
    }
    assert!(matches!(
        call(&a, &Request::Dict(dict, dict::Op::Len)),
        Reply::Count(0)
    ));
    // The process that opened the session joins it with more connections.
    let a2 = s.raw();
    assert!(matches!(call(&a2, &Request::Hello(Some(id))), Reply::Session(x) if x == id));
    assert!(matches!(
        call(&a2, &Request::Dict(dict, dict::Op::Len)),
        Reply::Count(0)
    ));
    drop((a, a2, b));
    s.stop();
}

#[test]
fn a_request_not_in_its_canonical_encoding_is_refused_and_the_client_goes_on() {
    let _g = mp_testkit::guard();
    let s = start();
    let (c, _) = s.session();
    assert!(matches!(raw_call(&c, &[1]), Reply::Ok), "Ping");
    for bytes in [
        &[0x81, 0x00][..],      // Ping, its tag padded
        &[1, 0],                // Ping, and a byte more
        &[5, 0x87, 0x80, 0x00], // DecRef(7), the id padded
    ] {
        assert!(is_failure(&raw_call(&c, bytes)), "{bytes:x?}");
    }
    assert!(matches!(raw_call(&c, &[1]), Reply::Ok));
    drop(c);
    s.stop();
}

/// Hand-made bytes that postcard decodes, but that are not the request's
/// encoding, are refused; the request's own bytes are taken.
#[test]
fn requests_are_decoded_strictly() {
    let mut scratch = Vec::new();
    let canonical = mp_proc::codec::encode(&Request::DecRef(300)).unwrap();
    assert_eq!(canonical, [5, 0xac, 0x02]);
    assert!(matches!(
        protocol::decode_request(&canonical, &mut scratch),
        Ok(Request::DecRef(300))
    ));
    // Queue(1, Get(Some(1 s))), and as 0 s and 10^9 ns.
    let wait = mp_proc::codec::encode(&Request::Queue(
        1,
        queue::Op::Get(Some(Duration::from_secs(1))),
    ))
    .unwrap();
    assert_eq!(wait, [13, 1, 1, 1, 1, 0]);
    assert!(protocol::decode_request(&wait, &mut scratch).is_ok());
    // 0 s and 10^9 ns: serde's `Duration` carries them into 1 s.
    let carried = [13, 1, 1, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03];
    for (bytes, postcard_takes) in [
        (&[5, 0xac, 0x82, 0x00][..], true), // 300 in three bytes
        (&[0x85, 0x00, 0xac, 0x02], true),  // the tag in two
        (&carried, true),
        (&[5, 0xac, 0x02, 0x00], false), // a byte more
    ] {
        assert_eq!(
            mp_proc::codec::decode::<Request>(bytes).is_ok(),
            postcard_takes,
            "{bytes:x?}"
        );
        assert!(
            matches!(
                protocol::decode_request(bytes, &mut scratch),
                Err(mp_proc::Error::Decode(_))
            ),
            "{bytes:x?}"
        );
    }
}

/// A server of no types, with its stop pipe's reading end.
fn bare() -> (Server, Connection) {
    let (stop_r, stop_w) = mp_proc::pipe(false).unwrap();
    let server = Server {
        table: Arc::default(),
        next: AtomicU64::new(0),
        sessions: Mutex::default(),
        types: HashMap::new(),
        stop: stop_w,
        segments: None,
        #[cfg(feature = "pool")]
        pools: Default::default(),
    };
    (server, stop_r)
}

/// A session's thread that ends by a panic still gives back its session's
/// references and locks; the owner's stops the server.
#[test]
fn a_session_thread_that_panics_gives_back_what_its_session_held() {
    let _g = mp_testkit::guard();
    let (server, stop) = bare();
    let (id, held) = server.join(None).unwrap();
    let lock = server.create(Kind::Lock).unwrap();
    held.lock().unwrap().insert(lock, 1);
    let (client, _peer) = mp_proc::pipe(true).unwrap();
    let object = server.get(lock).unwrap();
    let acquire = |session, wait| {
        let mut call = Call {
            client: &client,
            session,
            undo: None,
            pins: Vec::new(),
        };
        dispatch::<lock::Lock, _>(object.clone(), (1, lock::Op::Acquire(wait)), &mut call)
    };
    assert!(matches!(acquire(id, None), Reply::Bool(true)));
    let (other, _) = server.join(None).unwrap();
    std::thread::scope(|s| {
        let ended = s.spawn(|| {
            let _member = Member {
                server: &server,
                session: id,
                owner: true,
                stopping: false,
            };
            panic!("a bug in serving");
        });
        assert!(ended.join().is_err());
    });
    assert!(
        matches!(acquire(other, Some(Duration::ZERO)), Reply::Bool(true)),
        "the lock was kept"
    );
    assert!(server.get(lock).is_none(), "the lock's reference was kept");
    assert!(
        stop.poll(Some(Duration::ZERO)).unwrap(),
        "the server goes on"
    );
}
