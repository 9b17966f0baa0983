//! The wire: how values, handles and function references become bytes.

pub(crate) mod codec;
