//! Property tests of the codecs' round trips: payload encode/decode of
//! nested values (and the nesting bound), the frame writer and reader over
//! a real socket whatever the write boundaries, and `Packed`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;

use mp_proc::codec;
use mp_proc::plumbing::Packed;
use mp_proc::{Connection, Error, pipe};
use mp_testkit::guard;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// A nested value of every serde shape the workspace sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Value {
    Unit,
    Bool(bool),
    Int(i64),
    Wide(u128),
    Char(char),
    Float(u64), // an f64's bits: NaN != NaN would spoil the comparison
    Text(String),
    Bytes(Vec<u8>),
    Maybe(Option<Box<Value>>),
    Pair(Box<(Value, Value)>),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Record {
        id: u32,
        tags: Vec<String>,
        inner: Box<Value>,
    },
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Unit),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<u128>().prop_map(Value::Wide),
        any::<char>().prop_map(Value::Char),
        any::<f64>().prop_map(|f| Value::Float(f.to_bits())),
        ".{0,12}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
    ];
    // At most 8 levels of `Value`, each 1 to 3 levels of serde nesting.
    leaf.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            prop::option::of(inner.clone()).prop_map(|v| Value::Maybe(v.map(Box::new))),
            (inner.clone(), inner.clone()).prop_map(|p| Value::Pair(Box::new(p))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map(".{0,6}", inner.clone(), 0..4).prop_map(Value::Map),
            (any::<u32>(), prop::collection::vec(".{0,4}", 0..3), inner).prop_map(
                |(id, tags, inner)| Value::Record {
                    id,
                    tags,
                    inner: Box::new(inner)
                }
            ),
        ]
    })
}

/// One tag byte per level on the wire.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

fn tree(depth: usize) -> Tree {
    (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
}

proptest! {
    #[test]
    fn a_nested_value_decodes_to_itself(v in value()) {
        let bytes = codec::encode(&v).unwrap();
        prop_assert_eq!(codec::decode::<Value>(&bytes).unwrap(), v);
    }

    #[test]
    fn a_cut_or_extended_encoding_is_a_decode_error(v in value(), extra in 1usize..4) {
        let bytes = codec::encode(&v).unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(
                matches!(codec::decode::<Value>(&bytes[..cut]), Err(Error::Decode(_))),
                "{} of {} bytes decoded", cut, bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        let e = codec::decode::<Value>(&longer).unwrap_err();
        prop_assert_eq!(
            e.to_string(),
            format!("could not deserialize the value: {extra} bytes left over after the value")
        );
    }

    #[test]
    fn values_nested_up_to_the_bound_decode_and_deeper_ones_do_not(
        depth in prop_oneof![0usize..400, 120usize..136],
    ) {
        // A tree of `depth` nodes is `depth + 1` enums: 128 levels at most.
        let bytes = codec::encode(&tree(depth)).unwrap();
        match codec::decode::<Tree>(&bytes) {
            Ok(t) => {
                prop_assert!(depth < 128, "{} nodes decoded", depth);
                prop_assert_eq!(t, tree(depth));
            }
            Err(Error::Decode(e)) => {
                prop_assert!(depth >= 128, "{} nodes: {}", depth, e);
                prop_assert!(e.to_string().starts_with("nesting limit exceeded"));
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}

/// A message as a test sends it: raw bytes or a typed value.
#[derive(Debug, Clone)]
enum Message {
    Raw(Vec<u8>),
    Typed(Value),
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Message::Raw),
        1 => (any::<u8>(), 60_000usize..70_000).prop_map(|(b, n)| Message::Raw(vec![b; n])),
        4 => value().prop_map(Message::Typed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Frames written in one stream, cut into arbitrary writes, come back
    /// one by one, in order, whatever the reading call.
    #[test]
    fn frames_come_back_whole_whatever_the_write_boundaries(
        messages in prop::collection::vec(message(), 1..12),
        cuts in prop::collection::vec(1usize..5000, 1..8),
    ) {
        let _g = guard();
        let mut stream = Vec::new();
        for m in &messages {
            match m {
                Message::Raw(b) => {
                    stream.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    stream.extend_from_slice(b);
                }
                Message::Typed(v) => Connection::encode_frame(v, &mut stream).unwrap(),
            }
        }
        let (writer, reader) = pipe(true).unwrap();
        let mut raw = std::fs::File::from(writer.as_fd().try_clone_to_owned().unwrap());
        drop(writer);
        let feeder = std::thread::spawn(move || {
            let mut rest = &stream[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at((*cut).min(rest.len()));
                raw.write_all(now).unwrap();
                rest = later;
            }
        });
        let mut buf = vec![0u8; 512];
        for (i, m) in messages.iter().enumerate() {
            match m {
                Message::Typed(v) => prop_assert_eq!(&reader.recv::<Value>().unwrap(), v),
                Message::Raw(b) if i % 2 == 0 => prop_assert_eq!(&reader.recv_bytes().unwrap(), b),
                Message::Raw(b) => match reader.recv_bytes_into(&mut buf) {
                    Ok(n) => prop_assert_eq!(&buf[..n], &b[..]),
                    Err(Error::BufferTooShort(whole)) => prop_assert_eq!(&whole, b),
                    Err(e) => prop_assert!(false, "{}", e),
                },
            }
        }
        feeder.join().unwrap();
        prop_assert!(matches!(reader.recv_bytes(), Err(Error::Eof)));
    }

    /// A value packed with a handle unpacks to the same value and a handle
    /// that works; without handles, the bytes are the value's encoding.
    #[test]
    fn packed_values_unpack_to_themselves(v in value()) {
        let _g = guard();
        let packed = Packed::pack(&v).unwrap();
        prop_assert_eq!(packed.bytes(), &codec::encode(&v).unwrap()[..]);
        prop_assert_eq!(&packed.unpack::<Value>().unwrap(), &v);
        prop_assert_eq!(&packed.clone().unpack::<Value>().unwrap(), &v);

        let (here, there) = pipe(true).unwrap();
        let packed = Packed::pack(&(there, v.clone())).unwrap();
        let (conn, back) = packed.unpack::<(Connection, Value)>().unwrap();
        prop_assert_eq!(&back, &v);
        conn.send(&back).unwrap();
        prop_assert_eq!(here.recv::<Value>().unwrap(), v);
    }
}
