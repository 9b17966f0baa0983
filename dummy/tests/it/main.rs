//! mp-dummy's integration tests: the conformance suites on threads, and
//! what only threads do.

mod asyncs;
mod conformance;
mod drops;
mod generic;
mod input_panics;
mod join_twice;
mod manager;
mod names;
mod pool;
mod results;
mod scenarios;
mod shared;
mod sync_i16;
mod threads;
