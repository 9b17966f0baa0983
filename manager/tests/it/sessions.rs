//! What another authenticated client can do to a session, in the bytes it
//! would send (the wire, not this crate's types): it cannot join a session
//! it did not open, so it cannot give back that session's references; and a
//! request in any form but its one encoding is refused.

use mp_manager::SyncManager;
use mp_proc::connection::Client;
use mp_proc::{Connection, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    a_client_cannot_join_another_session_and_free_its_objects,
    a_request_not_in_its_canonical_encoding_is_refused,
);

// The first bytes of requests and replies (enum tags, varints).
const HELLO: u8 = 0;
const PING: u8 = 1;
const DECREF: u8 = 5;
const SOME: u8 = 1;
const NONE: u8 = 0;
const REPLY_OK: u8 = 0;
const REPLY_FAIL: u8 = 1;

fn connect(m: &SyncManager) -> Connection {
    Client::connect(m.address(), Some(mp_proc::current_process().authkey())).unwrap()
}

fn round_trip(c: &Connection, bytes: &[u8]) -> Vec<u8> {
    c.send_bytes(bytes).unwrap();
    c.recv_bytes().unwrap()
}

fn a_client_cannot_join_another_session_and_free_its_objects(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 1).unwrap();
    // Guesses at the owner's session (an id that counts from 1 is found),
    // and, once in, gives back references to every object it might hold.
    let mut joined = 0;
    for guess in 1..=32u8 {
        let c = connect(&m);
        if round_trip(&c, &[HELLO, SOME, guess])[0] == REPLY_FAIL {
            continue;
        }
        joined += 1;
        for object in 1..=32u8 {
            for _ in 0..4 {
                round_trip(&c, &[DECREF, object]);
            }
        }
    }
    assert_eq!(joined, 0, "another client joined a session");
    assert_eq!(d.get(&1).unwrap(), Some(1));
    // A session of its own, and its DecRefs of objects it does not hold.
    let c = connect(&m);
    assert_ne!(round_trip(&c, &[HELLO, NONE])[0], REPLY_FAIL);
    for object in 1..=32u8 {
        assert_eq!(round_trip(&c, &[DECREF, object]), [REPLY_OK]);
    }
    assert_eq!(d.get(&1).unwrap(), Some(1));
    drop(c);
    m.shutdown().unwrap();
}

fn a_request_not_in_its_canonical_encoding_is_refused(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let c = connect(&m);
    assert_ne!(round_trip(&c, &[HELLO, NONE])[0], REPLY_FAIL);
    assert_eq!(round_trip(&c, &[PING]), [REPLY_OK]);
    // Ping's tag padded with a zero continuation byte.
    assert_eq!(round_trip(&c, &[PING | 0x80, 0x00])[0], REPLY_FAIL);
    // DecRef(7) with its id in three bytes.
    assert_eq!(round_trip(&c, &[DECREF, 0x87, 0x80, 0x00])[0], REPLY_FAIL);
    // The client goes on.
    assert_eq!(round_trip(&c, &[PING]), [REPLY_OK]);
    drop(c);
    m.shutdown().unwrap();
}
