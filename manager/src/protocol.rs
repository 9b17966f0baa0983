//! The envelope of requests and replies between proxies and the server:
//! typed messages (postcard), never code. Keys and values travel encoded;
//! the server keeps them as bytes and never needs their types. Each kind
//! of object's own operations (its `Op`) live in its module under
//! [`kinds`](crate::kinds); this module holds what every call shares (the
//! `Request` that carries them, `Reply`, `Failure`) and the kinds of
//! objects (`Kind`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kinds::{
    barrier, condition, dict, event, list, lock, namespace, queue, semaphore, set, value,
};

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
    /// A `set` (CPython 3.14).
    Set,
    /// A `multiprocessing.Pool` of `processes` workers (`None`: one per
    /// CPU), started by `method` (`None`: the server's default).
    #[cfg(feature = "pool")]
    Pool {
        processes: Option<u64>,
        method: Option<mp_proc::StartMethod>,
    },
    /// A `Barrier` whose `action` (an encoded `FnPointer<fn()>`, which the
    /// server decodes only if a process of its own tree made it) runs in the
    /// server each time it trips.
    BarrierWithAction {
        parties: u64,
        timeout: Wait,
        action: Bytes,
    },
    /// A `Condition` over the `Lock` or `RLock` of this id (Python's
    /// `Manager().Condition(lock)`): the two share one lock.
    ConditionOver(u64),
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
    Dict(u64, dict::Op),
    List(u64, list::Op),
    Namespace(u64, namespace::Op),
    Value(u64, value::Op),
    Queue(u64, queue::Op),
    Lock(u64, Thread, lock::Op),
    Semaphore(u64, semaphore::Op),
    Condition(u64, Thread, condition::Op),
    Event(u64, event::Op),
    Barrier(u64, barrier::Op),
    /// A method of a registered type, with its encoded arguments.
    Call(u64, String, Bytes),
    /// About the shared memory blocks a `SharedMemoryManager`'s server
    /// makes.
    Segment(crate::shared_memory::Op),
    /// A dict operation whose values hold proxies to this server's objects:
    /// for each value the op stores, in order, the ids of the references
    /// lent to it, which the dict keeps while it keeps the value.
    DictHolding(u64, Vec<Vec<u64>>, dict::Op),
    /// The same for a list or an array.
    ListHolding(u64, Vec<Vec<u64>>, list::Op),
    /// The client process has no proxy left to this server (its link is
    /// dropping): the locks its threads hold are released before the reply,
    /// so that they are free when the process is seen to end, instead of
    /// whenever the server notices its connections end.
    Leave,
    Set(u64, set::Op),
    /// A namespace operation storing a value that holds proxies (as
    /// `DictHolding`).
    NamespaceHolding(u64, Vec<Vec<u64>>, namespace::Op),
    /// The same for a value.
    ValueHolding(u64, Vec<Vec<u64>>, value::Op),
    /// The same for a set: for each item the op sends, in order, the ids
    /// of the references lent to it; the set keeps those of the items it
    /// stores while it stores them.
    SetHolding(u64, Vec<Vec<u64>>, set::Op),
    #[cfg(feature = "pool")]
    Pool(u64, crate::kinds::pool::Op),
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
    /// An index past the end of `what` (`"list"`, `"Array"`) of `len`
    /// items (Python's `IndexError`).
    Index {
        what: String,
        index: u64,
        len: u64,
    },
    /// `object` has no attribute `name` (Python's `AttributeError`).
    Attribute {
        object: String,
        name: String,
    },
    /// A barrier's action panicked in the server, with this message, in
    /// the wait of this caller (`mp_proc::Error::ActionPanicked`).
    ActionPanicked(String),
    /// The queue was closed (`mp_proc::Error::Closed`).
    Closed,
}

impl Failure {
    /// A failure the server reports for `e`, an error of its own or of a
    /// registered type's method: an `IndexError` or an `AttributeError`
    /// keeps its kind; anything else travels as its message.
    pub(crate) fn of(e: &mp_proc::Error) -> Failure {
        match e {
            mp_proc::Error::Index { what, index, len } => Failure::Index {
                what: (*what).into(),
                index: *index as u64,
                len: *len as u64,
            },
            mp_proc::Error::Attribute { object, name } => Failure::Attribute {
                object: (*object).into(),
                name: name.clone(),
            },
            e => Failure::Remote(e.to_string()),
        }
    }
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
    /// The name of a shared memory block the server made.
    Name(String),
    /// The names of the blocks the server made and has not unlinked.
    Names(Vec<String>),
    /// A list's items and its version (see `list::Op::Snapshot`).
    Versioned(u64, Vec<Bytes>),
}
