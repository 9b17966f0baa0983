//! A shared region as a handle: what every process-shared primitive is made of.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, OsContext, Result};
use crate::sys::shm::Region;
use crate::sys::sync::{self, Taken};
use crate::wire::handle::handle_type;
use crate::wire::payload;

/// A region shared by every clone of a handle, in every process it reaches.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<Region>);

impl Shared {
    pub(crate) fn new(len: usize) -> Result<Shared> {
        Ok(Shared(Arc::new(
            Region::anonymous(len).os("create shared memory")?,
        )))
    }

    /// Writes the descriptor's index and the handle's type: a handle of
    /// kind `kind` over items of type `elem` ([`type_tag`](crate::wire::handle::type_tag),
    /// 0 for none).
    pub(crate) fn serialize<S: Serializer>(
        &self,
        kind: &'static str,
        elem: u64,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let index = payload::push_fd(self.0.fd().as_fd(), kind, handle_type(kind, elem))?;
        (index, handle_type(kind, elem)).serialize(s)
    }

    /// Rebuilds a handle that [`serialize`](Self::serialize) wrote with the
    /// same `kind` and `elem`; a handle of another type is an error.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        kind: &'static str,
        elem: u64,
        d: D,
    ) -> std::result::Result<Shared, D::Error> {
        let (index, ty) = <(u32, u64)>::deserialize(d)?;
        if ty != handle_type(kind, elem) {
            return Err(crate::wire::payload::retyped(kind));
        }
        let fd = payload::take_fd(index, kind, ty)?;
        let region = Region::from_fd(fd).map_err(serde::de::Error::custom)?;
        Ok(Shared(Arc::new(region)))
    }

    pub(crate) fn same(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

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
    let end = Instant::now() + SPIN;
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
pub(crate) fn poll_until(ready: impl Fn() -> bool) -> bool {
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

/// A robust process-shared mutex at an offset of a shared region.
#[derive(Clone)]
pub(crate) struct RawLock {
    pub(crate) shared: Shared,
    pub(crate) offset: usize,
    pub(crate) what: &'static str,
}

impl RawLock {
    pub(crate) fn init(
        shared: Shared,
        offset: usize,
        recursive: bool,
        what: &'static str,
    ) -> Result<RawLock> {
        sync::mutex_init(&shared.0, offset, recursive).os("pthread_mutex_init")?;
        Ok(RawLock {
            shared,
            offset,
            what,
        })
    }

    /// Takes the lock, waiting until `deadline` (`None`: as long as it
    /// takes); `Ok(false)` when the deadline passed. A dead owner is
    /// [`Error::OwnerDied`], with the lock released again.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<bool> {
        self.outcome(sync::mutex_lock(&self.shared.0, self.offset, deadline))
    }

    pub(crate) fn try_lock(&self) -> Result<bool> {
        self.outcome(sync::mutex_try_lock(&self.shared.0, self.offset))
    }

    fn outcome(&self, r: std::io::Result<Taken>) -> Result<bool> {
        match r {
            Ok(Taken::Yes) => Ok(true),
            Ok(Taken::No) => Ok(false),
            Ok(Taken::OwnerDied) => {
                let _ = sync::mutex_unlock(&self.shared.0, self.offset);
                Err(Error::OwnerDied { what: self.what })
            }
            Err(e) if e.raw_os_error() == Some(libc::EDEADLK) => Err(Error::WouldDeadlock),
            Err(e) => Err(Error::os("lock", e)),
        }
    }

    pub(crate) fn unlock(&self) -> Result<()> {
        match sync::mutex_unlock(&self.shared.0, self.offset).os("unlock")? {
            true => Ok(()),
            false => Err(Error::NotHeld { what: self.what }),
        }
    }
}
