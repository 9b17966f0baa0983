//! For pools whose workers are threads of this process (mp-dummy's
//! `ThreadPool`): running a task's code on a thread that is not a worker,
//! and waiting for it, the way the pool's own calls do.

use crate::Result;

/// Runs `f` as a worker runs a task's function, on the calling thread: a
/// panic is caught, not printed, and becomes
/// [`Error::Panicked`](crate::Error::Panicked) with its message (what `get`
/// would return had a worker run it); `mp_proc::exit` inside `f` goes on
/// unwinding.
///
/// ```
/// let r = mp_pool::in_process::catch_task(|| -> u32 { panic!("boom") });
/// assert!(matches!(r, Err(mp_pool::Error::Panicked { message }) if message == "boom"));
/// ```
pub fn catch_task<R>(f: impl FnOnce() -> R) -> Result<R> {
    crate::worker::catch_task(f)
}

/// Held while a caller waits for a pool's work on its own: Ctrl-C then
/// terminates the pools (their calls fail with
/// [`Error::Interrupted`](crate::Error::Interrupted)), as during the pool's
/// own waits.
pub struct Waiting {
    _guard: crate::sys::WaitGuard,
}

impl Waiting {
    /// Starts waiting.
    pub fn new() -> Waiting {
        Waiting {
            _guard: crate::sys::WaitGuard::new(),
        }
    }
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waiting")
    }
}

impl Default for Waiting {
    fn default() -> Waiting {
        Waiting::new()
    }
}
