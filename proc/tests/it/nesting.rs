//! A received value nested deeper than the decoder's bound is a decode error,
//! not a stack overflow: the receiving process lives on and its connection
//! goes on with the next frame.

use mp_proc::{Connection, Error, Process, StartMethod, pipe};
use mp_testkit::guard;
use serde::{Deserialize, Serialize};

mp_testkit::for_each_method!(a_deeply_nested_value_is_a_decode_error_in_the_receiver);

/// One tag byte per level on the wire: `1` is one more `Node`.
#[derive(Debug, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

/// What the receiver saw: each nested frame's error, then the frame after it.
type Report = (Vec<String>, Option<u32>);

fn receive_nested(conn: Connection) {
    let mut errors = Vec::new();
    for _ in 0..2 {
        errors.push(match conn.recv::<Tree>() {
            Err(Error::Decode(e)) => e.to_string(),
            Err(e) => format!("another error: {e}"),
            Ok(_) => "decoded".to_string(),
        });
    }
    let next = conn.recv::<u32>().ok();
    let _ = conn.send::<Report>(&(errors, next));
}

fn a_deeply_nested_value_is_a_decode_error_in_the_receiver(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(receive_nested, there).start_method(method);
    p.start().unwrap();
    // 2 MB of `Node` tags (a frame larger than the read buffer) and 1000 (one
    // decoded in place in the buffer): unbounded, either overflows the stack.
    here.send_bytes(&vec![1u8; 2 << 20]).unwrap();
    here.send_bytes(&[1u8; 1000]).unwrap();
    let _ = here.send(&7u32); // fails if the receiver is already gone
    let report = here.recv::<Report>();
    let code = p.join().unwrap();
    let too_deep = "nesting limit exceeded: the value is nested more than 128 levels deep";
    assert!(
        matches!(&report, Ok((errors, Some(7))) if errors.iter().all(|e| e == too_deep)),
        "the receiver reported {report:?} and exited with {code}"
    );
    assert_eq!(code, 0);
}

#[test]
fn a_legitimately_nested_value_still_decodes() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let deep = (0..100).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)));
    a.send(&deep).unwrap();
    let mut back = b.recv::<Tree>().unwrap();
    let mut depth = 0;
    while let Tree::Node(inner) = back {
        back = *inner;
        depth += 1;
    }
    assert_eq!(depth, 100);
}
