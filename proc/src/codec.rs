//! The encoding of typed values between processes (postcard), for crates that
//! carry values of their own (a pool's arguments and results, a manager's
//! requests). Handles (`Connection`, queues, ...) cannot be encoded here:
//! they travel only inside a child's `args`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;

/// Encodes `value`.
///
/// ```
/// let bytes = mp_proc::codec::encode(&("a", 1u8))?;
/// assert_eq!(mp_proc::codec::decode::<(String, u8)>(&bytes)?, ("a".to_string(), 1));
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    crate::payload::encode(value)
}

/// Decodes a value of type `T`; the bytes must be exactly one value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    crate::payload::decode(bytes)
}

/// Appends the encoding of `value` to `out` and returns it.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Result<Vec<u8>> {
    crate::payload::encode_into(value, out)
}
