//! `Connection::try_recv`: receiving what is here without waiting, between
//! processes of every start method.

use std::os::fd::AsFd;
use std::time::Duration;

use mp_proc::connection::wait_fds;
use mp_proc::{Connection, Error, Process, StartMethod, pipe};

use mp_testkit::guard;

mp_testkit::for_each_method!(
    try_recv_returns_what_a_child_sent_and_none_otherwise,
    two_frames_from_one_read_come_out_without_the_fd_waking_again,
    half_a_frame_stays_buffered_until_the_rest_comes,
    a_child_that_exits_is_end_of_file,
    handles_received_with_try_recv_work,
);

/// The limit on each wait: a bug shows as a failure, not a hang.
const LIMIT: Duration = Duration::from_secs(30);

/// Whether `conn`'s descriptor is readable now.
fn fd_readable(conn: &Connection) -> bool {
    !wait_fds(&[conn.as_fd()], Some(Duration::ZERO))
        .unwrap()
        .is_empty()
}

/// Waits (up to [`LIMIT`]) for `conn`'s descriptor to be readable.
fn wait_readable(conn: &Connection) {
    assert_eq!(
        wait_fds(&[conn.as_fd()], Some(LIMIT)).unwrap(),
        [0],
        "nothing arrived"
    );
}

/// Sends what the parent asks for: `n` values `0..n` in one write, or the
/// frame of "hello" in two halves, one per request; ends on "quit" or EOF.
fn sender(conn: Connection) {
    let mut frame = Vec::new();
    Connection::encode_frame(&"hello".to_string(), &mut frame).unwrap();
    let half = frame.len() / 2;
    loop {
        let Ok(ask) = conn.recv::<String>() else {
            return;
        };
        let bytes = match ask.as_str() {
            "pair" => {
                let mut both = Vec::new();
                Connection::encode_frame(&1u32, &mut both).unwrap();
                Connection::encode_frame(&2u32, &mut both).unwrap();
                both
            }
            "first half" => frame[..half].to_vec(),
            "second half" => frame[half..].to_vec(),
            _ => return,
        };
        // One write of all the bytes (small: the socket takes them at once).
        let mut sent = 0;
        while sent < bytes.len() {
            sent += conn.write_nonblocking(&bytes[sent..]).unwrap();
        }
    }
}

fn start_sender(method: StartMethod) -> (Connection, Process) {
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(sender, there).start_method(method);
    p.start().unwrap();
    (here, p)
}

fn try_recv_returns_what_a_child_sent_and_none_otherwise(method: StartMethod) {
    let _g = guard();
    let (here, mut p) = start_sender(method);
    assert_eq!(here.try_recv::<u32>().unwrap(), None, "nothing sent yet");
    assert_eq!(here.try_recv_bytes().unwrap(), None);
    here.send(&"pair").unwrap();
    wait_readable(&here);
    assert_eq!(here.try_recv::<u32>().unwrap(), Some(1));
    // 2u32 in postcard is one byte.
    assert_eq!(here.try_recv_bytes().unwrap(), Some(vec![2]));
    assert_eq!(here.try_recv::<u32>().unwrap(), None);
    here.send(&"quit").unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

/// The trap of waiting on the descriptor: one read brought both frames into
/// the buffer, so after the first `try_recv` the descriptor is not readable
/// although a message is waiting. `try_recv` returns it all the same.
fn two_frames_from_one_read_come_out_without_the_fd_waking_again(method: StartMethod) {
    let _g = guard();
    let (here, mut p) = start_sender(method);
    here.send(&"pair").unwrap();
    wait_readable(&here);
    assert_eq!(here.try_recv::<u32>().unwrap(), Some(1));
    assert!(!fd_readable(&here), "the second frame is in the buffer");
    assert!(
        here.poll(Some(Duration::ZERO)).unwrap(),
        "poll sees the buffer"
    );
    assert_eq!(here.try_recv::<u32>().unwrap(), Some(2));
    assert_eq!(here.try_recv::<u32>().unwrap(), None);
    here.send(&"quit").unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

fn half_a_frame_stays_buffered_until_the_rest_comes(method: StartMethod) {
    let _g = guard();
    let (here, mut p) = start_sender(method);
    here.send(&"first half").unwrap();
    wait_readable(&here);
    // The peer stalls inside a frame: no wait, no loss.
    assert_eq!(here.try_recv::<String>().unwrap(), None);
    assert!(
        !fd_readable(&here),
        "the half frame was read into the buffer"
    );
    assert_eq!(here.try_recv::<String>().unwrap(), None);
    here.send(&"second half").unwrap();
    let mut got = None;
    assert!(mp_testkit::wait_until(LIMIT, || {
        got = here.try_recv::<String>().unwrap();
        got.is_some()
    }));
    assert_eq!(got.as_deref(), Some("hello"));
    // The stream kept its place: the next message is whole too.
    here.send(&"pair").unwrap();
    wait_readable(&here);
    assert_eq!(here.try_recv::<u32>().unwrap(), Some(1));
    here.send(&"quit").unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

fn a_child_that_exits_is_end_of_file(method: StartMethod) {
    let _g = guard();
    let (here, mut p) = start_sender(method);
    here.send(&"pair").unwrap();
    here.send(&"quit").unwrap();
    assert_eq!(p.join().unwrap(), 0);
    // What it sent before it ended comes first, then end of file.
    assert_eq!(here.try_recv::<u32>().unwrap(), Some(1));
    assert_eq!(here.try_recv::<u32>().unwrap(), Some(2));
    assert!(matches!(here.try_recv::<u32>(), Err(Error::Eof)));
    assert!(matches!(here.try_recv_bytes(), Err(Error::Eof)));

    // A peer that ends inside a frame: the same error `recv` gives.
    let (here, mut p) = start_sender(method);
    here.send(&"first half").unwrap();
    wait_readable(&here);
    assert_eq!(here.try_recv::<String>().unwrap(), None);
    here.send(&"quit").unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(matches!(
        here.try_recv::<String>(),
        Err(Error::TruncatedFrame { .. })
    ));
}

/// Sends one end of a new pipe to the parent, then writes into the other.
fn send_a_pipe(conn: Connection) {
    let (reader, writer) = pipe(false).unwrap();
    conn.send(&reader).unwrap();
    drop(reader);
    writer.send(&"through the handle").unwrap();
    // Stays until the parent has read both.
    let _ = conn.recv::<String>();
}

fn handles_received_with_try_recv_work(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(send_a_pipe, there).start_method(method);
    p.start().unwrap();
    let mut got = None;
    assert!(mp_testkit::wait_until(LIMIT, || {
        got = here.try_recv::<Connection>().unwrap();
        got.is_some()
    }));
    let reader = got.unwrap();
    assert_eq!(reader.recv::<String>().unwrap(), "through the handle");
    here.send(&"done").unwrap();
    assert_eq!(p.join().unwrap(), 0);
}
