//! How tasks and outcomes are encoded for workers in other processes: many
//! items in one buffer, `[tag: u8][len: u32 LE][bytes]` per item, so a task
//! of thousands of items costs one allocation, not thousands; and the
//! decoding of outcomes into a call's result.

use mp_proc::Payload;

use crate::error::{Error, Result};

/// An encoded argument (pool to worker) or an encoded result (worker to pool).
pub(crate) const VALUE: u8 = 0;
/// The item's function panicked; the bytes are the message.
pub(crate) const PANICKED: u8 = 1;
/// The item's argument or result did not encode or decode; the bytes say why.
pub(crate) const ENCODING: u8 = 2;

const HEADER: usize = 5;

/// Appends one record.
pub(crate) fn push(buf: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    buf.push(tag);
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Starts a record whose bytes are appended next; returns its position.
pub(crate) fn begin(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    at
}

/// Completes the record started at `at` with the bytes appended since.
pub(crate) fn finish(buf: &mut [u8], at: usize, tag: u8) {
    let len = (buf.len() - at - HEADER) as u32;
    buf[at] = tag;
    buf[at + 1..at + HEADER].copy_from_slice(&len.to_le_bytes());
}

/// Reads the record at byte `pos`: its tag, bytes, and the next position.
pub(crate) fn read(buf: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let header = buf.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(header[1..].try_into().ok()?) as usize;
    let bytes = buf.get(pos + HEADER..pos + HEADER + len)?;
    Some((header[0], bytes, pos + HEADER + len))
}

/// The records of a buffer, in order (a malformed tail ends them).
pub(crate) fn iter(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let (tag, bytes, next) = read(buf, pos)?;
        pos = next;
        Some((tag, bytes))
    })
}

/// One outcome record as an item's result.
pub(crate) fn outcome(tag: u8, bytes: &[u8]) -> Result<&[u8]> {
    match tag {
        VALUE => Ok(bytes),
        PANICKED => Err(Error::Panicked {
            message: String::from_utf8_lossy(bytes).into_owned(),
        }),
        _ => Err(Error::Encoding {
            message: String::from_utf8_lossy(bytes).into_owned(),
        }),
    }
}

/// Decodes a task's result; the error names the type (postcard keeps no
/// message of a failing `Deserialize` impl).
pub(crate) fn decode_result<R: Payload>(bytes: &[u8]) -> Result<R> {
    mp_proc::codec::decode(bytes).map_err(|e| Error::Encoding {
        message: format!(
            "the result does not decode as {}: {}",
            std::any::type_name::<R>(),
            match e {
                mp_proc::Error::Decode(m) => m.to_string(),
                e => e.to_string(),
            }
        ),
    })
}

/// Encodes a task's argument. Handles in it travel as tickets that the
/// worker redeems (see `mp_proc::reduction`).
fn encode<A: serde::Serialize + 'static>(a: &A) -> Result<Vec<u8>> {
    mp_proc::codec::encode(a).map_err(Error::from)
}

/// The argument records of a task's items, in one buffer with no
/// allocation per item; an item that does not encode becomes an encoding
/// error record (its outcome).
pub(crate) fn encode_items<A: Payload>(chunk: &[A]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(chunk.len() * 8);
    for item in chunk {
        let at = begin(&mut buf);
        match mp_proc::codec::encode_into(item, std::mem::take(&mut buf)) {
            Ok(b) => {
                buf = b;
                finish(&mut buf, at, VALUE);
            }
            // The failed encoder handed nothing back: rebuild (rare).
            Err(_) => return reencode(chunk),
        }
    }
    buf
}

/// Rebuilds a task's records when an item fails to encode: every item
/// again, the failing ones as encoding errors.
fn reencode<A: Payload>(chunk: &[A]) -> Vec<u8> {
    let mut buf = Vec::new();
    for item in chunk {
        match encode(item) {
            Ok(bytes) => push(&mut buf, VALUE, &bytes),
            Err(e) => push(&mut buf, ENCODING, e.encoding_message().as_bytes()),
        }
    }
    buf
}
