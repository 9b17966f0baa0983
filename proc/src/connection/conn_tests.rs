//! Unit tests of `Connection`'s reading: memory follows the bytes that arrive.

use super::*;

/// Writes `bytes` raw on `conn` from another thread (it may not fit the
/// socket's buffer), then closes it.
fn send_raw(conn: Connection, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = sys::fd::write_all(conn.as_fd(), &bytes, true);
    })
}

/// A 14-byte frame whose header claims 1 GiB: the receiver's buffer
/// never has room for more than 64 KiB (it had 32 MiB), and the frame
/// is a clear error.
#[test]
fn a_lying_length_costs_no_memory() {
    let (a, b) = crate::pipe(true).unwrap();
    let mut frame = (1u32 << 30).to_be_bytes().to_vec();
    frame.extend_from_slice(&[7; 10]);
    send_raw(a, frame).join().unwrap();
    let mut reader = b.reader().unwrap();
    let len = b.read_header(&mut reader).unwrap() as usize;
    assert_eq!(len, 1 << 30);
    let mut out = Vec::new();
    let r = b.read_payload(&mut reader, len, &mut out);
    assert!(
        matches!(r, Err(Error::TruncatedFrame { expected, got: 10 }) if expected == 1 << 30),
        "{r:?}"
    );
    assert!(out.capacity() <= READ_BUF, "{} bytes", out.capacity());
    drop(reader);
    // The public face of it: a clear error, and no more reads.
    assert!(matches!(b.recv_bytes(), Err(Error::Desynchronized)));
}

/// Past the first 64 KiB, the room grows with the bytes that arrived (at
/// most twice them), and a real large frame arrives whole.
#[test]
fn the_buffer_grows_with_the_bytes_that_arrive() {
    let arrived = 3 << 20;
    let (a, b) = crate::pipe(true).unwrap();
    let mut frame = (1u32 << 30).to_be_bytes().to_vec();
    frame.extend((0..arrived).map(|i| i as u8));
    let writer = send_raw(a, frame);
    let mut reader = b.reader().unwrap();
    let len = b.read_header(&mut reader).unwrap() as usize;
    let mut out = Vec::new();
    let r = b.read_payload(&mut reader, len, &mut out);
    writer.join().unwrap();
    assert!(matches!(r, Err(Error::TruncatedFrame { .. })), "{r:?}");
    assert_eq!(out.len(), arrived);
    assert!(out.capacity() <= 2 * arrived, "{} bytes", out.capacity());
    assert!(out.iter().enumerate().all(|(i, &x)| x == i as u8));

    let (a, b) = crate::pipe(true).unwrap();
    let big: Vec<u8> = (0..arrived + 12345).map(|i| (i % 251) as u8).collect();
    let sender = {
        let big = big.clone();
        std::thread::spawn(move || a.send_bytes(&big))
    };
    let got = b.recv_bytes().unwrap();
    sender.join().unwrap().unwrap();
    assert!(got == big);
}
