//! Values across process boundaries: the `Payload` bound, postcard encoding,
//! and the side channel that lets handles (which own file descriptors) travel
//! inside a child's arguments.
//!
//! Serializing a handle records its descriptor in a thread-local sink and
//! writes the descriptor's index; the start method moves the recorded
//! descriptors into the child (inheritance for fork, placement for spawn,
//! `SCM_RIGHTS` for forkserver), where deserializing takes them back by index.
//! One mechanism for every handle type.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A value that can cross a process boundary: `Serialize + DeserializeOwned +
/// Send + 'static`. Implemented for every such type.
///
/// Handles (`Connection`, the queues, locks and other primitives, shared
/// memory) are payloads too: inside a child's `args` they arrive usable in
/// the child, and sent after start they arrive usable in the receiver (see
/// [`reduction`](crate::reduction)).
///
/// ```
/// fn needs_payload<T: mp_proc::Payload>() {}
/// needs_payload::<(String, Vec<u64>, Option<bool>)>();
/// needs_payload::<mp_proc::Connection>();
/// ```
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// A descriptor that travels with a value, and the type of the handle that
/// owns it (`handle::handle_type`). The type is recorded by the handle's own
/// `Serialize` when the descriptor goes into the table, and travels next to
/// the descriptor, not in the value's bytes: bytes can name a descriptor,
/// never say what it is.
pub(crate) type TypedFd<F> = (F, u64);

/// Where the descriptors of the handles being encoded on this thread go.
enum Sink {
    /// Into a child being started (its `args`, a `Packed` value): each with
    /// its handle's type, which travels beside it, not in the bytes.
    Child(Vec<TypedFd<RawFd>>),
    /// With a message on a Unix socket (`SCM_RIGHTS`).
    Message(Vec<RawFd>),
}

/// Where the descriptors of the handles being decoded on this thread come from.
enum Source {
    /// A child's arguments (or a `Packed` value): trusted types.
    Child(Vec<TypedFd<OwnedFd>>),
    /// The descriptors that came with a received message.
    Message(Vec<OwnedFd>),
}

/// Which way a handle's descriptor travels from the value being encoded on
/// this thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    /// Into a child being started ([`push_fd`]).
    Child,
    /// With the message, by `SCM_RIGHTS` ([`push_message_fd`]).
    Message,
    /// Neither: the handle must go as a ticket.
    Elsewhere,
}

thread_local! {
    /// Descriptors recorded while encoding.
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
    /// Descriptors available while decoding.
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
    /// The kind of handle that was serialized where it cannot travel.
    static REFUSED: RefCell<Option<&'static str>> = const { RefCell::new(None) };
    /// The error a handle's decoding failed with, for the caller (serde
    /// keeps only a message).
    static DECODE_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

fn codec_error(e: postcard::Error) -> crate::error::BoxError {
    Box::new(e)
}

thread_local! {
    /// The message of the last custom decoding error on this thread
    /// (postcard keeps only the fact that there was one).
    static DECODE_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A decoding error with a message that reaches the caller's `Error::Decode`.
pub(crate) fn decode_failure<E: serde::de::Error>(message: String) -> E {
    let e = E::custom(&message);
    DECODE_MESSAGE.with(|m| *m.borrow_mut() = Some(message));
    e
}

/// A decoding error that reaches the caller as `error` itself (not as
/// [`Error::Decode`]): a handle whose descriptor did not come, or whose
/// ticket cannot be redeemed.
pub(crate) fn decode_failure_as<E: serde::de::Error>(error: Error) -> E {
    let e = E::custom(&error);
    DECODE_ERROR.with(|m| *m.borrow_mut() = Some(error));
    e
}

/// The error of a handle whose bytes were not made by a holder of the key.
pub(crate) fn forged<E: serde::de::Error>(kind: &str) -> E {
    decode_failure(format!(
        "a {kind} whose signature does not check: its bytes were not made by this \
         process tree (another authkey), or were changed"
    ))
}

/// The error of a handle made as another type.
pub(crate) fn retyped<E: serde::de::Error>(kind: &str) -> E {
    decode_failure(format!(
        "a {kind} made for another type: it cannot be received as this one"
    ))
}

/// The `Error::Decode` for postcard's error `e`, with the message of a
/// custom error where one was recorded.
fn decode_error(e: postcard::Error) -> Error {
    let message = DECODE_MESSAGE.with(|m| m.borrow_mut().take());
    if let (postcard::Error::SerdeDeCustom, Some(error)) =
        (&e, DECODE_ERROR.with(|m| m.borrow_mut().take()))
    {
        return error;
    }
    match (e, message) {
        (postcard::Error::SerdeDeCustom, Some(message)) => Error::Decode(message.into()),
        (e, _) => Error::Decode(codec_error(e)),
    }
}

fn encode_error<T: Serialize + ?Sized>(e: postcard::Error, value: &T) -> Error {
    match REFUSED.with(|r| r.borrow_mut().take()) {
        Some(kind) => Error::HandleNotTransferable { kind },
        None => match (&e, crate::wire::probe::custom_message(value)) {
            (postcard::Error::SerdeSerCustom, Some(message)) => Error::Encode(message.into()),
            _ => Error::Encode(codec_error(e)),
        },
    }
}

/// Encodes a value that may not contain handles.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    encode_into(value, Vec::new())
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Result<Vec<u8>> {
    REFUSED.with(|r| r.borrow_mut().take());
    postcard::to_extend(value, out).map_err(|e| encode_error(e, value))
}

/// Appends the encoding of `value` to `out`; on error `out` is as it was.
pub(crate) fn append<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    /// Extends the caller's buffer in place (postcard's `to_extend` takes
    /// the writer by value and drops it on error).
    struct Tail<'a>(&'a mut Vec<u8>);
    impl Extend<u8> for Tail<'_> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            self.0.extend(iter)
        }
    }
    let len = out.len();
    REFUSED.with(|r| r.borrow_mut().take());
    match postcard::to_extend(value, Tail(out)) {
        Ok(_) => Ok(()),
        Err(e) => {
            out.truncate(len);
            Err(encode_error(e, value))
        }
    }
}

/// Encodes a child's arguments and returns the descriptors its handles need,
/// in index order (each distinct descriptor once).
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<TypedFd<RawFd>>)> {
    // Make this thread's decoding slot now: under fork the child, a copy of
    // this thread, then finds it ready instead of registering its destructor
    // (a lock and an allocation) after the fork.
    SOURCE.with(|_| ());
    let previous = SINK.with(|s| s.borrow_mut().replace(Sink::Child(Vec::new())));
    let bytes = encode(value);
    let fds = match SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous)) {
        Some(Sink::Child(fds)) => fds,
        _ => Vec::new(),
    };
    Ok((bytes?, fds))
}

/// Runs `f` (which encodes a message for a Unix socket) with the handles it
/// encodes recording their descriptors to go with the message; returns
/// what `f` returned and the descriptors, in index order.
pub(crate) fn with_message_sink<R>(f: impl FnOnce() -> R) -> (R, Vec<RawFd>) {
    let previous = SINK.with(|s| s.borrow_mut().replace(Sink::Message(Vec::new())));
    let r = f();
    let fds = match SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous)) {
        Some(Sink::Message(fds)) => fds,
        _ => Vec::new(),
    };
    (r, fds)
}

/// Runs `f` (which decodes a received message) with `fds`, the descriptors
/// that came with it, available to its handles. Those no handle claims are
/// closed when it returns.
pub(crate) fn with_message_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let previous = SOURCE.with(|s| s.borrow_mut().replace(Source::Message(fds)));
    let r = f();
    SOURCE.with(|s| *s.borrow_mut() = previous);
    r
}

/// Decodes a value; the bytes must be exactly one value, nested at most
/// [`depth::MAX_DEPTH`](crate::wire::depth::MAX_DEPTH) levels deep (deeper is an
/// error, not a stack overflow).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // Nothing recorded by an earlier decode (whose error a custom
    // `Deserialize` swallowed) labels this one's.
    DECODE_ERROR.with(|m| m.borrow_mut().take());
    DECODE_MESSAGE.with(|m| m.borrow_mut().take());
    let mut de = postcard::Deserializer::from_bytes(bytes);
    match crate::wire::depth::deserialize::<T, _>(&mut de, crate::wire::depth::MAX_DEPTH) {
        Ok(value) => match de.finalize() {
            Ok([]) => Ok(value),
            Ok(rest) => Err(Error::Decode(
                format!("{} bytes left over after the value", rest.len()).into(),
            )),
            Err(e) => Err(Error::Decode(codec_error(e))),
        },
        Err(crate::wire::depth::Failure::Format(e)) => Err(decode_error(e)),
        Err(e) => Err(Error::Decode(Box::new(e))),
    }
}

/// Decodes a child's arguments, whose handles take their descriptors from `fds`.
pub(crate) fn decode_with_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<TypedFd<OwnedFd>>,
) -> Result<T> {
    with_fds(fds, || trusting(true, || decode(bytes)))
}

thread_local! {
    /// Set while this thread decodes bytes that this process tree made for
    /// it: a child's arguments (from its parent), a `Packed` value.
    static FROM_PARENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with [`from_parent`] set to `yes`. With `no`, `f` (a target:
/// code that receives from peers) also runs without the descriptors of the
/// args being decoded, so that no bytes it decodes reach them.
pub(crate) fn trusting<R>(yes: bool, f: impl FnOnce() -> R) -> R {
    let previous = FROM_PARENT.with(|c| c.replace(yes));
    let source = if yes {
        None
    } else {
        SOURCE.with(|s| s.borrow_mut().take())
    };
    let r = f();
    if source.is_some() {
        SOURCE.with(|s| *s.borrow_mut() = source);
    }
    FROM_PARENT.with(|c| c.set(previous));
    r
}

/// Whether this thread is decoding bytes its process tree made for it (a
/// child's arguments, a `Packed` value), not bytes from a peer.
pub(crate) fn from_parent() -> bool {
    FROM_PARENT.with(|c| c.get())
}

/// Runs `f` with `fds` available to the handles it decodes.
pub(crate) fn with_fds<R>(fds: Vec<TypedFd<OwnedFd>>, f: impl FnOnce() -> R) -> R {
    let previous = SOURCE.with(|s| s.borrow_mut().replace(Source::Child(fds)));
    let r = f();
    SOURCE.with(|s| *s.borrow_mut() = previous);
    r
}

/// Records `fd`, owned by a handle of type `ty`, for the child being encoded
/// and returns its index. Outside of a child's arguments, handles cannot
/// travel: the error names the handle.
pub(crate) fn push_fd<E: serde::ser::Error>(
    fd: BorrowedFd<'_>,
    kind: &'static str,
    ty: u64,
) -> Result<u32, E> {
    let raw = fd.as_raw_fd();
    SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(Sink::Child(fds)) => match fds.iter().position(|(f, _)| *f == raw) {
            Some(i) if fds[i].1 == ty => Ok(i as u32),
            Some(_) => Err(E::custom(format!(
                "descriptor {raw} is a {kind} and a handle of another type"
            ))),
            None => {
                fds.push((raw, ty));
                Ok((fds.len() - 1) as u32)
            }
        },
        _ => {
            REFUSED.with(|r| *r.borrow_mut() = Some(kind));
            Err(E::custom(format!(
                "a {kind} can be passed to a child process only inside its args"
            )))
        }
    })
}

/// Which way the descriptor of a handle encoded now travels.
pub(crate) fn way() -> Way {
    SINK.with(|s| match s.borrow().as_ref() {
        Some(Sink::Child(_)) => Way::Child,
        Some(Sink::Message(_)) => Way::Message,
        None => Way::Elsewhere,
    })
}

/// Whether `fd` can go with the message being encoded: it goes already, or
/// fewer than [`MAX_FDS`](crate::sys::scm::MAX_FDS) do.
pub(crate) fn message_has_room(fd: BorrowedFd<'_>) -> bool {
    let raw = fd.as_raw_fd();
    SINK.with(|s| match s.borrow().as_ref() {
        Some(Sink::Message(fds)) => fds.len() < crate::sys::scm::MAX_FDS || fds.contains(&raw),
        _ => false,
    })
}

/// Records `fd`, owned by a handle of kind `kind`, to go with the message
/// being encoded, and returns its index (one index per distinct descriptor;
/// at most [`MAX_FDS`](crate::sys::scm::MAX_FDS) in one message).
pub(crate) fn push_message_fd<E: serde::ser::Error>(
    fd: BorrowedFd<'_>,
    kind: &'static str,
) -> Result<u32, E> {
    let raw = fd.as_raw_fd();
    SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(Sink::Message(fds)) => match fds.iter().position(|f| *f == raw) {
            Some(i) => Ok(i as u32),
            None if fds.len() >= crate::sys::scm::MAX_FDS => Err(E::custom(format!(
                "a {kind} would be descriptor #{} of one message: at most {} can go with one",
                fds.len() + 1,
                crate::sys::scm::MAX_FDS
            ))),
            None => {
                fds.push(raw);
                Ok((fds.len() - 1) as u32)
            }
        },
        _ => Err(E::custom(format!(
            "a {kind} can go with a message only while the message is encoded for a socket"
        ))),
    })
}

/// Takes (a duplicate of) the descriptor at `index` among those that came
/// with the message being decoded, for a handle of kind `kind`. One that did
/// not come is [`Error::DescriptorsMissing`].
pub(crate) fn take_message_fd<E: serde::de::Error>(
    index: u32,
    kind: &'static str,
) -> Result<OwnedFd, E> {
    SOURCE.with(|s| match s.borrow().as_ref() {
        Some(Source::Message(fds)) => match fds.get(index as usize) {
            Some(fd) => fd.try_clone().map_err(|e| {
                decode_failure(format!("cannot take the descriptor of a {kind}: {e}"))
            }),
            None => Err(decode_failure_as(Error::DescriptorsMissing {
                claimed: index as usize + 1,
                arrived: fds.len(),
            })),
        },
        Some(Source::Child(_)) => Err(decode_failure(format!(
            "a {kind} sent with a message, inside a child's args: its descriptor did not come"
        ))),
        None => Err(decode_failure_as(Error::DescriptorsMissing {
            claimed: index as usize + 1,
            arrived: 0,
        })),
    })
}

/// Takes the descriptor at `index` for a handle of type `ty` being decoded
/// in a child: a descriptor that a handle of another type brought is an
/// error, whatever the bytes say.
pub(crate) fn take_fd<E: serde::de::Error>(
    index: u32,
    kind: &'static str,
    ty: u64,
) -> Result<OwnedFd, E> {
    let (fd, recorded) = take_typed_fd(index, kind)?;
    if recorded != ty {
        return Err(retyped(kind));
    }
    Ok(fd)
}

/// Takes the descriptor at `index` and the type of the handle that brought it.
pub(crate) fn take_typed_fd<E: serde::de::Error>(
    index: u32,
    kind: &'static str,
) -> Result<TypedFd<OwnedFd>, E> {
    SOURCE.with(|s| match s.borrow().as_ref() {
        Some(Source::Child(fds)) => match fds.get(index as usize) {
            Some((fd, ty)) => fd.try_clone().map(|fd| (fd, *ty)).map_err(|e| {
                decode_failure(format!("cannot take the descriptor of a {kind}: {e}"))
            }),
            None => Err(decode_failure(format!(
                "a {kind} refers to descriptor #{index}, but only {} arrived",
                fds.len()
            ))),
        },
        _ => Err(decode_failure(format!(
            "a {kind} made for a child's args can be received only there"
        ))),
    })
}

/// Whether this thread is encoding a child's arguments.
pub(crate) fn encoding_for_child() -> bool {
    way() == Way::Child
}
