//! The mp workspace's conformance suites (not published): the behaviours
//! every [`mp_proc::Context`] backend shares, written once, generic over the
//! context.
//!
//! - [`proc`]: lifecycle, queues, locks and the other primitives, shared
//!   values; [`conformance_tests!`] makes a `#[test]` of each check.
//! - [`cpython_queue`], [`cpython_sync`]: CPython's own tests of queues and
//!   of the primitives, ported (in [`conformance_tests!`] too).
//! - `pool` (feature `pool`): the pool's behaviours;
//!   [`pool_conformance_tests!`] makes a `#[test]` of each check.
//!
//! mp-proc and mp-pool instantiate them for fork, spawn and forkserver,
//! mp-dummy for threads, in their integration tests (`tests/it/conformance.rs`),
//! each in a module named after the backend: `cargo xtask test` runs
//! `conformance::<backend>::` once per backend.
//!
//! ```
//! // In a crate's tests/it/conformance.rs, one `#[test]` per check:
//! mod fork {
//!     mp_conformance::conformance_tests!(mp_proc::get_context(mp_proc::StartMethod::Fork));
//! }
//!
//! // Or one check, called directly:
//! mp_conformance::proc::queue_bounded_and_timeouts(&mp_proc::get_context(mp_proc::StartMethod::Fork));
//! ```

pub mod cpython_queue;
pub mod cpython_sync;
#[cfg(feature = "pool")]
pub mod pool;
pub mod proc;
