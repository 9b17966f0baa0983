//! Property tests of the manager protocol's encoding: every request and
//! reply decodes to itself, and no cut encoding decodes at all (a message
//! is never mistaken for a shorter one).

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::LazyJust;

use crate::kinds::{
    barrier, condition, dict, event, list, lock, namespace, queue, semaphore, set, value,
};
use crate::protocol::{Bytes, Failure, Kind, Reply, Request};

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn wait() -> impl Strategy<Value = Option<Duration>> {
    prop::option::of(prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ])
}

fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Dict),
        Just(Kind::List),
        Just(Kind::Namespace),
        bytes().prop_map(Kind::Value),
        prop::collection::vec(bytes(), 0..4).prop_map(Kind::Array),
        (any::<u64>(), any::<bool>())
            .prop_map(|(maxsize, joinable)| Kind::Queue { maxsize, joinable }),
        Just(Kind::Lock),
        Just(Kind::RLock),
        (any::<u64>(), any::<bool>())
            .prop_map(|(value, bounded)| Kind::Semaphore { value, bounded }),
        Just(Kind::Condition),
        Just(Kind::Event),
        (any::<u64>(), wait()).prop_map(|(parties, timeout)| Kind::Barrier { parties, timeout }),
        (any::<u64>(), wait(), bytes()).prop_map(|(parties, timeout, action)| {
            Kind::BarrierWithAction {
                parties,
                timeout,
                action,
            }
        }),
        text().prop_map(Kind::Registered),
        Just(Kind::Set),
    ]
}

fn dict_op() -> impl Strategy<Value = dict::Op> {
    prop_oneof![
        bytes().prop_map(dict::Op::Get),
        (bytes(), bytes()).prop_map(|(k, v)| dict::Op::Insert(k, v)),
        bytes().prop_map(dict::Op::Remove),
        bytes().prop_map(dict::Op::ContainsKey),
        LazyJust::new(|| dict::Op::Len),
        LazyJust::new(|| dict::Op::Keys),
        LazyJust::new(|| dict::Op::Values),
        LazyJust::new(|| dict::Op::Items),
        LazyJust::new(|| dict::Op::Clear),
        prop::collection::vec((bytes(), bytes()), 0..4).prop_map(dict::Op::Update),
        LazyJust::new(|| dict::Op::PopItem),
        (bytes(), bytes()).prop_map(|(k, v)| dict::Op::SetDefault(k, v)),
    ]
}

fn list_op() -> impl Strategy<Value = list::Op> {
    prop_oneof![
        bytes().prop_map(list::Op::Push),
        any::<u64>().prop_map(list::Op::Get),
        (any::<u64>(), bytes()).prop_map(|(i, v)| list::Op::Set(i, v)),
        LazyJust::new(|| list::Op::Pop),
        LazyJust::new(|| list::Op::Len),
        prop::collection::vec(bytes(), 0..4).prop_map(list::Op::Extend),
        LazyJust::new(|| list::Op::ToVec),
        bytes().prop_map(list::Op::Count),
        bytes().prop_map(list::Op::Index),
        LazyJust::new(|| list::Op::Reverse),
        any::<u64>().prop_map(list::Op::PopAt),
        (any::<u64>(), bytes()).prop_map(|(i, v)| list::Op::Insert(i, v)),
        bytes().prop_map(list::Op::Remove),
        LazyJust::new(|| list::Op::Clear),
        LazyJust::new(|| list::Op::Snapshot),
        (any::<u64>(), prop::collection::vec(any::<u64>(), 0..4))
            .prop_map(|(v, p)| list::Op::Permute(v, p)),
    ]
}

fn set_op() -> impl Strategy<Value = set::Op> {
    let items = || prop::collection::vec(bytes(), 0..4);
    prop_oneof![
        bytes().prop_map(set::Op::Add),
        bytes().prop_map(set::Op::Discard),
        bytes().prop_map(set::Op::Contains),
        LazyJust::new(|| set::Op::Len),
        LazyJust::new(|| set::Op::Pop),
        LazyJust::new(|| set::Op::Clear),
        LazyJust::new(|| set::Op::Items),
        items().prop_map(set::Op::Update),
        items().prop_map(set::Op::IntersectionUpdate),
        items().prop_map(set::Op::DifferenceUpdate),
        items().prop_map(set::Op::SymmetricDifferenceUpdate),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let id = any::<u64>;
    prop_oneof![
        prop::option::of(any::<u128>()).prop_map(Request::Hello),
        LazyJust::new(|| Request::Ping),
        LazyJust::new(|| Request::Shutdown),
        kind().prop_map(Request::Create),
        id().prop_map(Request::IncRef),
        id().prop_map(Request::DecRef),
        id().prop_map(Request::Lend),
        id().prop_map(Request::Adopt),
        LazyJust::new(|| Request::NumberOfObjects),
        LazyJust::new(|| Request::Leave),
        (id(), dict_op()).prop_map(|(i, op)| Request::Dict(i, op)),
        (id(), list_op()).prop_map(|(i, op)| Request::List(i, op)),
        (
            id(),
            prop_oneof![
                (text(), bytes()).prop_map(|(n, v)| namespace::Op::Set(n, v)),
                text().prop_map(namespace::Op::Get),
                text().prop_map(namespace::Op::Remove),
                LazyJust::new(|| namespace::Op::Names),
            ]
        )
            .prop_map(|(i, op)| Request::Namespace(i, op)),
        (
            id(),
            prop_oneof![
                LazyJust::new(|| value::Op::Get),
                bytes().prop_map(value::Op::Set)
            ]
        )
            .prop_map(|(i, op)| Request::Value(i, op)),
        (
            id(),
            prop_oneof![
                (bytes(), wait()).prop_map(|(v, w)| queue::Op::Put(v, w)),
                wait().prop_map(queue::Op::Get),
                LazyJust::new(|| queue::Op::Qsize),
                LazyJust::new(|| queue::Op::Full),
                LazyJust::new(|| queue::Op::TaskDone),
                wait().prop_map(queue::Op::Join),
            ]
        )
            .prop_map(|(i, op)| Request::Queue(i, op)),
        (
            id(),
            id(),
            prop_oneof![
                wait().prop_map(lock::Op::Acquire),
                LazyJust::new(|| lock::Op::Release),
                LazyJust::new(|| lock::Op::Locked),
            ]
        )
            .prop_map(|(i, t, op)| Request::Lock(i, t, op)),
        (
            id(),
            prop_oneof![
                wait().prop_map(semaphore::Op::Acquire),
                LazyJust::new(|| semaphore::Op::Release),
                LazyJust::new(|| semaphore::Op::Value),
            ]
        )
            .prop_map(|(i, op)| Request::Semaphore(i, op)),
        (
            id(),
            id(),
            prop_oneof![
                wait().prop_map(condition::Op::Wait),
                any::<u64>().prop_map(condition::Op::Notify),
                LazyJust::new(|| condition::Op::NotifyAll),
            ]
        )
            .prop_map(|(i, t, op)| Request::Condition(i, t, op)),
        (
            id(),
            prop_oneof![
                LazyJust::new(|| event::Op::Set),
                LazyJust::new(|| event::Op::Clear),
                LazyJust::new(|| event::Op::IsSet),
                wait().prop_map(event::Op::Wait),
            ]
        )
            .prop_map(|(i, op)| Request::Event(i, op)),
        (
            id(),
            prop_oneof![
                wait().prop_map(barrier::Op::Wait),
                LazyJust::new(|| barrier::Op::Abort),
                LazyJust::new(|| barrier::Op::Reset),
                LazyJust::new(|| barrier::Op::Parties),
                LazyJust::new(|| barrier::Op::NWaiting),
                LazyJust::new(|| barrier::Op::Broken),
            ]
        )
            .prop_map(|(i, op)| Request::Barrier(i, op)),
        (id(), text(), bytes()).prop_map(|(i, m, a)| Request::Call(i, m, a)),
        (id(), held(), dict_op()).prop_map(|(i, h, op)| Request::DictHolding(i, h, op)),
        (id(), held(), list_op()).prop_map(|(i, h, op)| Request::ListHolding(i, h, op)),
        (id(), set_op()).prop_map(|(i, op)| Request::Set(i, op)),
        (id(), held(), text(), bytes()).prop_map(|(i, h, n, v)| Request::NamespaceHolding(
            i,
            h,
            namespace::Op::Set(n, v)
        )),
        (id(), held(), bytes()).prop_map(|(i, h, v)| Request::ValueHolding(
            i,
            h,
            value::Op::Set(v)
        )),
        (id(), held(), set_op()).prop_map(|(i, h, op)| Request::SetHolding(i, h, op)),
    ]
}

/// The references each stored value holds.
fn held() -> impl Strategy<Value = Vec<Vec<u64>>> {
    prop::collection::vec(prop::collection::vec(any::<u64>(), 0..3), 0..3)
}

fn reply() -> impl Strategy<Value = Reply> {
    let failure = prop_oneof![
        LazyJust::new(|| Failure::Empty),
        LazyJust::new(|| Failure::Full),
        LazyJust::new(|| Failure::Timeout),
        LazyJust::new(|| Failure::BrokenBarrier),
        text().prop_map(Failure::NotHeld),
        LazyJust::new(|| Failure::WouldDeadlock),
        any::<u64>().prop_map(Failure::TooManyReleases),
        LazyJust::new(|| Failure::TaskDoneTooManyTimes),
        text().prop_map(Failure::Remote),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(what, index, len)| Failure::Index {
            what,
            index,
            len
        }),
        (text(), text()).prop_map(|(object, name)| Failure::Attribute { object, name }),
        text().prop_map(Failure::ActionPanicked),
    ];
    prop_oneof![
        LazyJust::new(|| Reply::Ok),
        failure.prop_map(Reply::Fail),
        any::<u64>().prop_map(Reply::Id),
        any::<u128>().prop_map(Reply::Session),
        any::<u64>().prop_map(Reply::Count),
        any::<bool>().prop_map(Reply::Bool),
        prop::option::of(bytes()).prop_map(Reply::Maybe),
        prop::collection::vec(bytes(), 0..4).prop_map(Reply::List),
        prop::collection::vec((bytes(), bytes()), 0..4).prop_map(Reply::Pairs),
        bytes().prop_map(Reply::Value),
        (any::<u64>(), prop::collection::vec(bytes(), 0..4))
            .prop_map(|(v, l)| Reply::Versioned(v, l)),
    ]
}

/// `message` decodes from its encoding to itself (the types have no
/// `PartialEq`: their `Debug` and their encoding compare), and no strict
/// prefix of its encoding decodes.
fn round_trips<T>(message: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let bytes = mp_proc::codec::encode(message).unwrap();
    let back: T = mp_proc::codec::decode(&bytes).unwrap();
    prop_assert_eq!(format!("{back:?}"), format!("{message:?}"));
    prop_assert_eq!(mp_proc::codec::encode(&back).unwrap(), bytes.clone());
    for cut in 0..bytes.len() {
        prop_assert!(
            mp_proc::codec::decode::<T>(&bytes[..cut]).is_err(),
            "{} of {} bytes decoded",
            cut,
            bytes.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(r in request()) {
        round_trips(&r)?;
    }

    #[test]
    fn replies_round_trip(r in reply()) {
        round_trips(&r)?;
    }
}
