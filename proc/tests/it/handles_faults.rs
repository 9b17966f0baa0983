//! Handles after start, bad input and faults (issue 15, "Bad input and
//! faults"): descriptors a frame does not claim, a frame that claims
//! descriptors that never came, a ticket redeemed twice, after expiry or
//! after its sender died, edited bytes, too many tickets. Each is a clear
//! error, nothing leaks (descriptors are counted before and after), and the
//! connection stays usable where that makes sense.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mp_proc::codec::{decode, encode};
use mp_proc::reduction::{MAX_TICKETS, set_ticket_lifetime, ticket_lifetime};
use mp_proc::{
    Array, Connection, Error, Event, Lock, Queue, ShareableList, SharedMemory, StartMethod,
    TicketFailure, Value, pipe,
};
use mp_testkit::{guard, open_fds};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::handles::{Child, LONG, Unlink};

mp_testkit::for_each_method!(
    a_ticket_whose_sender_died_is_sender_gone,
    a_ticket_past_its_lifetime_is_expired,
    one_ticket_more_than_max_tickets_is_refused,
);

/// Writes `frame` (header and payload) on `conn`'s socket with `fds`
/// attached, as a raw peer would.
fn send_with_fds(conn: &Connection, frame: &[u8], fds: &[RawFd]) {
    let sent = sendmsg::<()>(
        conn.as_fd().as_raw_fd(),
        &[IoSlice::new(frame)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(sent, frame.len());
}

fn frame_of_bytes(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// 253 descriptors (the most one message carries, `SCM_MAX_FD`) of
/// `/dev/null`.
fn many_fds() -> Vec<OwnedFd> {
    let null = File::open("/dev/null").unwrap();
    (0..253)
        .map(|_| null.as_fd().try_clone_to_owned().unwrap())
        .collect()
}

/// A raw peer attaches 253 descriptors to a frame of a plain `u32`, which
/// claims none: the value is received, the descriptors are closed, and the
/// next message comes through.
#[test]
fn descriptors_a_frame_does_not_claim_are_closed() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let before = open_fds().len();
    {
        let fds = many_fds();
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut frame = Vec::new();
        Connection::encode_frame(&7u32, &mut frame).unwrap();
        send_with_fds(&a, &frame, &raw);
    }
    assert_eq!(b.recv::<u32>().unwrap(), 7);
    assert_eq!(open_fds().len(), before, "the 253 descriptors were closed");
    a.send(&8u32).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), 8);
    assert_eq!(open_fds().len(), before);
}

/// The same for a frame read with `recv_bytes`, which claims no descriptor.
#[test]
fn descriptors_attached_to_a_frame_read_as_bytes_are_closed() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let before = open_fds().len();
    {
        let fds = many_fds();
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        send_with_fds(&a, &frame_of_bytes(b"raw"), &raw);
    }
    assert_eq!(b.recv_bytes().unwrap(), b"raw");
    assert_eq!(open_fds().len(), before, "the 253 descriptors were closed");
    // And a handle sent with `send` (its descriptor attached) but read as bytes.
    {
        let (x, _y) = pipe(true).unwrap();
        a.send(&x).unwrap();
    }
    assert!(!b.recv_bytes().unwrap().is_empty());
    a.send_bytes(b"next").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"next");
    assert_eq!(open_fds().len(), before);
}

/// The payload of a frame that carries a `Connection` (its descriptor goes
/// with it): sent over a socket pair and read back as bytes (which closes
/// the descriptor that came).
fn bytes_of_a_sent_connection(x: &Connection) -> Vec<u8> {
    let (a, b) = pipe(true).unwrap();
    if let Err(e) = a.send(x) {
        panic!("sending a Connection over a socket: {e:?}");
    }
    b.recv_bytes().unwrap()
}

/// A frame that claims a descriptor that did not come with it is
/// `DescriptorsMissing`, and the connection goes on.
#[test]
fn a_frame_that_claims_descriptors_that_never_came_is_an_error() {
    let _g = guard();
    let (x, _y) = pipe(true).unwrap();
    let bytes = bytes_of_a_sent_connection(&x);
    let (a, b) = pipe(true).unwrap();
    let before = open_fds().len();
    a.send_bytes(&bytes).unwrap();
    let r = b.recv::<Connection>();
    assert!(
        matches!(
            r,
            Err(Error::DescriptorsMissing {
                claimed: 1,
                arrived: 0
            })
        ),
        "{r:?}"
    );
    a.send(&9u32).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), 9);
    assert_eq!(open_fds().len(), before);
}

/// Sends `handle` over a socket pair and captures the frame and the
/// descriptors as they arrive, as a raw peer would see them. The caller
/// closes the descriptors.
fn capture<T: Serialize>(handle: &T) -> (Vec<u8>, Vec<RawFd>) {
    let (a, b) = pipe(true).unwrap();
    if let Err(e) = a.send(handle) {
        panic!("sending a handle over a socket: {e:?}");
    }
    let (mut frame, mut fds) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 1 << 16];
    let mut space = nix::cmsg_space!([RawFd; 253]);
    while frame.len() < 4
        || frame.len() < 4 + u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize
    {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            b.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(got) = c {
                fds.extend(got);
            }
        }
        let n = msg.bytes;
        assert!(n > 0, "end of file in a frame");
        frame.extend_from_slice(&buf[..n]);
    }
    (frame, fds)
}

/// One line for the edits of a handle's bytes that gave a handle, if any.
fn summary(what: &str, edits: Vec<String>, bytes: &[u8]) -> Vec<String> {
    if edits.is_empty() {
        return edits;
    }
    vec![format!(
        "{what}: byte^flip {} of {bytes:?}",
        edits.join(", ")
    )]
}

/// Each byte of `handle`'s frame payload edited (two ways), sent again with
/// the very descriptors that came with it: the edits that still gave a
/// handle. The unedited frame with the same descriptors must give one (so it
/// is the edit that is refused), and nothing may leak.
fn edits_accepted<T: Serialize + DeserializeOwned>(what: &str, handle: &T) -> Vec<String> {
    let (frame, fds) = capture(handle);
    let payload = &frame[4..];
    let (a, b) = pipe(true).unwrap();
    let before = open_fds().len();
    let mut edits = Vec::new();
    for i in 0..payload.len() {
        for flip in [0x01u8, 0x80] {
            let mut edited = payload.to_vec();
            edited[i] ^= flip;
            send_with_fds(&a, &frame_of_bytes(&edited), &fds);
            if b.recv::<T>().is_ok() {
                edits.push(format!("{i}^{flip:#x}"));
            }
        }
    }
    let accepted = summary(what, edits, payload);
    assert_eq!(open_fds().len(), before, "{what}: a descriptor leaked");
    send_with_fds(&a, &frame_of_bytes(payload), &fds);
    if let Err(e) = b.recv::<T>() {
        panic!("{what}: the unedited frame with its descriptors: {e:?}");
    }
    for fd in fds {
        nix::unistd::close(fd).unwrap();
    }
    accepted
}

/// A frame that claims one descriptor and comes with 253 (its own first):
/// the handle is received and works, the 252 it does not claim are closed.
#[test]
fn descriptors_beyond_those_a_frame_claims_are_closed() {
    let _g = guard();
    let (x, y) = pipe(true).unwrap();
    let (frame, fds) = capture(&x);
    let (a, b) = pipe(true).unwrap();
    let before = open_fds().len();
    {
        let extra = many_fds();
        let mut raw = fds.clone();
        raw.extend(extra.iter().take(253 - fds.len()).map(|f| f.as_raw_fd()));
        send_with_fds(&a, &frame, &raw);
    }
    let got = b.recv::<Connection>().unwrap_or_else(|e| panic!("{e:?}"));
    got.send(&"through the received copy").unwrap();
    assert_eq!(y.recv::<String>().unwrap(), "through the received copy");
    drop(got);
    assert_eq!(
        open_fds().len(),
        before,
        "the unclaimed descriptors were closed"
    );
    a.send(&3u32).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), 3);
    for fd in fds {
        nix::unistd::close(fd).unwrap();
    }
}

/// Edited bytes of a frame that carries a handle, sent with the very
/// descriptors they name, are an error, never a handle (the trust rule:
/// "forged, edited, foreign or retyped bytes are an Err").
#[test]
fn an_edited_frame_with_its_descriptors_is_never_a_handle() {
    let _g = guard();
    let (x, y) = pipe(true).unwrap();
    let shm = SharedMemory::create(None, 64).unwrap();
    let list = ShareableList::create(None, &[1.into(), "two".into()]).unwrap();
    let _unlink = (
        Unlink(shm.name().to_owned()),
        Unlink(list.name().to_owned()),
    );
    let mut accepted = edits_accepted("Connection", &x);
    accepted.extend(edits_accepted("Event", &Event::new().unwrap()));
    accepted.extend(edits_accepted("Lock", &Lock::new().unwrap()));
    accepted.extend(edits_accepted("Queue", &Queue::<u32>::new().unwrap()));
    accepted.extend(edits_accepted("Value", &Value::new(1u64).unwrap()));
    accepted.extend(edits_accepted("Array", &Array::<u32>::new(4).unwrap()));
    accepted.extend(edits_accepted("SharedMemory", &shm));
    accepted.extend(edits_accepted("ShareableList", &list));
    assert!(
        accepted.is_empty(),
        "edits that gave a handle: {accepted:#?}"
    );
    // And the unedited Connection works (the capture and resend are sound).
    let (frame, fds) = capture(&x);
    let (a, b) = pipe(true).unwrap();
    send_with_fds(&a, &frame, &fds);
    let got = b.recv::<Connection>().unwrap();
    got.send(&"through the received copy").unwrap();
    assert_eq!(y.recv::<String>().unwrap(), "through the received copy");
    for fd in fds {
        nix::unistd::close(fd).unwrap();
    }
}

fn ticket_error(r: mp_proc::Result<impl std::fmt::Debug>) -> (&'static str, u32, TicketFailure) {
    match r {
        Err(Error::TicketUnavailable { kind, pid, reason }) => (kind, pid, reason),
        other => panic!("expected TicketUnavailable, got {other:?}"),
    }
}

/// A ticket is good for one redemption.
#[test]
fn a_ticket_redeemed_twice_is_already_redeemed() {
    let _g = guard();
    let lock = Lock::new().unwrap();
    let bytes = encode(&lock).unwrap_or_else(|e| panic!("encoding a Lock: {e:?}"));
    let first = decode::<Lock>(&bytes).unwrap();
    let held = first.acquire().unwrap();
    assert!(lock.try_acquire().unwrap().is_none(), "the same lock");
    drop(held);
    let second = decode::<Lock>(&bytes);
    assert_eq!(
        ticket_error(second),
        ("Lock", std::process::id(), TicketFailure::AlreadyRedeemed)
    );
}

/// Each byte of a ticket of `handle` edited (two ways, a fresh ticket each
/// time): the edits that still gave a handle. The unedited ticket is
/// redeemed after each attempt, so that no ticket stays outstanding.
fn ticket_edits_accepted<T: Serialize + DeserializeOwned>(what: &str, handle: &T) -> Vec<String> {
    let first = encode(handle).unwrap_or_else(|e| panic!("encoding a {what}: {e:?}"));
    let len = first.len();
    // Redeemed, or the sharer would hold its descriptor until it expires.
    let _ = decode::<T>(&first);
    let mut edits = Vec::new();
    for i in 0..len {
        for flip in [0x01u8, 0x80] {
            let bytes = encode(handle).unwrap();
            let mut edited = bytes.clone();
            edited[i] ^= flip;
            if decode::<T>(&edited).is_ok() {
                edits.push(format!("{i}^{flip:#x} of {bytes:?}"));
            }
            // Redeems the ticket if the edited attempt did not (an edit
            // refused after its ticket was redeemed used the ticket up: not
            // a handle, so not a failure here).
            let _ = decode::<T>(&bytes);
        }
    }
    summary(what, edits, &[])
}

/// Edited ticket bytes are an error, never a handle.
#[test]
fn edited_ticket_bytes_are_never_a_handle() {
    let _g = guard();
    let (x, _y) = pipe(true).unwrap();
    let shm = SharedMemory::create(None, 64).unwrap();
    let _unlink = Unlink(shm.name().to_owned());
    let mut accepted = ticket_edits_accepted("Connection", &x);
    accepted.extend(ticket_edits_accepted("Event", &Event::new().unwrap()));
    accepted.extend(ticket_edits_accepted(
        "Queue",
        &Queue::<u32>::new().unwrap(),
    ));
    accepted.extend(ticket_edits_accepted("Value", &Value::new(1u64).unwrap()));
    accepted.extend(ticket_edits_accepted(
        "Array",
        &Array::<u32>::new(4).unwrap(),
    ));
    accepted.extend(ticket_edits_accepted("SharedMemory", &shm));
    assert!(
        accepted.is_empty(),
        "edits that gave a handle: {accepted:#?}"
    );
}

/// Encodes an `Event` and sends the bytes, then exits.
fn encode_and_exit(out: Connection) {
    let ev = Event::new().unwrap();
    out.send_bytes(&encode(&ev).unwrap()).unwrap();
}

/// A ticket whose sender has exited cannot be redeemed: `SenderGone`.
fn a_ticket_whose_sender_died_is_sender_gone(method: StartMethod) {
    let _g = guard();
    let (r, w) = pipe(false).unwrap();
    let mut p = Child::start(method, encode_and_exit, w);
    assert!(r.poll(Some(LONG)).unwrap());
    let bytes = r.recv_bytes().unwrap();
    let pid = p.0.pid().unwrap();
    assert_eq!(p.0.join().unwrap(), 0);
    let before = open_fds().len();
    assert_eq!(
        ticket_error(decode::<Event>(&bytes)),
        ("Event", pid, TicketFailure::SenderGone)
    );
    assert_eq!(open_fds().len(), before);
}

/// In a child (the lifetime is per process): a ticket issued with a tiny
/// lifetime and redeemed after it passed is `Expired`, and the sender's copy
/// of the descriptor is closed. Reports what it saw.
fn expire(out: Connection) {
    let report = (|| -> Result<(), String> {
        let ev = Event::new().map_err(|e| e.to_string())?;
        // A first ticket, redeemed: whatever the sharer opens once is open.
        let warm = encode(&ev).map_err(|e| format!("encode: {e}"))?;
        decode::<Event>(&warm).map_err(|e| format!("decode: {e}"))?;
        let before = open_fds().len();
        let lifetime = Duration::from_millis(1);
        set_ticket_lifetime(lifetime);
        if ticket_lifetime() != lifetime {
            return Err(format!("ticket_lifetime is {:?}", ticket_lifetime()));
        }
        let bytes = encode(&ev).map_err(|e| format!("encode: {e}"))?;
        // The ticket was issued before now: once now + lifetime is past, so
        // is its expiry.
        let past = mp_proc::plumbing::deadline_after(lifetime);
        while past.is_none_or(|p| Instant::now() <= p) {
            std::thread::yield_now();
        }
        match decode::<Event>(&bytes) {
            Err(Error::TicketUnavailable {
                kind: "Event",
                reason: TicketFailure::Expired,
                ..
            }) => {}
            other => return Err(format!("decode after expiry: {other:?}")),
        }
        // The sender closes its copy at the expiry (its thread wakes then):
        // wait for it, bounded only so that a leak is a failure, not a hang.
        let deadline = mp_proc::plumbing::deadline_after(LONG);
        loop {
            let after = open_fds().len();
            if after == before {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(format!("{before} descriptors before, {after} after"));
            }
            std::thread::yield_now();
        }
    })();
    out.send(&report).unwrap();
}

fn a_ticket_past_its_lifetime_is_expired(method: StartMethod) {
    let _g = guard();
    let (r, w) = pipe(false).unwrap();
    let mut p = Child::start(method, expire, w);
    assert!(r.poll(Some(LONG)).unwrap());
    assert_eq!(r.recv::<Result<(), String>>().unwrap(), Ok(()));
    assert_eq!(p.0.join().unwrap(), 0);
}

/// In a child (the tickets are per process): `MAX_TICKETS` outstanding
/// tickets are fine, one more is an error, and once one is redeemed another
/// can be issued.
fn too_many_tickets(out: Connection) {
    let report = (|| -> Result<String, String> {
        let ev = Event::new().map_err(|e| e.to_string())?;
        let mut held = Vec::new();
        for i in 0..MAX_TICKETS {
            held.push(encode(&ev).map_err(|e| format!("ticket {i}: {e}"))?);
        }
        let refused = match encode(&ev) {
            Ok(_) => return Err(format!("ticket {MAX_TICKETS} was issued")),
            Err(e) => format!("{e:?}"),
        };
        decode::<Event>(&held[0]).map_err(|e| format!("redeeming one: {e}"))?;
        encode(&ev).map_err(|e| format!("a ticket after one was redeemed: {e}"))?;
        Ok(refused)
    })();
    out.send(&report).unwrap();
}

fn one_ticket_more_than_max_tickets_is_refused(method: StartMethod) {
    let _g = guard();
    let (r, w) = pipe(false).unwrap();
    let mut p = Child::start(method, too_many_tickets, w);
    assert!(r.poll(Some(LONG)).unwrap());
    let report = r.recv::<Result<String, String>>().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(p.0.join().unwrap(), 0);
}
