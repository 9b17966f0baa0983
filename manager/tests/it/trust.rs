//! A proxy's bytes are signed with its manager's key (issue 13, finding 1):
//! bytes from a peer without that key never make this process connect
//! anywhere, so its authkey cannot be relayed to a real manager.

use std::io::ErrorKind;
use std::os::unix::net::UnixListener;

use mp_manager::{DictProxy, SyncManager};
use mp_proc::codec;
use mp_testkit::guard;
use serde_bytes::ByteBuf;

#[test]
fn a_forged_proxy_does_not_connect_to_its_address() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attacker");
    // The attacker's "manager": it would relay our answer to its challenge.
    let attacker = UnixListener::bind(&path).unwrap();
    attacker.set_nonblocking(true).unwrap();
    // 18-odd bytes a peer may send: an address, an id, no key, any tag.
    let forged = codec::encode(&(
        path.display().to_string(),
        1u64,
        None::<ByteBuf>,
        ByteBuf::from(vec![0x5a; 16]),
    ))
    .unwrap();
    let r = codec::decode::<DictProxy<String, String>>(&forged);
    let message = format!("{:?}", r.as_ref().err());
    assert!(r.is_err(), "a forged proxy decoded");
    assert!(message.contains("signature"), "{message}");
    // Before the fix, decoding connected here and answered the challenge
    // with this process's authkey.
    match attacker.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the forged proxy connected to its address: {other:?}"),
    }
}

#[test]
fn a_real_proxy_still_travels_and_a_one_bit_edit_does_not() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let d = m.dict::<String, u32>().unwrap();
    d.insert("a".into(), 1).unwrap();
    let bytes = codec::encode(&d).unwrap();
    let back: DictProxy<String, u32> = codec::decode(&bytes).unwrap();
    assert_eq!(back.get(&"a".to_string()).unwrap(), Some(1));
    // One bit of the address (its first character), or of the tag (the
    // last 16 bytes).
    for at in [1, bytes.len() - 16, bytes.len() - 1] {
        let mut edited = bytes.clone();
        edited[at] ^= 1;
        assert!(codec::decode::<DictProxy<String, u32>>(&edited).is_err());
    }
    m.shutdown().unwrap();
}

#[test]
fn a_proxy_from_a_peer_with_its_own_key_does_not_connect() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attacker");
    let attacker = UnixListener::bind(&path).unwrap();
    attacker.set_nonblocking(true).unwrap();
    let text = path.display().to_string();
    let key = b"the attacker's own key".to_vec();
    // Signed under the key that comes along: before, this passed and the
    // program connected to the attacker's address.
    let tag = mp_proc::plumbing::HandleKey::new(&key)
        .sign("manager proxy", &[text.as_bytes(), &7u64.to_le_bytes()]);
    let forged = codec::encode(&(
        text,
        7u64,
        Some(ByteBuf::from(key)),
        ByteBuf::from(tag.to_vec()),
    ))
    .unwrap();
    assert!(codec::decode::<DictProxy<String, String>>(&forged).is_err());
    match attacker.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the forged proxy connected to its address: {other:?}"),
    }
}
