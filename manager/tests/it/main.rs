//! mp-manager's integration tests, for fork, spawn and forkserver.

mod base;
mod dict;
mod fuzz_corpus;
mod load;
mod scenarios;
mod sync;
