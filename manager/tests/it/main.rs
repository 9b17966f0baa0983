//! mp-manager's integration tests, for fork, spawn and forkserver.

mod base;
mod cpython_port;
mod deadlines;
mod dict;
mod errors;
mod fuzz_corpus;
mod handles;
mod handshake;
mod load;
mod lock_holder;
mod nested;
mod scenarios;
mod sessions;
mod shared_memory;
mod sync;
mod trust;
