//! mp-manager's integration tests, for fork, spawn and forkserver.

#[cfg(feature = "pool")]
mod attach;
#[cfg(feature = "pool")]
mod attach_mpirun;
#[cfg(feature = "pool")]
mod attach_trust;
mod barrier_action;
mod base;
mod cluster;
#[cfg(feature = "pool")]
mod cluster_hosts;
mod containers;
mod cpython_containers;
mod cpython_port;
mod deadlines;
mod dict;
mod errors;
mod fuzz_corpus;
mod handles;
mod handshake;
mod initializer;
mod load;
mod lock_holder;
mod nested;
#[cfg(feature = "pool")]
mod partition;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "pool")]
mod pool_faults;
#[cfg(feature = "pool")]
mod pool_foreign;
mod proxies_attack;
mod scenarios;
mod sessions;
mod set;
mod shared_memory;
mod sync;
mod trust;
