//! The wire: how values, handles and function references become bytes.

pub(crate) mod codec;
pub(crate) mod depth;
pub(crate) mod handle;
pub(crate) mod payload;
pub(crate) mod probe;
pub(crate) mod runners;
