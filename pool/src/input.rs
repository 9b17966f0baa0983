//! Pulling a call's input on the caller's thread: a panic of the input
//! iterator becomes [`Error::InputPanicked`] instead of unwinding out of the
//! call (CPython raises the input's exception from the result's `next()`).

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::error::{Error, Result};

/// The input's panic as an error; `mp_proc::exit` goes on unwinding.
fn failure(payload: Box<dyn std::any::Any + Send>) -> Error {
    if mp_proc::plumbing::is_exit_request(&*payload) {
        resume_unwind(payload)
    }
    Error::InputPanicked {
        message: mp_proc::plumbing::panic_message(&*payload),
    }
}

/// Runs `f`, which pulls from a call's input: its panic is the input's error.
pub(crate) fn guard<T>(f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(failure)
}

/// All of `items`, or the input's panic.
pub(crate) fn collect<A>(items: impl IntoIterator<Item = A>) -> Result<Vec<A>> {
    guard(|| items.into_iter().collect())
}

/// At most `max` more items of `items`, or the input's panic (the items
/// pulled before it are dropped: their task fails as a whole, as CPython's).
pub(crate) fn pull<A>(items: &mut impl Iterator<Item = A>, max: usize) -> Result<Vec<A>> {
    guard(|| items.by_ref().take(max).collect())
}
