//! The two things mp-logging needs from below safe Rust: writing a record to
//! fd 2 without taking std's stderr lock, and a process name that can be
//! replaced without a lock.
//!
//! Both exist for fork: a child forked while another thread of its parent
//! held std's stderr lock or a `Mutex` would wait forever for a thread that
//! does not exist in the child. An atomic pointer and a raw `write(2)` have no
//! such state.

use std::io;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Writes `buf` to fd 2 with as few `write` calls as the kernel allows (one for
/// any record that fits a pipe's atomic size), retrying on `EINTR`.
/// Errors are dropped: a logger has nowhere to report them.
pub(crate) fn write_stderr(mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(io::stderr(), buf) {
            Ok(0) => return,
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// The current process's name; null means `MainProcess`. Every pointer stored
/// here comes from `Box::leak` and is never freed, so a reader may keep the
/// `&'static str` forever. A process changes its name a handful of times at
/// most (once per start in a child), so the leak is bounded.
static NAME: AtomicPtr<String> = AtomicPtr::new(std::ptr::null_mut());

pub(crate) fn set_name(name: String) {
    let leaked: &'static mut String = Box::leak(Box::new(name));
    NAME.store(leaked, Ordering::Release);
}

pub(crate) fn name() -> &'static str {
    let p = NAME.load(Ordering::Acquire);
    if p.is_null() {
        "MainProcess"
    } else {
        // SAFETY: every non-null pointer stored in NAME comes from Box::leak in
        // set_name and is never freed or written again, so it is valid and
        // immutable for 'static.
        unsafe { (*p).as_str() }
    }
}
