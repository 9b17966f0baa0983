//! Many items in one buffer: `[tag: u8][len: u32 LE][bytes]` per item, so a
//! task of thousands of items costs one allocation, not thousands.

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
