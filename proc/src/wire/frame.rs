//! CPython's message framing, for `Connection` and for a child's outcome
//! (which the child writes without a `Connection`, below the user API).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::wire::payload;

/// The header of a frame of `len` bytes, CPython's: a big-endian `i32`, or
/// for a frame over 2 GiB `-1` then a big-endian `u64`. Returns the bytes
/// and how many of them are the header.
pub(crate) fn header(len: usize) -> ([u8; 12], usize) {
    let mut header = [0xffu8; 12];
    if len > i32::MAX as usize {
        header[4..].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 12)
    } else {
        header[..4].copy_from_slice(&(len as i32).to_be_bytes());
        (header, 4)
    }
}

/// Appends the frame of `value` (header and postcard bytes) to `out`; on
/// error `out` is as it was.
pub(crate) fn append<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = payload::append(value, out) {
        out.truncate(at);
        return Err(e);
    }
    match header(out.len() - at - 4) {
        (h, 4) => out[at..at + 4].copy_from_slice(&h[..4]),
        (h, n) => drop(out.splice(at..at + 4, h[..n].iter().copied())),
    }
    Ok(())
}

/// Parses the frame header at the start of `bytes`: how many bytes it takes
/// and the payload's length; `None` while it has not all arrived. A negative
/// length, or one over `max`, is the error `Connection::recv` gives.
pub(crate) fn parse_header(bytes: &[u8], max: u64) -> Result<Option<(usize, u64)>> {
    let Some(short) = bytes.first_chunk::<4>() else {
        return Ok(None);
    };
    let (head, len) = match i32::from_be_bytes(*short) {
        -1 => match bytes.get(4..).and_then(<[u8]>::first_chunk::<8>) {
            Some(long) => (12, u64::from_be_bytes(*long)),
            None => return Ok(None),
        },
        n if n < 0 => return Err(Error::NegativeFrameLength { len: n }),
        n => (4, n as u64),
    };
    if len > max || len > isize::MAX as u64 {
        return Err(Error::FrameTooLong { len, max });
    }
    Ok(Some((head, len)))
}
