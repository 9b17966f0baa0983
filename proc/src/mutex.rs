//! The one way the crate locks a `std::sync::Mutex`: ignoring poison.
//! Every layer locks mutexes (the runtime's state, a connection's buffers),
//! so this sits below them all; sibling crates reach it as
//! `mp_proc::plumbing::lock`.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poison: the data of every mutex in the workspace
/// stays consistent across a panic (each critical section either completes
/// or changes nothing a reader relies on), so a panic elsewhere is not a
/// reason to fail here.
///
/// ```
/// let m = std::sync::Mutex::new(1);
/// *mp_proc::plumbing::lock(&m) += 1;
/// assert_eq!(*mp_proc::plumbing::lock(&m), 2);
/// ```
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
