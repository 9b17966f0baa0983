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
/// Handles (`Connection`, and in time queues, locks and shared memory) are
/// payloads too: inside a child's `args` they arrive usable in the child.
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

thread_local! {
    /// Descriptors recorded while encoding a child's arguments.
    static SINK: RefCell<Option<Vec<TypedFd<RawFd>>>> = const { RefCell::new(None) };
    /// Descriptors available while decoding a child's arguments.
    static SOURCE: RefCell<Option<Vec<TypedFd<OwnedFd>>>> = const { RefCell::new(None) };
    /// The kind of handle that was serialized where it cannot travel.
    static REFUSED: RefCell<Option<&'static str>> = const { RefCell::new(None) };
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
    let previous = SINK.with(|s| s.borrow_mut().replace(Vec::new()));
    let bytes = encode(value);
    let fds = SINK
        .with(|s| std::mem::replace(&mut *s.borrow_mut(), previous))
        .unwrap_or_default();
    Ok((bytes?, fds))
}

/// Decodes a value; the bytes must be exactly one value, nested at most
/// [`depth::MAX_DEPTH`](crate::wire::depth::MAX_DEPTH) levels deep (deeper is an
/// error, not a stack overflow).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
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

/// Runs `f` with [`from_parent`] set to `yes`.
pub(crate) fn trusting<R>(yes: bool, f: impl FnOnce() -> R) -> R {
    let previous = FROM_PARENT.with(|c| c.replace(yes));
    let r = f();
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
    let previous = SOURCE.with(|s| s.borrow_mut().replace(fds));
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
        Some(fds) => match fds.iter().position(|(f, _)| *f == raw) {
            Some(i) if fds[i].1 == ty => Ok(i as u32),
            Some(_) => Err(E::custom(format!(
                "descriptor {raw} is a {kind} and a handle of another type"
            ))),
            None => {
                fds.push((raw, ty));
                Ok((fds.len() - 1) as u32)
            }
        },
        None => {
            REFUSED.with(|r| *r.borrow_mut() = Some(kind));
            Err(E::custom(format!(
                "a {kind} can be passed to a child process only inside its args"
            )))
        }
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
        Some(fds) => match fds.get(index as usize) {
            Some((fd, ty)) => fd.try_clone().map(|fd| (fd, *ty)).map_err(|e| {
                decode_failure(format!("cannot take the descriptor of a {kind}: {e}"))
            }),
            None => Err(decode_failure(format!(
                "a {kind} refers to descriptor #{index}, but only {} arrived",
                fds.len()
            ))),
        },
        None => Err(decode_failure(format!(
            "a {kind} can be received only inside a child's args"
        ))),
    })
}

/// Whether this thread is encoding a child's arguments (handles can travel).
pub(crate) fn encoding_for_child() -> bool {
    SINK.with(|s| s.borrow().is_some())
}
