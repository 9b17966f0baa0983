//! Requests and replies between proxies and the server: typed messages
//! (postcard), never code. Keys and values travel encoded; the server keeps
//! them as bytes and never needs their types.

use serde::{Deserialize, Serialize};

/// Bytes of an encoded key or value.
pub(crate) type Bytes = serde_bytes::ByteBuf;

/// The kinds of shared objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value(Bytes),
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
pub(crate) enum Request {
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
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Ok,
    Error(String),
    Id(u64),
    Count(u64),
    Bool(bool),
    Maybe(Option<Bytes>),
    List(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
}
