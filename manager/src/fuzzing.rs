//! Entry points for the fuzz targets in `fuzz/` and for the tests that
//! replay their corpus (`tests/it/fuzz_corpus.rs`), so that both run the
//! same code. Not part of the API.
//!
//! ```
//! for seed in mp_manager::plumbing::fuzzing::seeds("manager_request") {
//!     mp_manager::plumbing::fuzzing::request(&seed);
//! }
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kinds::{
    barrier, condition, dict, event, list, lock, namespace, queue, semaphore, set, value,
};
use crate::protocol::{Bytes, Failure, Kind, Reply, Request};
use crate::shared_memory;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The fuzz targets of mp-manager, by name (each a function of this module).
pub const TARGETS: &[(&str, Target)] = &[("manager_request", request)];

/// Decodes `bytes` as the server (a request) or a proxy (a reply) does;
/// what decodes must encode, and decode again to the same encoding.
fn decode_round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(value) = mp_proc::codec::decode::<T>(bytes) {
        let again = mp_proc::codec::encode(&value).expect("a decoded value encodes");
        let back = mp_proc::codec::decode::<T>(&again).expect("an encoded value decodes");
        assert_eq!(
            mp_proc::codec::encode(&back).expect("a decoded value encodes"),
            again,
            "a decoded message re-encodes to different bytes"
        );
    }
}

/// The manager's request decoder (`data[0]` even) and a proxy's reply
/// decoder (odd), over the rest of `data`.
pub fn request(data: &[u8]) {
    match data.split_first() {
        Some((mode, bytes)) if mode % 2 == 0 => decode_round_trip::<Request>(bytes),
        Some((_, bytes)) => decode_round_trip::<Reply>(bytes),
        None => {}
    }
}

fn b(x: &[u8]) -> Bytes {
    Bytes::from(x.to_vec())
}

/// Every request and reply variant once, and some twice.
fn messages() -> (Vec<Request>, Vec<Reply>) {
    let wait = Some(Duration::from_millis(1500));
    let requests = vec![
        Request::Hello(None),
        Request::Hello(Some(3)),
        Request::Ping,
        Request::Shutdown,
        Request::Create(Kind::Dict),
        Request::Create(Kind::Array(vec![b(b"1"), b(b"22")])),
        Request::Create(Kind::Queue {
            maxsize: 10,
            joinable: true,
        }),
        Request::Create(Kind::Barrier {
            parties: 3,
            timeout: wait,
        }),
        Request::Create(Kind::Registered("my::Type".into())),
        Request::IncRef(1),
        Request::DecRef(u64::MAX),
        Request::Lend(7),
        Request::Adopt(7),
        Request::NumberOfObjects,
        Request::Dict(1, dict::Op::Insert(b(b"k"), b(b"v"))),
        Request::Dict(
            1,
            dict::Op::Update(vec![(b(b"a"), b(b"1")), (b(b"b"), b(b""))]),
        ),
        Request::List(2, list::Op::Set(0, b(&[9; 40]))),
        Request::List(2, list::Op::Extend(vec![b(b"x"); 3])),
        Request::Dict(1, dict::Op::PopItem),
        Request::DictHolding(1, vec![vec![5, 6]], dict::Op::SetDefault(b(b"k"), b(b"p"))),
        Request::List(2, list::Op::Insert(u64::MAX, b(b"x"))),
        Request::List(2, list::Op::Permute(7, vec![2, 0, 1])),
        Request::List(2, list::Op::Snapshot),
        Request::ListHolding(2, vec![vec![9]], list::Op::Push(b(b"proxy"))),
        Request::Namespace(3, namespace::Op::Set("field".into(), b(b"1"))),
        Request::Namespace(3, namespace::Op::Remove("field".into())),
        Request::NamespaceHolding(3, vec![vec![4]], namespace::Op::Names),
        Request::ValueHolding(4, vec![vec![4]], value::Op::Get),
        Request::Create(Kind::Set),
        Request::Set(12, set::Op::Add(b(b"item"))),
        Request::Set(
            12,
            set::Op::SymmetricDifferenceUpdate(vec![b(b"a"), b(b"")]),
        ),
        Request::SetHolding(
            12,
            vec![vec![5], vec![]],
            set::Op::Update(vec![b(b"p"), b(b"x")]),
        ),
        Request::Value(4, value::Op::Get),
        Request::Queue(5, queue::Op::Put(b(b"item"), Some(Duration::MAX))),
        Request::Queue(5, queue::Op::Get(None)),
        Request::Lock(6, 1 << 40, lock::Op::Acquire(Some(Duration::ZERO))),
        Request::Semaphore(7, semaphore::Op::Release),
        Request::Condition(8, 2, condition::Op::Wait(wait)),
        Request::Condition(8, 2, condition::Op::Notify(3)),
        Request::Event(9, event::Op::Wait(None)),
        Request::Barrier(10, barrier::Op::Wait(wait)),
        Request::Call(11, "method".into(), b(b"\x01\x02")),
        Request::Segment(shared_memory::Op::Create(4096)),
        Request::Segment(shared_memory::Op::Release("psm_1_2_abcdef".into())),
        Request::Segment(shared_memory::Op::List),
        Request::Segment(shared_memory::Op::CreateList(vec![
            mp_proc::ShareableItem::Int(-1),
            mp_proc::ShareableItem::Float(2.5),
            mp_proc::ShareableItem::Bool(true),
            mp_proc::ShareableItem::Str("howdy".into()),
            mp_proc::ShareableItem::Bytes(b"HoWdY".to_vec()),
            mp_proc::ShareableItem::None,
        ])),
        Request::Create(Kind::BarrierWithAction {
            parties: 3,
            timeout: wait,
            action: b(b"not a signed function"),
        }),
        Request::Create(Kind::ConditionOver(6)),
        Request::Queue(5, queue::Op::Close),
        Request::Lock(6, 1 << 40, lock::Op::ReleaseOwn),
    ];
    #[cfg(feature = "pool")]
    let requests = {
        use crate::kinds::pool::Op;
        let mut requests = requests;
        requests.extend([
            Request::Create(Kind::Pool {
                processes: Some(2),
                method: Some(mp_proc::StartMethod::Spawn),
            }),
            Request::Pool(
                13,
                Op::Submit {
                    func: b(&[7; 48]),
                    items: vec![b(b"1"), b(b"")],
                    chunksize: Some(4),
                    wait: true,
                },
            ),
            Request::Pool(
                13,
                Op::Get {
                    job: 1,
                    wait: Some(Duration::MAX),
                    take: true,
                },
            ),
            Request::Pool(13, Op::Ready { job: 2, wait: None }),
            Request::Pool(13, Op::Forget(u64::MAX)),
            Request::Pool(13, Op::Join),
        ]);
        requests
    };
    let replies = vec![
        Reply::Ok,
        Reply::Fail(Failure::Timeout),
        Reply::Fail(Failure::Closed),
        Reply::Fail(Failure::NotHeld("lock".into())),
        Reply::Fail(Failure::TooManyReleases(2)),
        Reply::Fail(Failure::Remote("boom".into())),
        Reply::Fail(Failure::Index {
            what: "list".into(),
            index: 3,
            len: 3,
        }),
        Reply::Fail(Failure::Attribute {
            object: "Namespace".into(),
            name: "x".into(),
        }),
        Reply::Fail(Failure::ActionPanicked("boom".into())),
        Reply::Id(12),
        Reply::Count(0),
        Reply::Bool(true),
        Reply::Maybe(Some(b(b"v"))),
        Reply::Maybe(None),
        Reply::List(vec![b(b"a"), b(b"")]),
        Reply::Pairs(vec![(b(b"k"), b(b"v"))]),
        Reply::Value(b(&[0xff; 8])),
        Reply::Name("psm_1_2_abcdef".into()),
        Reply::Names(vec!["a".into(), "b".into()]),
        Reply::Versioned(3, vec![b(b"a"), b(b"bc")]),
    ];
    (requests, replies)
}

/// Real encodings for `target`'s seed corpus: every message kind, and a
/// few corruptions (a non-canonical varint, a cut message).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    if target != "manager_request" {
        return Vec::new();
    }
    let (requests, replies) = messages();
    let with = |mode: u8, bytes: Vec<u8>| [vec![mode], bytes].concat();
    let mut seeds: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| with(0, mp_proc::codec::encode(r).expect("a request encodes")))
        .chain(
            replies
                .iter()
                .map(|r| with(1, mp_proc::codec::encode(r).expect("a reply encodes"))),
        )
        .collect();
    // `IncRef(1)` with its id written in two bytes (a non-canonical
    // varint), and a cut `Dict` request.
    seeds.push(vec![0, 4, 0x81, 0x00]);
    seeds.push(with(
        0,
        mp_proc::codec::encode(&requests[14]).expect("a request encodes")[..4].to_vec(),
    ));
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_of_real_messages_decode_and_a_cut_one_does_not() {
        let seeds = seeds("manager_request");
        let (requests, replies) = messages();
        let real = requests.len() + replies.len();
        for seed in &seeds[..real] {
            let decoded = match seed[0] {
                0 => mp_proc::codec::decode::<Request>(&seed[1..]).is_ok(),
                _ => mp_proc::codec::decode::<Reply>(&seed[1..]).is_ok(),
            };
            assert!(decoded, "{seed:?}");
        }
        let cut = seeds.last().unwrap();
        assert!(mp_proc::codec::decode::<Request>(&cut[1..]).is_err());
    }
}
