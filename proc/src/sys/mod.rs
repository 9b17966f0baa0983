//! Everything below safe Rust: raw fds, fork, posix_spawn, pidfds, signals,
//! fd passing and the location of functions in the executable image.
//!
//! Every `unsafe` block of mp-proc is in this module, each with a `SAFETY:`
//! comment; the modules above it are safe Rust.

#![allow(unsafe_code)]

pub(crate) mod atomics;
pub(crate) mod fd;
pub(crate) mod image;
pub(crate) mod process;
pub(crate) mod scm;
pub(crate) mod shm;
pub(crate) mod spawn;
pub(crate) mod sync;
