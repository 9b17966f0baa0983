//! The one spin-then-wait loop of the crate, and deadlines. A waiter polls
//! a little before it sleeps (on a futex, in `poll`): a peer that answers
//! within a sleep and a wake-up is seen without either. Below every layer
//! that waits (the primitives, queues, connections); sibling crates reach
//! [`spin_until_ready`] and [`deadline_after`] through `mp_proc::plumbing`.

use std::time::{Duration, Instant};

/// How long a waiter polls before it sleeps. On these machines a sleep and a
/// wake-up across CPUs cost ~20 µs per hop; a peer that answers within that
/// time is seen without either.
pub(crate) const SPIN: Duration = Duration::from_micros(30);

/// Polls (bounded by [`SPIN`] and `deadline`) until `ready()`; returns
/// `ready()`. It yields the CPU between rounds, so a peer that shares this CPU
/// runs instead of waiting behind the poll.
pub(crate) fn spin_until(ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    spin_then_yield(ready, deadline, 32)
}

/// The one spin-then-wait loop of the crate: checks `ready()`, then for
/// [`SPIN`] (or until `deadline`) rounds of `spins` spin hints with a check
/// after each, then a yield of the CPU and a check. Returns whether it
/// became ready; the caller sleeps (on a futex, in `poll`) when it did not.
fn spin_then_yield(ready: impl Fn() -> bool, deadline: Option<Instant>, spins: u32) -> bool {
    if cfg!(loom) {
        // The model checks every interleaving: a poll is one look there
        // (its length must not depend on the clock).
        return ready();
    }
    if ready() {
        return true;
    }
    let now = Instant::now();
    let end = now.checked_add(SPIN).unwrap_or(now);
    let end = deadline.map_or(end, |d| d.min(end));
    loop {
        for _ in 0..spins {
            std::hint::spin_loop();
            if ready() {
                return true;
            }
        }
        std::thread::yield_now();
        if ready() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
    }
}

/// Polls `ready()` for about what a sleep and a wake-up across CPUs cost
/// (30 µs, yielding the CPU between rounds), as mp's own waits do before
/// they sleep; whether it became ready. A thread that may run on one CPU
/// only checks once (the thread it waits for may need that CPU). For the
/// workspace's crates that wait on other threads (mp-dummy's pool).
///
/// ```
/// let done = std::sync::atomic::AtomicBool::new(true);
/// assert!(mp_proc::plumbing::spin_until_ready(|| done.load(std::sync::atomic::Ordering::Acquire)));
/// ```
#[doc(hidden)]
pub fn spin_until_ready(ready: impl Fn() -> bool) -> bool {
    if !crate::sys::process::several_cpus() {
        return ready();
    }
    spin_until(ready, None)
}

/// As [`spin_until`], for a `ready()` that is itself a system call (e.g. a
/// zero-timeout `poll`): no spin hints, a yield after every check, and no
/// polling at all in a thread pinned to one CPU (the peer may need that CPU).
/// mp-pool's scheduler polls its workers' connections with it.
///
/// ```
/// // Pinned to one CPU it does not poll (false); else a ready check is true.
/// let _ = mp_proc::plumbing::poll_until(|| true);
/// ```
#[doc(hidden)]
pub fn poll_until(ready: impl Fn() -> bool) -> bool {
    if !crate::sys::process::several_cpus() {
        return false;
    }
    spin_then_yield(ready, None, 0)
}

/// The instant `timeout` from now; `None` (never) when it is too far to
/// represent. Every wait of the workspace's crates computes its deadline
/// here: `Instant::now() + timeout` panics for a huge timeout (a peer's
/// `Duration::MAX`), where a wait should just be unbounded.
///
/// ```
/// use std::time::Duration;
/// assert!(mp_proc::plumbing::deadline_after(Duration::from_secs(1)).is_some());
/// assert_eq!(mp_proc::plumbing::deadline_after(Duration::MAX), None);
/// ```
#[doc(hidden)]
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
