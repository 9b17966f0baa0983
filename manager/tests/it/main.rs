//! mp-manager's integration tests, for fork, spawn and forkserver.

mod base;
mod dict;
mod handshake;
mod load;
mod scenarios;
mod sync;
