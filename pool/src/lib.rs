#![doc = include_str!("../README.md")]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![deny(unsafe_code)]

// Layers, each using only those above it: the wire (`codec`), the pool's
// bookkeeping (`job`), the workers' side (`worker`, `local`), the transports
// (`scheduler`, `transport`), the core over them (`core`), then the user API
// (`result`, `future`, `imap`, `pool`).
mod builder;
mod codec;
mod core;
mod decode;
mod erased;
mod error;
mod future;
mod imap;
mod input;
mod job;
mod limits;
mod local;
#[doc(hidden)]
pub mod plumbing;
mod pool;
mod progress;
mod result;
mod scheduler;
mod spare;
mod sys;
mod transport;
mod worker;

pub use builder::PoolBuilder;
pub use error::{Error, ProcError, Result};
pub use future::ResultFuture;
pub use imap::IMap;
pub use pool::Pool;
pub use result::AsyncResult;
