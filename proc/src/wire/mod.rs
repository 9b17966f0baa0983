//! The wire: how values, handles and function references become bytes.
//! Above the OS and the leaf modules (errors, start methods), below the
//! runtime: nothing here knows who this process is.
//!
//! `payload` (encoding, descriptors in handles, decoding errors) uses
//! `depth` (a bound on nesting) and `probe` (custom messages); `handle`
//! signs and tags handles; `runners` decode, call and encode for a function
//! given as an address; `frame` is CPython's message framing; `codec` is the
//! public face.

pub(crate) mod codec;
pub(crate) mod depth;
pub(crate) mod frame;
pub(crate) mod handle;
pub(crate) mod payload;
pub(crate) mod probe;
pub(crate) mod runners;
