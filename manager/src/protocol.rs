//! Requests and replies between proxies and the server: typed messages
//! (postcard), never code. Keys and values travel encoded; the server keeps
//! them as bytes and never needs their types.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bytes of an encoded key or value.
pub(crate) type Bytes = serde_bytes::ByteBuf;

/// How long a call may wait: `None` forever, `Some(ZERO)` not at all.
pub(crate) type Wait = Option<Duration>;

/// The kinds of shared objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value(Bytes),
    /// A fixed-length list (Python's `Manager().Array`).
    Array(Vec<Bytes>),
    Queue {
        maxsize: u64,
        joinable: bool,
    },
    Lock,
    RLock,
    Semaphore {
        value: u64,
        bounded: bool,
    },
    Condition,
    Event,
    Barrier {
        parties: u64,
        timeout: Wait,
    },
    /// A type registered with a `BaseManager`, by its type id.
    Registered(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum DictOp {
    Get(Bytes),
    Insert(Bytes, Bytes),
    Remove(Bytes),
    ContainsKey(Bytes),
    Len,
    Keys,
    Values,
    Items,
    Clear,
    Update(Vec<(Bytes, Bytes)>),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListOp {
    Push(Bytes),
    Get(u64),
    Set(u64, Bytes),
    Pop,
    Len,
    Extend(Vec<Bytes>),
    ToVec,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum NamespaceOp {
    Set(String, Bytes),
    Get(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ValueOp {
    Get,
    Set(Bytes),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum QueueOp {
    Put(Bytes, Wait),
    Get(Wait),
    Qsize,
    Full,
    TaskDone,
    Join(Wait),
}

/// A `Lock`'s or an `RLock`'s operations, for the calling thread.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum LockOp {
    Acquire(Wait),
    Release,
    Locked,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SemaphoreOp {
    Acquire(Wait),
    Release,
    Value,
}

/// A `Condition`'s operations (its lock is an `RLock`), for the calling thread.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ConditionOp {
    Acquire(Wait),
    Release,
    Wait(Wait),
    Notify(u64),
    NotifyAll,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum EventOp {
    Set,
    Clear,
    IsSet,
    Wait(Wait),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BarrierOp {
    Wait(Wait),
    Abort,
    Reset,
    Parties,
    NWaiting,
    Broken,
}

/// A client thread: its process's session and a number unique in that process.
pub(crate) type Thread = u64;

/// A session (a client process): 128 random bits, told only to the process
/// that opened it (in the reply to its `Hello(None)`; the owner, in the
/// server's report on the connection it made), which joins it with more
/// connections by this id. Another client cannot guess it, so it cannot
/// join the session and give back its references.
pub(crate) type SessionId = u128;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// The first request of every connection: joins the session (the
    /// client process) given, or opens a new one (`None`), whose id the
    /// reply carries ([`Reply::Session`]). References and locks belong to a
    /// session, and are given back when its last connection ends.
    Hello(Option<SessionId>),
    /// Is the server there? (a round trip)
    Ping,
    /// Stop serving and exit.
    Shutdown,
    /// Makes an object; this connection holds one reference to it.
    Create(Kind),
    /// One more (one fewer) reference, held by this connection.
    IncRef(u64),
    DecRef(u64),
    /// A proxy is being sent to another process: one more reference, held
    /// by nobody yet, so the object outlives the sender's copy.
    Lend(u64),
    /// The receiving process takes over a lent reference.
    Adopt(u64),
    /// How many objects the server holds (Python's `_number_of_objects`).
    NumberOfObjects,
    Dict(u64, DictOp),
    List(u64, ListOp),
    Namespace(u64, NamespaceOp),
    Value(u64, ValueOp),
    Queue(u64, QueueOp),
    Lock(u64, Thread, LockOp),
    Semaphore(u64, SemaphoreOp),
    Condition(u64, Thread, ConditionOp),
    Event(u64, EventOp),
    Barrier(u64, BarrierOp),
    /// A method of a registered type, with its encoded arguments.
    Call(u64, String, Bytes),
}

/// A frame kept for re-encoding requests up to this size (a larger one's
/// buffer is not kept).
const KEEP: usize = 64 * 1024;

/// Decodes a request strictly: `bytes` must be its one encoding, which
/// `scratch` (kept between calls) receives for the comparison. postcard
/// also decodes a varint padded with continuation bytes (`80 00` for 0) and
/// a `Duration` whose nanoseconds carry into its seconds; the server takes
/// neither, so that each request has one form. (No request holds a map,
/// whose encoding would depend on its order.)
pub(crate) fn decode_request(bytes: &[u8], scratch: &mut Vec<u8>) -> mp_proc::Result<Request> {
    let request: Request = mp_proc::codec::decode(bytes)?;
    scratch.clear();
    let encoded = mp_proc::codec::encode_into(&request, std::mem::take(scratch))?;
    let canonical = encoded == bytes;
    if encoded.capacity() <= KEEP {
        *scratch = encoded;
    }
    if canonical {
        Ok(request)
    } else {
        Err(mp_proc::Error::Decode(
            "a request not in its canonical encoding (a number padded with zero bytes, or \
             nanoseconds of a second or more)"
                .into(),
        ))
    }
}

/// Why a call failed, as the client reports it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Failure {
    Empty,
    Full,
    Timeout,
    BrokenBarrier,
    NotHeld(String),
    WouldDeadlock,
    TooManyReleases(u64),
    TaskDoneTooManyTimes,
    /// Anything else, as a message (Python's `RemoteError`).
    Remote(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Ok,
    Fail(Failure),
    Id(u64),
    /// The session a `Hello` opened or joined.
    Session(SessionId),
    Count(u64),
    Bool(bool),
    Maybe(Option<Bytes>),
    List(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    /// A registered method's encoded result.
    Value(Bytes),
}
