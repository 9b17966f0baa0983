#![doc = include_str!("../README.md")]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![deny(unsafe_code)]

mod core;
mod error;
#[doc(hidden)]
pub mod in_process;
mod pool;
mod records;
mod result;
mod sys;
mod worker;

pub use error::{Error, ProcError, Result};
pub use pool::{Pool, PoolBuilder};
pub use result::{AsyncResult, IMap};
