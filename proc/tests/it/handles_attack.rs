//! Issue 15, an attacker's review of handles after start: what a peer or an
//! unlucky order of events could do to the descriptors that travel with
//! messages and tickets. Each test failed before its fix.

use mp_proc::{Connection, Process, StartMethod, pipe};

use mp_testkit::guard;

mp_testkit::for_each_method!(a_connection_with_a_buffered_message_reaches_a_child_whole);

/// `b` with a message that carries a handle already read from the OS but
/// not yet received (the read that ended the message before it brought it
/// along, with its descriptor); `y` is the far end of that handle.
fn buffered_handle() -> (Connection, Connection, Connection) {
    let (a, b) = pipe(true).unwrap();
    let (x, y) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.send(&x).unwrap();
    drop(x);
    // One read takes both messages (the kernel ends it after the bytes that
    // brought descriptors, not before them).
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    (a, b, y)
}

/// A connection sent while a message with a handle waits in its buffer
/// takes that message's descriptor along: the receiver gets the handle,
/// not `DescriptorsMissing` (before: the buffered bytes went, their
/// descriptor stayed behind in the sender's copy).
#[test]
fn a_connection_with_a_buffered_message_travels_whole() {
    let _g = guard();
    // Duplex: the descriptors go with the message; one-way: as tickets.
    for duplex in [true, false] {
        let (_a, b, y) = buffered_handle();
        let (r, w) = pipe(duplex).unwrap();
        w.send(&b).unwrap();
        drop(b);
        let b2: Connection = r.recv().unwrap();
        let x2: Connection = b2
            .recv()
            .unwrap_or_else(|e| panic!("duplex {duplex}: the buffered handle: {e}"));
        x2.send(&5u8).unwrap();
        assert_eq!(y.recv::<u8>().unwrap(), 5);
    }
}

fn receive_the_buffered_handle(b: Connection) {
    let x: Connection = b.recv().expect("the buffered handle");
    x.send(&6u8).unwrap();
}

/// The same inside a child's args, under every start method.
fn a_connection_with_a_buffered_message_reaches_a_child_whole(method: StartMethod) {
    let _g = guard();
    let (_a, b, y) = buffered_handle();
    let mut p = Process::new(receive_the_buffered_handle, b).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(y.recv::<u8>().unwrap(), 6);
}

/// More handles in one message than one `sendmsg` can carry (the kernel's
/// 253): the message still goes, the descriptors past the 253rd as tickets
/// (before: an encode error, where CPython sends them all).
#[test]
fn more_handles_than_one_message_carries_still_travel() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let (near, far): (Vec<Connection>, Vec<Connection>) =
        (0..300).map(|_| pipe(true).unwrap()).unzip();
    a.send(&near).unwrap();
    drop(near);
    let got: Vec<Connection> = b.recv().unwrap();
    assert_eq!(got.len(), 300);
    for (i, (c, f)) in got.iter().zip(&far).enumerate() {
        c.send(&(i as u32)).unwrap();
        assert_eq!(f.recv::<u32>().unwrap(), i as u32);
    }
}
