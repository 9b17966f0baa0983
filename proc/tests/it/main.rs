//! mp-proc's integration tests. Behaviours are written once as
//! `fn(StartMethod)` and instantiated for fork, spawn and forkserver.

mod codec_props;
mod conformance;
mod connection;
mod cpython_i16;
mod cpython_port;
mod cpython_port_tracker;
mod fds;
mod fork_stdio;
mod forkserver_restart;
mod fuzz_corpus;
mod handles;
mod handles_attack;
mod handles_cpython;
mod handles_faults;
mod handles_relay;
mod handshake;
mod interrupt;
mod lifecycle;
mod nesting;
mod parent;
mod preload;
mod preload_resources;
mod queues;
mod rt_attack;
mod scenarios;
mod shareable_list;
mod shared_memory;
mod spawn_fn;
mod sync;
mod sync_attack;
mod sync_i16;
mod tracker_restart;
mod tree;
mod trust;
mod try_recv;
