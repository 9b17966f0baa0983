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

thread_local! {
    /// Descriptors recorded while encoding a child's arguments.
    static SINK: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    /// Descriptors available while decoding a child's arguments.
    static SOURCE: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// The kind of handle that was serialized where it cannot travel.
    static REFUSED: RefCell<Option<&'static str>> = const { RefCell::new(None) };
}

fn codec_error(e: postcard::Error) -> crate::error::BoxError {
    Box::new(e)
}

fn encode_error<T: Serialize + ?Sized>(e: postcard::Error, value: &T) -> Error {
    match REFUSED.with(|r| r.borrow_mut().take()) {
        Some(kind) => Error::HandleNotTransferable { kind },
        None => match (&e, crate::probe::custom_message(value)) {
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
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<RawFd>)> {
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
/// [`depth::MAX_DEPTH`](crate::depth::MAX_DEPTH) levels deep (deeper is an
/// error, not a stack overflow).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    match crate::depth::deserialize::<T, _>(&mut de, crate::depth::MAX_DEPTH) {
        Ok(value) => match de.finalize() {
            Ok([]) => Ok(value),
            Ok(rest) => Err(Error::Decode(
                format!("{} bytes left over after the value", rest.len()).into(),
            )),
            Err(e) => Err(Error::Decode(codec_error(e))),
        },
        Err(crate::depth::Failure::Format(e)) => Err(Error::Decode(codec_error(e))),
        Err(e) => Err(Error::Decode(Box::new(e))),
    }
}

/// Decodes a child's arguments, whose handles take their descriptors from `fds`.
pub(crate) fn decode_with_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    with_fds(fds, || decode(bytes))
}

/// Runs `f` with `fds` available to the handles it decodes.
pub(crate) fn with_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let previous = SOURCE.with(|s| s.borrow_mut().replace(fds));
    let r = f();
    SOURCE.with(|s| *s.borrow_mut() = previous);
    r
}

/// Records `fd` for the child being encoded and returns its index. Outside of
/// a child's arguments, handles cannot travel: the error names the handle.
pub(crate) fn push_fd<E: serde::ser::Error>(
    fd: BorrowedFd<'_>,
    kind: &'static str,
) -> Result<u32, E> {
    let raw = fd.as_raw_fd();
    SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(fds) => Ok(match fds.iter().position(|f| *f == raw) {
            Some(i) => i as u32,
            None => {
                fds.push(raw);
                (fds.len() - 1) as u32
            }
        }),
        None => {
            REFUSED.with(|r| *r.borrow_mut() = Some(kind));
            Err(E::custom(format!(
                "a {kind} can be passed to a child process only inside its args"
            )))
        }
    })
}

/// Takes the descriptor at `index` for a handle being decoded in a child.
pub(crate) fn take_fd<E: serde::de::Error>(index: u32, kind: &'static str) -> Result<OwnedFd, E> {
    SOURCE.with(|s| match s.borrow().as_ref() {
        Some(fds) => match fds.get(index as usize) {
            Some(fd) => fd
                .try_clone()
                .map_err(|e| E::custom(format!("cannot take the descriptor of a {kind}: {e}"))),
            None => Err(E::custom(format!(
                "a {kind} refers to descriptor #{index}, but only {} arrived",
                fds.len()
            ))),
        },
        None => Err(E::custom(format!(
            "a {kind} can be received only inside a child's args"
        ))),
    })
}

/// Whether this thread is encoding a child's arguments (handles can travel).
pub(crate) fn encoding_for_child() -> bool {
    SINK.with(|s| s.borrow().is_some())
}
