//! Everything below safe Rust: raw fds, fork, posix_spawn, pidfds, signals,
//! fd passing, code before `main` and the location of functions in the
//! executable image.
//!
//! Every `unsafe` operation of mp-proc is in this module, each with a
//! `SAFETY:` comment. A function whose safety depends on its caller is an
//! `unsafe fn` with a `# Safety` section; the layer above only calls those,
//! each call with a `SAFETY:` comment that shows the contract is met.

#![allow(unsafe_code)]

pub(crate) mod atomics;
pub(crate) mod ctor;
pub(crate) mod fd;
pub(crate) mod image;
pub(crate) mod process;
pub(crate) mod scm;
pub(crate) mod shm;
pub(crate) mod signal_fds;
pub(crate) mod spawn;
pub(crate) mod sync;
