//! Process-shared blocking: futex words and robust pthread mutexes and
//! condition variables placed in shared [`Region`]s.
//!
//! Every wait takes an absolute `CLOCK_MONOTONIC` deadline, so a wait that a
//! signal interrupts resumes with the time that is left.

#[cfg(not(loom))]
use std::io;
use std::sync::atomic::Ordering;
#[cfg(not(loom))]
use std::time::Instant;

use super::atomics::{AtomicU32, AtomicU64, fence};
use super::shm::Region;

// Under the model (`--cfg loom`) the mutexes, conditions and the futex are
// emulated: see `super::atomics::model`.
#[cfg(loom)]
pub(crate) use super::atomics::model::{
    cond_init, cond_notify, cond_wait, futex_wait, futex_wake, mutex_init, mutex_lock,
    mutex_try_lock, mutex_unlock,
};

/// The outcome of taking a mutex.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(loom, allow(dead_code))] // the model's mutex is never robust
pub(crate) enum Taken {
    /// Taken.
    Yes,
    /// Taken, but its previous owner died holding it (the state it guards may
    /// be half-updated). It has been made usable again.
    OwnerDied,
    /// Not taken: the deadline passed, or (for a try) it is held.
    No,
}

/// Bytes reserved for one pthread object (mutex or condition).
pub(crate) const OBJECT: usize = 64;

const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= OBJECT);
const _: () = assert!(std::mem::size_of::<libc::pthread_cond_t>() <= OBJECT);

#[cfg(not(loom))]
unsafe extern "C" {
    /// glibc 2.30+: `pthread_mutex_timedlock` against a chosen clock.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

#[cfg(not(loom))]
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// The `CLOCK_MONOTONIC` time of `deadline` (`Instant` is that clock on Linux).
#[cfg(not(loom))]
fn abstime(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let mut sec = now
        .tv_sec
        .saturating_add(left.as_secs().min(i64::MAX as u64 / 2) as libc::time_t);
    let mut nsec = now.tv_nsec + left.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

#[cfg(not(loom))]
fn mutex(region: &Region, offset: usize) -> *mut libc::pthread_mutex_t {
    region.at(offset, OBJECT).cast()
}

#[cfg(not(loom))]
fn cond(region: &Region, offset: usize) -> *mut libc::pthread_cond_t {
    region.at(offset, OBJECT).cast()
}

/// Initialises a process-shared, robust mutex at `offset` of a new region:
/// error-checking (a relock by its owner is `EDEADLK`), or recursive.
#[cfg(not(loom))]
pub(crate) fn mutex_init(region: &Region, offset: usize, recursive: bool) -> io::Result<()> {
    let kind = if recursive {
        libc::PTHREAD_MUTEX_RECURSIVE
    } else {
        libc::PTHREAD_MUTEX_ERRORCHECK
    };
    // SAFETY: the attribute object lives on this stack frame and is
    // initialised before use and destroyed after; the mutex memory is in
    // bounds of the region (checked by `at`), suitably aligned (regions are
    // page-aligned and offsets multiples of OBJECT), and not yet shared.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        check(libc::pthread_mutexattr_init(&mut attr))?;
        let r = (|| {
            check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_mutexattr_setrobust(
                &mut attr,
                libc::PTHREAD_MUTEX_ROBUST,
            ))?;
            check(libc::pthread_mutexattr_settype(&mut attr, kind))?;
            check(libc::pthread_mutex_init(mutex(region, offset), &attr))
        })();
        libc::pthread_mutexattr_destroy(&mut attr);
        r
    }
}

#[cfg(not(loom))]
fn taken(rc: libc::c_int, region: &Region, offset: usize) -> io::Result<Taken> {
    match rc {
        0 => Ok(Taken::Yes),
        libc::ETIMEDOUT | libc::EBUSY => Ok(Taken::No),
        libc::EOWNERDEAD => {
            // SAFETY: EOWNERDEAD means this thread now holds the mutex, which
            // is what pthread_mutex_consistent requires.
            check(unsafe { libc::pthread_mutex_consistent(mutex(region, offset)) })?;
            Ok(Taken::OwnerDied)
        }
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Takes the mutex, waiting until `deadline` (`None`: as long as it takes).
/// `EDEADLK` (already held by this thread, error-checking kind) is an error.
#[cfg(not(loom))]
pub(crate) fn mutex_lock(
    region: &Region,
    offset: usize,
    deadline: Option<Instant>,
) -> io::Result<Taken> {
    let m = mutex(region, offset);
    // SAFETY: `m` points to a mutex initialised by mutex_init in a mapping
    // that lives as long as `region`.
    let rc = unsafe {
        match deadline {
            None => libc::pthread_mutex_lock(m),
            Some(d) => {
                let t = abstime(d);
                pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &t)
            }
        }
    };
    taken(rc, region, offset)
}

/// Takes the mutex if it is free.
#[cfg(not(loom))]
pub(crate) fn mutex_try_lock(region: &Region, offset: usize) -> io::Result<Taken> {
    // SAFETY: as in mutex_lock.
    let rc = unsafe { libc::pthread_mutex_trylock(mutex(region, offset)) };
    taken(rc, region, offset)
}

/// Releases the mutex. `Ok(false)`: this thread does not hold it.
#[cfg(not(loom))]
pub(crate) fn mutex_unlock(region: &Region, offset: usize) -> io::Result<bool> {
    // SAFETY: as in mutex_lock; unlocking a mutex another thread holds is
    // EPERM for error-checking, recursive and robust mutexes, not UB.
    match unsafe { libc::pthread_mutex_unlock(mutex(region, offset)) } {
        0 => Ok(true),
        libc::EPERM => Ok(false),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Whether some thread, in any process, holds the mutex, read without
/// taking it (so a dead owner's state is left for the next lock to report).
/// glibc's `pthread_mutex_t` begins with its futex word (`__data.__lock`);
/// a robust mutex keeps its owner's thread id there (`FUTEX_TID_MASK`), and
/// the kernel clears it when the owner dies. (mp-proc is glibc-only already:
/// see `pthread_mutex_clocklock`.)
#[cfg(not(loom))]
pub(crate) fn mutex_held(region: &Region, offset: usize) -> bool {
    const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
    word(region, offset).load(std::sync::atomic::Ordering::Acquire) & FUTEX_TID_MASK != 0
}

/// The model's mutex: held if a try-lock fails.
#[cfg(loom)]
pub(crate) fn mutex_held(region: &Region, offset: usize) -> bool {
    match mutex_try_lock(region, offset) {
        Ok(Taken::Yes) => {
            let _ = mutex_unlock(region, offset);
            false
        }
        _ => true,
    }
}

/// Initialises a process-shared condition variable on `CLOCK_MONOTONIC`.
#[cfg(not(loom))]
pub(crate) fn cond_init(region: &Region, offset: usize) -> io::Result<()> {
    // SAFETY: as in mutex_init.
    unsafe {
        let mut attr: libc::pthread_condattr_t = std::mem::zeroed();
        check(libc::pthread_condattr_init(&mut attr))?;
        let r = (|| {
            check(libc::pthread_condattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_condattr_setclock(
                &mut attr,
                libc::CLOCK_MONOTONIC,
            ))?;
            check(libc::pthread_cond_init(cond(region, offset), &attr))
        })();
        libc::pthread_condattr_destroy(&mut attr);
        r
    }
}

/// Waits on the condition with the mutex held (and held again on return).
#[cfg(not(loom))]
pub(crate) fn cond_wait(
    cregion: &Region,
    coffset: usize,
    mregion: &Region,
    moffset: usize,
    deadline: Option<Instant>,
) -> io::Result<Taken> {
    let c = cond(cregion, coffset);
    let m = mutex(mregion, moffset);
    // SAFETY: both objects were initialised by this module in live mappings,
    // and the caller holds the mutex (pthread checks it for error-checking
    // and robust mutexes).
    let rc = unsafe {
        match deadline {
            None => libc::pthread_cond_wait(c, m),
            Some(d) => {
                let t = abstime(d);
                libc::pthread_cond_timedwait(c, m, &t)
            }
        }
    };
    taken(rc, mregion, moffset)
}

/// Wakes one waiter (`all`: every waiter) of the condition.
#[cfg(not(loom))]
pub(crate) fn cond_notify(region: &Region, offset: usize, all: bool) -> io::Result<()> {
    let c = cond(region, offset);
    // SAFETY: an initialised condition variable in a live mapping.
    check(unsafe {
        if all {
            libc::pthread_cond_broadcast(c)
        } else {
            libc::pthread_cond_signal(c)
        }
    })
}

/// The 32-bit word at `offset` (4-aligned) as an atomic.
pub(crate) fn word(region: &Region, offset: usize) -> &AtomicU32 {
    assert_eq!(offset % 4, 0, "unaligned futex word");
    #[cfg(loom)]
    return region.model.word32(offset);
    #[cfg(not(loom))]
    // SAFETY: in bounds and aligned (checked); shared memory accessed only
    // atomically through this reference, valid as long as `region`.
    unsafe {
        &*region.at(offset, 4).cast::<AtomicU32>()
    }
}

/// A waiter announces itself (one half of the handshake of every futex
/// user here). The handshake: a waiter counts itself in a `*_WAITING` word,
/// then reads the state it waits on (before or in [`futex_wait`]); a waker
/// changes that state, then reads the count, and skips the wake when it is
/// 0. Each side needs a full fence between its write and its read, or both
/// reads can see the old values (x86 lets a store sit in the store buffer
/// past a later load): the waker skips the wake, and the waiter sleeps on a
/// state that has already changed, for ever. (An `Event` ping-pong between
/// two processes hung this way after some million rounds.)
pub(crate) fn announce(waiters: &AtomicU32) {
    #[cfg(loom)]
    if super::atomics::model::handshake() == super::atomics::model::Handshake::WeakWaiter {
        waiters.fetch_add(1, Ordering::AcqRel);
        return;
    }
    waiters.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// The waker's half of the handshake (see [`announce`]): called after the
/// state changed; whether anyone may be waiting, to wake.
pub(crate) fn anyone_waiting(waiters: &AtomicU32) -> bool {
    #[cfg(loom)]
    if super::atomics::model::handshake() == super::atomics::model::Handshake::WeakWaker {
        return waiters.load(Ordering::Acquire) > 0;
    }
    fence(Ordering::SeqCst);
    waiters.load(Ordering::SeqCst) > 0
}

/// Sleeps while `*word == expected`, until woken or `deadline`. Returns false
/// if the deadline passed. (A spurious return is possible: callers re-check.)
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    let t = deadline.map(abstime);
    let tp = t
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT_BITSET (shared: no PRIVATE flag, the word is in a
    // shared mapping) reads the word and sleeps; `tp` is null or a valid
    // absolute CLOCK_MONOTONIC time.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            tp,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `n` sleepers on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE only wakes threads sleeping on this address.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// The 64-bit word at `offset` (8-aligned) as an atomic.
pub(crate) fn word64(region: &Region, offset: usize) -> &AtomicU64 {
    assert_eq!(offset % 8, 0, "unaligned 64-bit word");
    #[cfg(loom)]
    return region.model.word64(offset);
    #[cfg(not(loom))]
    // SAFETY: in bounds and aligned (checked); accessed only atomically.
    unsafe {
        &*region.at(offset, 8).cast::<AtomicU64>()
    }
}
