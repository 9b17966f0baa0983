//! `Connection` and `pipe`: CPython's frames, bounded and checked, between
//! processes of every start method.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use mp_proc::connection::wait;
use mp_proc::{Connection, Error, Process, StartMethod, pipe};

use mp_testkit::guard;

mp_testkit::for_each_method!(
    echo_child_round_trips_values_bytes_and_big_messages,
    a_peer_that_exits_is_end_of_file_not_a_hang,
    a_peer_killed_mid_frame_is_a_truncated_frame,
    simplex_pipe_ends_work_in_a_child,
    wait_collects_messages_from_many_children,
);

/// Raw access to the descriptor behind a connection, for writing broken frames.
fn raw_writer(conn: &Connection) -> File {
    File::from(conn.as_fd().try_clone_to_owned().unwrap())
}

fn echo(conn: Connection) {
    loop {
        match conn.recv_bytes() {
            Ok(msg) if msg == b"quit" => return,
            Ok(msg) => conn.send_bytes(&msg).unwrap(),
            Err(_) => return,
        }
    }
}

fn echo_child_round_trips_values_bytes_and_big_messages(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(echo, there).start_method(method);
    p.start().unwrap();
    here.send(&("ping", 42u32)).unwrap();
    assert_eq!(
        here.recv::<(String, u32)>().unwrap(),
        ("ping".to_string(), 42)
    );
    here.send_bytes(b"").unwrap();
    assert_eq!(here.recv_bytes().unwrap(), b"");
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 253) as u8).collect();
    here.send_bytes(&big).unwrap();
    assert_eq!(here.recv_bytes().unwrap(), big);
    here.send_bytes(b"into").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(here.recv_bytes_into(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"into");
    here.send_bytes(b"quit").unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

fn say_nothing(_conn: Connection) {}

fn a_peer_that_exits_is_end_of_file_not_a_hang(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(say_nothing, there).start_method(method);
    p.start().unwrap();
    assert!(matches!(here.recv::<u32>(), Err(Error::Eof)));
    assert!(matches!(here.recv_bytes(), Err(Error::Eof)));
    assert!(
        here.poll(Some(Duration::ZERO)).unwrap(),
        "end of file counts as ready"
    );
    assert!(
        here.send(&1u8).unwrap_err().is_disconnect(),
        "sending to a gone peer is an error"
    );
    assert_eq!(p.join().unwrap(), 0);
}

fn a_peer_killed_mid_frame_is_a_truncated_frame(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let (signal_here, signal_there) = pipe(true).unwrap();
    let mut p = Process::new(stall_mid_frame, (there, signal_there)).start_method(method);
    p.start().unwrap();
    assert_eq!(signal_here.recv::<String>().unwrap(), "half sent");
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGKILL);
    match here.recv_bytes() {
        Err(Error::TruncatedFrame {
            expected: 100,
            got: 10,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(here.recv_bytes(), Err(Error::Desynchronized)));
}

/// Writes the first 10 bytes of a 100-byte frame, says so, and waits to be killed.
fn stall_mid_frame((conn, signal): (Connection, Connection)) {
    let mut raw = raw_writer(&conn);
    raw.write_all(&100i32.to_be_bytes()).unwrap();
    raw.write_all(b"only ten..").unwrap();
    signal.send(&"half sent").unwrap();
    let _ = signal.recv_bytes(); // until killed
}

fn simplex_child((reader, writer): (Connection, Connection)) {
    let n: u64 = reader.recv().unwrap();
    writer.send(&(n + 1)).unwrap();
}

fn simplex_pipe_ends_work_in_a_child(method: StartMethod) {
    let _g = guard();
    let (to_child_r, to_child_w) = pipe(false).unwrap();
    let (from_child_r, from_child_w) = pipe(false).unwrap();
    let mut p = Process::new(simplex_child, (to_child_r, from_child_w)).start_method(method);
    p.start().unwrap();
    to_child_w.send(&41u64).unwrap();
    assert_eq!(from_child_r.recv::<u64>().unwrap(), 42);
    assert_eq!(p.join().unwrap(), 0);
}

fn send_ten((conn, id): (Connection, u32)) {
    for i in 0..10u32 {
        conn.send(&(id, i)).unwrap();
    }
}

fn wait_collects_messages_from_many_children(method: StartMethod) {
    let _g = guard();
    let mut readers = Vec::new();
    let mut procs = Vec::new();
    for id in 0..4 {
        let (r, w) = pipe(false).unwrap();
        let mut p = Process::new(send_ten, (w, id)).start_method(method);
        p.start().unwrap();
        readers.push(r);
        procs.push(p);
    }
    let mut got = Vec::new();
    let mut open: Vec<usize> = (0..4).collect();
    while !open.is_empty() {
        let conns: Vec<&Connection> = open.iter().map(|&i| &readers[i]).collect();
        let ready = wait(&conns, None).unwrap();
        assert!(!ready.is_empty());
        let mut closed = Vec::new();
        for r in ready {
            match conns[r].recv::<(u32, u32)>() {
                Ok(m) => got.push(m),
                Err(Error::Eof) => closed.push(open[r]),
                Err(e) => panic!("{e}"),
            }
        }
        open.retain(|i| !closed.contains(i));
    }
    got.sort_unstable();
    let expected: Vec<(u32, u32)> = (0..4)
        .flat_map(|id| (0..10).map(move |i| (id, i)))
        .collect();
    assert_eq!(got, expected);
    for p in &mut procs {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert!(
        wait(&[&readers[0]], Some(Duration::ZERO)).unwrap() == [0],
        "end of file is ready"
    );
}

// ---- in-process: the frame format and its bad inputs ----

#[test]
fn frames_are_cpython_frames() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"abc").unwrap();
    let mut raw = vec![0u8; 7];
    let mut reader = File::from(b.as_fd().try_clone_to_owned().unwrap());
    std::io::Read::read_exact(&mut reader, &mut raw).unwrap();
    assert_eq!(raw, [0, 0, 0, 3, b'a', b'b', b'c']);

    // CPython's escape for long messages: -1 then an 8-byte length.
    let mut w = raw_writer(&a);
    w.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5])
        .unwrap();
    w.write_all(b"hello").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"hello");
}

#[test]
fn messages_are_never_merged_or_split() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let sizes = [
        0usize,
        1,
        3,
        4,
        100,
        70_000,
        0,
        5,
        1 << 20,
        2,
        65_536,
        65_535,
    ];
    let writer = std::thread::spawn(move || {
        for (i, n) in sizes.iter().enumerate() {
            a.send_bytes(&vec![i as u8; *n]).unwrap();
        }
    });
    for (i, n) in sizes.iter().enumerate() {
        assert!(b.poll(None).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), vec![i as u8; *n], "message {i}");
    }
    writer.join().unwrap();
    assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn a_frame_over_the_limit_is_refused_without_allocating() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    // An 8-byte length of 2^62: refused from the header alone.
    raw_writer(&a)
        .write_all(&[0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    match b.recv_bytes() {
        Err(Error::FrameTooLong { len, max }) => {
            assert_eq!(len, 1 << 62);
            assert_eq!(max, mp_proc::connection::DEFAULT_MAX_FRAME_LEN);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(b.recv_bytes(), Err(Error::Desynchronized)),
        "the stream's place is lost"
    );

    let (a, b) = pipe(true).unwrap();
    b.set_max_frame_len(10);
    a.send_bytes(&[1; 10]).unwrap();
    assert_eq!(
        b.recv_bytes().unwrap(),
        [1; 10],
        "the limit itself is allowed"
    );
    a.send_bytes(&[1; 11]).unwrap();
    assert!(matches!(
        b.recv_bytes(),
        Err(Error::FrameTooLong { len: 11, max: 10 })
    ));
}

#[test]
fn a_negative_length_is_refused() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let mut w = raw_writer(&a);
    w.write_all(&(-5i32).to_be_bytes()).unwrap();
    w.write_all(b"hello").unwrap();
    assert!(matches!(
        b.recv_bytes(),
        Err(Error::NegativeFrameLength { len: -5 })
    ));
    assert!(matches!(b.recv::<u8>(), Err(Error::Desynchronized)));
}

#[test]
fn a_truncated_header_or_payload_is_an_error() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    raw_writer(&a).write_all(&[0, 0]).unwrap();
    drop(a);
    assert!(matches!(
        b.recv_bytes(),
        Err(Error::TruncatedFrame {
            expected: 4,
            got: 2
        })
    ));

    let (a, b) = pipe(true).unwrap();
    let mut w = raw_writer(&a);
    w.write_all(&[0, 1, 0, 0]).unwrap(); // 65536 bytes announced
    w.write_all(&[7; 40_000]).unwrap();
    drop((w, a));
    let mut buf = vec![0u8; 1 << 17];
    assert!(matches!(
        b.recv_bytes_into(&mut buf),
        Err(Error::TruncatedFrame {
            expected: 65536,
            got: 40000
        })
    ));
}

#[test]
fn bytes_that_do_not_decode_are_an_error_and_the_connection_goes_on() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(&[0xff, 0xff, 0xff]).unwrap(); // not a valid varint
    a.send(&[7u8, 2, 3]).unwrap(); // 7 is not a bool
    a.send(&(1u8, 2u8)).unwrap(); // two bytes left over for a u8
    a.send(&7u32).unwrap();
    assert!(matches!(b.recv::<u64>(), Err(Error::Decode(_))));
    assert!(matches!(b.recv::<[bool; 3]>(), Err(Error::Decode(_))));
    assert!(matches!(b.recv::<u8>(), Err(Error::Decode(_))));
    assert_eq!(b.recv::<u32>().unwrap(), 7);

    // The same with a frame too big for the read buffer.
    let mut big = vec![0xffu8; 200_000];
    big[0] = 0x80;
    a.send_bytes(&big).unwrap();
    a.send(&8u32).unwrap();
    assert!(matches!(b.recv::<String>(), Err(Error::Decode(_))));
    assert_eq!(b.recv::<u32>().unwrap(), 8);
}

#[test]
fn recv_bytes_into_gives_back_a_message_too_long_for_the_buffer() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"0123456789").unwrap();
    a.send_bytes(b"next").unwrap();
    let mut small = [0u8; 4];
    match b.recv_bytes_into(&mut small) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, b"0123456789"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.recv_bytes_into(&mut small).unwrap(), 4);
    assert_eq!(&small, b"next");
}

#[test]
fn one_way_ends_refuse_the_other_direction() {
    let _g = guard();
    let (r, w) = pipe(false).unwrap();
    assert!(r.readable() && !r.writable() && !w.readable() && w.writable());
    assert!(matches!(r.send(&1u8), Err(Error::ReadOnly)));
    assert!(matches!(r.send_bytes(b"x"), Err(Error::ReadOnly)));
    assert!(matches!(w.recv::<u8>(), Err(Error::WriteOnly)));
    assert!(matches!(w.recv_bytes(), Err(Error::WriteOnly)));
    assert!(matches!(w.poll(None), Err(Error::WriteOnly)));
    w.send(&5u8).unwrap();
    assert_eq!(r.recv::<u8>().unwrap(), 5);
}

/// Issue 15: a connection sent through a duplex connection arrives usable
/// (its descriptor goes with the message), and both keep working.
#[test]
fn a_connection_travels_through_a_connection() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let (c, d) = pipe(true).unwrap();
    a.send(&(7u8, c.clone(), Some(c))).unwrap();
    let (n, c2, c3): (u8, mp_proc::Connection, Option<mp_proc::Connection>) = b.recv().unwrap();
    assert_eq!(n, 7);
    c2.send(&"through c2").unwrap();
    assert_eq!(d.recv::<String>().unwrap(), "through c2");
    d.send(&"to c3").unwrap();
    assert_eq!(c3.unwrap().recv::<String>().unwrap(), "to c3");
    a.send(&1u8).unwrap(); // still usable
    assert_eq!(b.recv::<u8>().unwrap(), 1);
}

/// Messages with and without descriptors, all written before any is read:
/// each gets exactly its own (the kernel ends a read after the bytes that
/// brought descriptors, and the connection matches them by position).
#[test]
fn descriptors_stay_with_their_own_message() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let (c, d) = pipe(true).unwrap();
    let (e, f) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.send(&c).unwrap();
    a.send(&2u8).unwrap();
    a.send_bytes(&[9; 100_000]).unwrap();
    a.send(&(e, 3u8)).unwrap();
    a.send(&4u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    let c2: mp_proc::Connection = b.recv().unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 2);
    assert_eq!(b.recv_bytes().unwrap().len(), 100_000);
    let (e2, n): (mp_proc::Connection, u8) = b.recv().unwrap();
    assert_eq!(n, 3);
    assert_eq!(b.recv::<u8>().unwrap(), 4);
    c2.send(&"c").unwrap();
    e2.send(&"e").unwrap();
    assert_eq!(d.recv::<String>().unwrap(), "c");
    assert_eq!(f.recv::<String>().unwrap(), "e");
}

#[test]
fn poll_and_wait_time_out_with_nothing_pending() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    assert!(!b.poll(Some(Duration::from_millis(5))).unwrap());
    assert!(
        wait(&[&a, &b], Some(Duration::from_millis(5)))
            .unwrap()
            .is_empty()
    );
    assert!(wait(&[&a, &b], Some(Duration::ZERO)).unwrap().is_empty());
    // A huge timeout is "forever", not an overflow.
    a.send(&1u8).unwrap();
    assert!(b.poll(Some(Duration::MAX)).unwrap());
    assert_eq!(wait(&[&a, &b], Some(Duration::MAX)).unwrap(), [1]);
}

/// A Python peer on the other end of a pipe: CPython's `Connection` speaks
/// the same frames. Skipped (with a note) where no `python3` is installed.
#[test]
fn a_cpython_connection_is_a_peer() {
    let _g = guard();
    let Ok(probe) = std::process::Command::new("python3")
        .arg("-c")
        .arg("import multiprocessing")
        .output()
    else {
        eprintln!("note: python3 not found; the CPython interop test is skipped");
        return;
    };
    assert!(probe.status.success());
    let (ours, theirs) = pipe(true).unwrap();
    let fd = theirs.as_fd().try_clone_to_owned().unwrap();
    let script = r#"
import os, sys
from multiprocessing.connection import Connection
fd = int(sys.argv[1])
c = Connection(fd)
msg = c.recv_bytes()
c.send_bytes(b"python got " + msg)
c.send_bytes(b"x" * 100000)
c.send_bytes(b"")
"#;
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // Let the child inherit the descriptor (it is close-on-exec by default).
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(raw.to_string())
        .spawn()
        .unwrap();
    drop(fd);
    drop(theirs);
    ours.send_bytes(b"hello from rust").unwrap();
    assert_eq!(ours.recv_bytes().unwrap(), b"python got hello from rust");
    assert_eq!(ours.recv_bytes().unwrap(), vec![b'x'; 100000]);
    assert_eq!(ours.recv_bytes().unwrap(), b"");
    assert!(child.wait().unwrap().success());
    assert!(matches!(ours.recv_bytes(), Err(Error::Eof)));
}

/// Runs `script` in python3 with the other end of a duplex pipe as
/// `sys.argv[1]`; `None` where python3 is missing.
fn python_peer(script: &str) -> Option<(Connection, std::process::Child)> {
    let probe = std::process::Command::new("python3")
        .arg("-c")
        .arg("import multiprocessing.connection")
        .output()
        .ok()?;
    assert!(probe.status.success());
    let (ours, theirs) = pipe(true).unwrap();
    let fd = theirs.as_fd().try_clone_to_owned().unwrap();
    use std::os::fd::AsRawFd;
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(fd.as_raw_fd().to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(fd);
    drop(theirs);
    Some((ours, child))
}

/// CPython's handshake halves against ours, both orders, with the right key
/// and a wrong one (this machine's python3 speaks 3.11's HMAC-MD5 form; ours
/// offers `{sha256}` and accepts it).
#[test]
fn the_handshake_interoperates_with_cpython() {
    use mp_proc::connection::{answer_challenge, deliver_challenge};
    let _g = guard();
    let client = r#"
import sys
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
c = Connection(int(sys.argv[1]))
key = c.recv_bytes()
answer_challenge(c, key)
deliver_challenge(c, key)
c.send_bytes(b"python is in")
"#;
    for (python_key, ours_ok) in [(&b"secret"[..], true), (&b"wrong"[..], false)] {
        let Some((conn, mut child)) = python_peer(client) else {
            eprintln!("note: python3 not found; the CPython handshake test is skipped");
            return;
        };
        conn.send_bytes(python_key).unwrap();
        // We listen: deliver, then answer.
        let r =
            deliver_challenge(&conn, b"secret").and_then(|()| answer_challenge(&conn, b"secret"));
        if ours_ok {
            r.unwrap();
            assert_eq!(conn.recv_bytes().unwrap(), b"python is in");
            assert!(child.wait().unwrap().success());
        } else {
            assert!(matches!(r, Err(Error::Authentication(_))), "{r:?}");
            // Python raised AuthenticationError('digest sent was rejected').
            assert!(!child.wait().unwrap().success());
        }
    }
    let server = r#"
import sys
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
c = Connection(int(sys.argv[1]))
key = c.recv_bytes()
deliver_challenge(c, key)
answer_challenge(c, key)
c.send_bytes(b"welcome")
"#;
    for (python_key, ours_ok) in [(&b"secret"[..], true), (&b"wrong"[..], false)] {
        let Some((conn, mut child)) = python_peer(server) else {
            return;
        };
        conn.send_bytes(python_key).unwrap();
        // We connect: answer, then deliver.
        let r =
            answer_challenge(&conn, b"secret").and_then(|()| deliver_challenge(&conn, b"secret"));
        if ours_ok {
            r.unwrap();
            assert_eq!(conn.recv_bytes().unwrap(), b"welcome");
            assert!(child.wait().unwrap().success());
        } else {
            assert!(matches!(r, Err(Error::Authentication(_))), "{r:?}");
            assert!(!child.wait().unwrap().success());
        }
    }
}

mod listener {
    use mp_proc::Error;
    use mp_proc::connection::{Address, Client, Listener};
    use mp_testkit::guard;

    fn addresses(dir: &std::path::Path) -> Vec<Address> {
        vec![
            Address::Unix(dir.join("listener-1")),
            Address::Abstract(format!("mp-test-{}", std::process::id())),
            "127.0.0.1:0".parse().unwrap(),
        ]
    }

    /// CPython 3.13 (`Listener(authkey=b'')`): an empty key is a
    /// key, not "no authentication". A client with another key is refused;
    /// one with the empty key gets in.
    #[test]
    fn an_empty_authkey_still_authenticates() {
        let _g = guard();
        let l = Listener::bind(
            Address::Abstract(format!("mp-test-empty-{}", std::process::id())),
            Some(b""),
        )
        .unwrap();
        let at = l.address().clone();
        let clients = std::thread::spawn(move || {
            let wrong = Client::connect(&at, Some(b"not empty"));
            let right = Client::connect(&at, Some(b"")).unwrap();
            right.send_bytes(b"in").unwrap();
            wrong.map(|_| ())
        });
        let refused = l.accept();
        assert!(
            matches!(refused, Err(Error::Authentication(_))),
            "{refused:?}"
        );
        let conn = l.accept().unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"in");
        let wrong = clients.join().unwrap();
        assert!(matches!(wrong, Err(Error::Authentication(_))), "{wrong:?}");
    }

    /// Every family: a right key connects, a wrong key fails on both sides,
    /// and the listener goes on serving.
    #[test]
    fn listener_and_client_authenticate_on_every_family() {
        let _g = guard();
        let dir = tempfile::tempdir().unwrap();
        for address in addresses(dir.path()) {
            let l = Listener::bind(address.clone(), Some(b"key")).unwrap();
            let at = l.address().clone();
            if let Address::Tcp(a) = at {
                assert_ne!(a.port(), 0, "port 0 is resolved");
            }
            let a2 = at.clone();
            let clients = std::thread::spawn(move || {
                let wrong = Client::connect(&a2, Some(b"nope"));
                let right = Client::connect(&a2, Some(b"key")).unwrap();
                right.send_bytes(b"in").unwrap();
                assert_eq!(right.recv_bytes().unwrap(), b"welcome in");
                wrong.map(|_| ())
            });
            let refused = l.accept();
            assert!(
                matches!(refused, Err(Error::Authentication(_))),
                "{refused:?}"
            );
            let conn = l.accept().unwrap();
            assert_eq!(conn.recv_bytes().unwrap(), b"in");
            conn.send_bytes(b"welcome in").unwrap();
            let wrong = clients.join().unwrap();
            assert!(matches!(wrong, Err(Error::Authentication(_))), "{wrong:?}");
            drop(l);
            if let Address::Unix(p) = &at {
                assert!(!p.exists(), "the socket file is removed");
            }
        }
    }

    /// Clients that send garbage, an oversized frame, or nothing at all are
    /// refused (the silent one once the handshake's time is up), and a good
    /// client after them is served.
    #[test]
    fn bad_clients_are_refused_and_the_listener_goes_on() {
        use std::io::Write;
        let _g = guard();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listener-bad");
        let mut l = Listener::bind(Address::Unix(path.clone()), Some(b"key")).unwrap();
        l.set_handshake_timeout(std::time::Duration::from_millis(200));
        let p = path.clone();
        let clients = std::thread::spawn(move || {
            let connect = || std::os::unix::net::UnixStream::connect(&p).unwrap();
            // Garbage: a frame that is not an answer.
            let mut s = connect();
            s.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
                .unwrap();
            let garbage = s;
            // An oversized frame: 1 GiB announced.
            let mut s = connect();
            s.write_all(&[0x40, 0, 0, 0]).unwrap();
            let oversized = s;
            // Silent.
            let silent = connect();
            let good = Client::connect(&Address::Unix(p), Some(b"key")).unwrap();
            good.send_bytes(b"good").unwrap();
            drop((garbage, oversized, silent));
        });
        let mut errors = Vec::new();
        for _ in 0..3 {
            errors.push(l.accept().unwrap_err());
        }
        assert!(
            matches!(errors[0], Error::Authentication(_)),
            "{:?}",
            errors[0]
        );
        assert!(
            matches!(errors[1], Error::FrameTooLong { .. }),
            "{:?}",
            errors[1]
        );
        assert!(matches!(errors[2], Error::Timeout), "{:?}", errors[2]);
        let good = l.accept().unwrap();
        assert_eq!(good.recv_bytes().unwrap(), b"good");
        clients.join().unwrap();
    }

    #[test]
    fn addresses_parse_and_print() {
        // Resolving `localhost` opens /etc/resolv.conf: under the guard, so
        // that a guarded test's count of descriptors does not see it.
        let _g = guard();
        for s in ["127.0.0.1:80", "[::1]:8080", "/tmp/x/listener-1", "@name"] {
            let a: Address = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert!(matches!(
            "localhost:80".parse::<Address>().unwrap(),
            Address::Tcp(_)
        ));
        assert!("".parse::<Address>().is_err());
    }

    #[test]
    fn connecting_to_nothing_is_an_error() {
        let _g = guard();
        let dir = tempfile::tempdir().unwrap();
        let r = Client::connect(&Address::Unix(dir.path().join("none")), Some(b"k"));
        assert!(matches!(r, Err(Error::Os { .. })), "{r:?}");
    }

    fn python(script: &str, arg: &str) -> Option<std::process::Child> {
        let ok = std::process::Command::new("python3")
            .args(["-c", "import multiprocessing.connection"])
            .output()
            .ok()?
            .status
            .success();
        ok.then(|| {
            std::process::Command::new("python3")
                .args(["-c", script, arg])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
    }

    /// A CPython `Client` talks to our `Listener`, and our `Client` to a
    /// CPython `Listener`; a wrong key fails on both sides and our listener
    /// goes on serving.
    #[test]
    fn cpython_clients_and_listeners_are_peers() {
        let _g = guard();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listener-py");
        let l = Listener::bind(Address::Unix(path.clone()), Some(b"secret")).unwrap();
        let client = r#"
import sys
from multiprocessing.connection import Client
for key in (b"wrong", b"secret"):
    try:
        c = Client(sys.argv[1], authkey=key)
    except Exception as e:
        print(type(e).__name__, flush=True)
        continue
    c.send_bytes(b"hello from python")
    print(c.recv_bytes().decode(), flush=True)
"#;
        let Some(child) = python(client, path.to_str().unwrap()) else {
            eprintln!("note: python3 not found; the CPython Listener/Client test is skipped");
            return;
        };
        assert!(matches!(l.accept(), Err(Error::Authentication(_))));
        let conn = l.accept().unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"hello from python");
        conn.send_bytes(b"hello from rust").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "AuthenticationError\nhello from rust\n"
        );

        let py_path = dir.path().join("listener-cpython");
        let server = r#"
import sys
from multiprocessing.connection import Listener
with Listener(sys.argv[1], authkey=b"secret") as l:
    print("ready", flush=True)
    while True:
        try:
            c = l.accept()
        except Exception as e:
            print(type(e).__name__, flush=True)
            continue
        c.send_bytes(c.recv_bytes() + b" (python saw it)")
        break
"#;
        let mut child = python(server, py_path.to_str().unwrap()).unwrap();
        let mut ready = String::new();
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
        lines.read_line(&mut ready).unwrap();
        assert_eq!(ready, "ready\n");
        let addr = Address::Unix(py_path);
        let wrong = Client::connect(&addr, Some(b"wrong"));
        assert!(matches!(wrong, Err(Error::Authentication(_))), "{wrong:?}");
        let c = Client::connect(&addr, Some(b"secret")).unwrap();
        c.send_bytes(b"rust").unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"rust (python saw it)");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
        assert_eq!(rest, "AuthenticationError\n");
        assert!(child.wait().unwrap().success());
    }
}
