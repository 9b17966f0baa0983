//! Which shared values this thread holds a guard of: a value's lock may be
//! reentrant (its own is an `RLock`, as CPython's), so the thread holding a
//! [`SharedGuard`](super::SharedGuard) could take it again and get a second
//! `&mut` to the same memory. A second guard of the same memory, from any
//! handle of it (a clone, a decoded copy on another mapping), is refused
//! instead.

use std::cell::RefCell;
use std::os::fd::AsFd;

use crate::error::{Error, OsContext, Result};
use crate::sync::shared::Shared;

std::thread_local! {
    /// The memory (device and inode of its file) of each live guard of
    /// this thread, and the process that took it: a fork child, a copy of
    /// the thread, inherits the list but holds none of those locks.
    static GUARDED: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

/// Which memory `data` is, in every mapping and process: the device and
/// inode of its file.
pub(super) fn memory(data: &Shared) -> Result<(u64, u64)> {
    crate::sys::fd::identity(data.0.fd().as_fd()).os("fstat shared memory")
}

/// Whether this thread holds a live guard of `memory`: then a plain read
/// or write of it (`get`, `set`, a `get_obj` view) would reach memory that
/// the guard's `&mut` covers.
pub(super) fn held_here(memory: (u64, u64)) -> bool {
    GUARDED
        .try_with(|g| {
            let g = g.borrow();
            // No guard (nearly always): no getpid(2), a system call of
            // 0.2 µs, on every raw `get` and `set`.
            !g.is_empty() && g.contains(&(memory, std::process::id()))
        })
        .unwrap_or(false)
}

/// Panics if this thread holds a live guard of `memory` (`what`: the call,
/// for the message): like `RefCell::borrow` while it is mutably borrowed,
/// a read or write beside a live `&mut` is refused, not made.
pub(super) fn refuse_beside_guard(memory: (u64, u64), what: &str) {
    if held_here(memory) {
        panic!(
            "{what} while this thread holds a guard of the same memory from `lock()`: \
             read or write through the guard instead"
        );
    }
}

/// This thread's claim on a value's memory, given up when dropped (a
/// guard is not `Send`: it drops in the thread that made it).
pub(super) struct Claim(Id);

/// A memory (device, inode) claimed in a process.
type Id = ((u64, u64), u32);

impl Claim {
    /// Claims `memory` (see [`memory`]) for a guard (`what`: the value's
    /// kind, for the error); a memory this thread already holds a guard of
    /// is [`Error::Invalid`].
    pub(super) fn take(memory: (u64, u64), what: &'static str) -> Result<Claim> {
        let id = (memory, std::process::id());
        GUARDED.with(|g| {
            let mut g = g.borrow_mut();
            // A forked copy of this thread: its parent's claims are not its own.
            g.retain(|(_, pid)| *pid == id.1);
            if g.contains(&id) {
                return Err(Error::Invalid {
                    what,
                    reason: "this thread already holds a guard of it: a second guard would \
                             be a second mutable reference to the same memory"
                        .into(),
                });
            }
            g.push(id);
            Ok(Claim(id))
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // `try_with`: a guard dropped while the thread's locals are torn down.
        let _ = GUARDED.try_with(|g| {
            let mut g = g.borrow_mut();
            if let Some(i) = g.iter().position(|id| *id == self.0) {
                g.swap_remove(i);
            }
        });
    }
}
