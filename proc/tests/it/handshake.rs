//! The handshake under hostile clients: one deadline for the whole of it
//! (a client that drips its answer a byte at a time is cut off), accept
//! split from the handshake (slow clients hold only their own handshake),
//! and a handshake that stops halfway is an error that leaks nothing.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use mp_proc::connection::{Address, Client, Listener, answer_challenge};
use mp_proc::{Connection, Error};
use mp_testkit::{Dripper, guard, open_fds};

const KEY: &[u8] = b"handshake key";

/// The handshake time of the listeners here: short, so that the tests are,
/// and long enough for a good client on a busy machine. The bad clients
/// below never end on their own, so a deadline that does not hold shows as
/// a hung test or a wrong error, not as a timing assertion.
const TIMEOUT: Duration = Duration::from_secs(1);

fn addresses(dir: &std::path::Path) -> Vec<Address> {
    vec![
        Address::Unix(dir.join("listener-hs")),
        "127.0.0.1:0".parse().unwrap(),
    ]
}

fn listener(address: Address) -> Listener {
    let mut l = Listener::bind(address, Some(KEY)).unwrap();
    l.set_handshake_timeout(TIMEOUT);
    l
}

/// A raw stream to `address`, for clients that misbehave.
fn raw(address: &Address) -> OwnedFd {
    match address {
        Address::Unix(p) => std::os::unix::net::UnixStream::connect(p).unwrap().into(),
        Address::Tcp(a) => std::net::TcpStream::connect(a).unwrap().into(),
        Address::Abstract(_) => unreachable!("not used here"),
    }
}

fn file(fd: OwnedFd) -> std::fs::File {
    std::fs::File::from(fd)
}

/// A good client and its round trip, against a listener served by `serve`.
fn good_client(address: &Address) -> Connection {
    let c = Client::connect(address, Some(KEY)).unwrap();
    c.send_bytes(b"ping").unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"ping");
    c
}

fn echo(conn: &Connection) -> mp_proc::Result<()> {
    let m = conn.recv_bytes()?;
    conn.send_bytes(&m)
}

/// `accept` (accept then handshake) ends with `Timeout` at the deadline
/// for a client that drips its answer; with a per-read timeout it ran on
/// for as long as the client kept dripping.
#[test]
fn a_dripping_client_is_cut_off_at_the_handshake_deadline() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    for address in addresses(dir.path()) {
        let l = listener(address);
        let at = l.address().clone();
        let dripper = Dripper::start(file(raw(&at)));
        let r = l.accept();
        assert!(matches!(r, Err(Error::Timeout)), "{at}: {r:?}");
        dripper.stop();
        // The listener goes on.
        let client = std::thread::spawn(move || drop(good_client(&at)));
        echo(&l.accept().unwrap()).unwrap();
        client.join().unwrap();
    }
}

/// A server that accepts with `accept_pending` and authenticates each
/// client on a thread of its own serves a good client at once, behind a
/// silent one and a dripping one; those two end in `Timeout`.
#[test]
fn a_split_accept_serves_a_good_client_behind_silent_and_dripping_ones() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    for address in addresses(dir.path()) {
        let l = listener(address);
        let at = l.address().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let mut handshakes = Vec::new();
            for i in 0..3 {
                let pending = l.accept_pending().unwrap();
                let tx = tx.clone();
                handshakes.push(std::thread::spawn(move || {
                    let r = pending.authenticate().and_then(|c| echo(&c));
                    tx.send((i, r)).unwrap();
                }));
            }
            for h in handshakes {
                h.join().unwrap();
            }
        });
        let silent = raw(&at);
        let dripper = Dripper::start(file(raw(&at)));
        drop(good_client(&at));
        let mut results: Vec<(usize, mp_proc::Result<()>)> = rx.iter().take(3).collect();
        results.sort_by_key(|(i, _)| *i);
        assert!(matches!(results[0].1, Err(Error::Timeout)), "{results:?}");
        assert!(matches!(results[1].1, Err(Error::Timeout)), "{results:?}");
        assert!(results[2].1.is_ok(), "{results:?}");
        dripper.stop();
        server.join().unwrap();
        drop(silent);
    }
}

/// Reads the server's challenge frame from a raw client.
fn read_challenge(s: &mut std::fs::File) -> Vec<u8> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).unwrap();
    let mut challenge = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut challenge).unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#"));
    challenge
}

/// A handshake that stops halfway, on either side, is a clear error: the
/// client that closes after the challenge, after half an answer, after its
/// whole half (before the server's challenge), or that goes silent halfway;
/// a server that closes after its challenge. Each time the listener goes on
/// serving and no descriptor is left behind.
#[test]
fn a_handshake_that_stops_halfway_is_an_error_and_leaks_nothing() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let l = listener(Address::Unix(dir.path().join("listener-half")));
    let at = l.address().clone();
    type Halfway = fn(&Address) -> Option<std::fs::File>;
    let cases: [(&str, Halfway); 4] = [
        ("closes after the challenge", |at| {
            read_challenge(&mut file(raw(at)));
            None
        }),
        ("closes after half an answer", |at| {
            let mut s = file(raw(at));
            read_challenge(&mut s);
            s.write_all(&[0, 0, 0, 40, b'{', b's']).unwrap();
            None
        }),
        ("closes after its own half", |at| {
            let c = Connection::from_fd(raw(at), true, true);
            answer_challenge(&c, KEY).unwrap();
            None
        }),
        ("goes silent after half an answer", |at| {
            let mut s = file(raw(at));
            read_challenge(&mut s);
            s.write_all(&[0, 0, 0, 40, b'{', b's']).unwrap();
            Some(s)
        }),
    ];
    for (what, client) in cases {
        let before = open_fds();
        let a = at.clone();
        let c = std::thread::spawn(move || client(&a));
        let r = l.accept();
        let kept = c.join().unwrap();
        match what {
            "goes silent after half an answer" => {
                assert!(matches!(r, Err(Error::Timeout)), "{what}: {r:?}")
            }
            "closes after half an answer" => assert!(
                matches!(
                    r,
                    Err(Error::TruncatedFrame {
                        expected: 40,
                        got: 2
                    })
                ),
                "{what}: {r:?}"
            ),
            _ => assert!(matches!(r, Err(Error::Eof)), "{what}: {r:?}"),
        }
        drop(kept);
        assert_eq!(open_fds(), before, "{what}: a descriptor was left behind");
        let a = at.clone();
        let client = std::thread::spawn(move || drop(good_client(&a)));
        echo(&l.accept().unwrap()).unwrap();
        client.join().unwrap();
    }

    // The client's side: a server that closes after its challenge.
    let before = open_fds();
    let path = dir.path().join("listener-raw");
    let raw_server = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = raw_server.accept().unwrap();
        let mut frame = b"#CHALLENGE#{sha256}".to_vec();
        frame.extend([7u8; 40]);
        let mut s = file(s.into());
        s.write_all(&(frame.len() as u32).to_be_bytes()).unwrap();
        s.write_all(&frame).unwrap();
        // Reads the answer (so that the client gets that far), then closes.
        let mut header = [0u8; 4];
        s.read_exact(&mut header).unwrap();
        let mut answer = vec![0u8; u32::from_be_bytes(header) as usize];
        s.read_exact(&mut answer).unwrap();
    });
    let r = Client::connect(&Address::Unix(path), Some(KEY));
    server.join().unwrap();
    assert!(
        matches!(r, Err(Error::Eof | Error::TruncatedFrame { .. })),
        "{r:?}"
    );
    assert_eq!(open_fds(), before, "the client left a descriptor behind");
}
