//! What mp-dummy's `ThreadPool` needs from mp-pool and a user does not:
//! calls whose tasks are closures, for a [`Pool`] whose workers are threads
//! of this process (built over a context whose
//! [`workers`](mp_proc::Context::workers) are `Threads`). Hidden from the
//! docs, no stability promise.
//!
//! And what mp-manager's `Pool()` needs: calls whose function and items
//! arrive encoded from another process ([`submit_erased`]), and the pull
//! of an input that may panic ([`pull_input`]).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::imap::{Feed, IMap};
use crate::input;
use crate::job::{JobId, Task};
use crate::local;
use crate::result::{AsyncResult, Read};
use crate::sys::Slots;
use crate::{Pool, pool::default_chunksize};

pub use crate::erased::{Outcomes, pull_input, submit_erased};

/// [`Pool::join`], waiting at most until `deadline` (`None`: no limit):
/// whether the workers ended (`false`: not yet, the pool is unchanged).
/// For a waiter that must look at something else meanwhile (a manager's
/// server checks that its client is still there). Any number of callers
/// may wait at once; they all wait for the same end.
///
/// ```
/// use std::time::Duration;
///
/// let pool = mp_pool::Pool::new(Some(1))?;
/// pool.close();
/// let deadline = mp_proc::plumbing::deadline_after(Duration::from_secs(60));
/// assert!(mp_pool::plumbing::join_until(&pool, deadline)?);
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub fn join_until(pool: &Pool, deadline: Option<std::time::Instant>) -> Result<bool> {
    pool.core.join_until(deadline)
}

fn no_closures() -> Error {
    Error::InvalidArgument {
        what: "closures run only on a pool whose workers are threads of this process".into(),
    }
}

/// `f` on every item, `chunksize` items per task (`None`: CPython's
/// default); the results in input order. A pool whose workers are
/// processes cannot run closures: the call fails.
///
/// ```
/// let pool = mp_pool::Pool::new(Some(1))?;
/// let r = mp_pool::plumbing::map_async(&pool, |x: u32| x + 1, [1, 2], None);
/// assert!(matches!(r.get(), Err(mp_pool::Error::InvalidArgument { .. })));
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub fn map_async<A, R, F>(
    pool: &Pool,
    f: F,
    items: impl IntoIterator<Item = A>,
    chunksize: Option<usize>,
) -> AsyncResult<Vec<R>>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let read = Read::moved(local::take_map::<R>);
    if !pool.core.runs_closures() {
        return AsyncResult::failed(no_closures(), read);
    }
    if chunksize == Some(0) {
        return AsyncResult::failed(crate::pool::zero_chunksize(), read);
    }
    // The input is chunked as it is read, into buffers of earlier calls;
    // it is collected first only when its length is not known (the default
    // chunk size needs it).
    // A panic of the input is the call's error (`Error::InputPanicked`).
    let sized = input::guard(|| {
        let items = items.into_iter();
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => Ok((items, lo)),
            _ => Err(items.collect::<Vec<A>>()),
        }
    });
    let (mut items, n) = match sized {
        Ok(Ok(sized)) => sized,
        Ok(Err(all)) => return map_async(pool, f, all, chunksize),
        Err(e) => return AsyncResult::failed(e, read),
    };
    let per = chunksize.unwrap_or_else(|| default_chunksize(n, pool.processes()));
    if n > per {
        // Tasks for a worker are coming: wake one while the items are
        // gathered.
        pool.core.expect();
    }
    let spare = &pool.core.spare;
    let mut parts = Vec::with_capacity(n.div_ceil(per));
    let mut ranges = Vec::with_capacity(n.div_ceil(per));
    let mut total = 0;
    let gathered = input::guard(|| {
        loop {
            let mut part: Vec<A> = spare.take();
            part.extend(items.by_ref().take(per));
            if part.is_empty() {
                spare.give(part);
                break;
            }
            ranges.push(total..total + part.len());
            total += part.len();
            parts.push(part);
        }
    });
    if let Err(e) = gathered {
        return AsyncResult::failed(e, read);
    }
    let Some(slots) = Slots::new(ranges) else {
        return AsyncResult::failed(Error::Terminated, read);
    };
    let job = match pool.core.new_job(Some(total)) {
        Ok(job) => job,
        Err(e) => return AsyncResult::failed(e, read),
    };
    pool.core
        .submit(local::map_tasks(job, f, parts, slots, spare));
    AsyncResult::new(pool.core.clone(), job, total, read)
}

/// `f(args)` once (on a pool of threads; see [`map_async`]).
///
/// ```
/// let pool = mp_pool::Pool::new(Some(1))?;
/// let r = mp_pool::plumbing::apply_async(&pool, |x: u32| x + 1, 1);
/// assert!(r.get().is_err());
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub fn apply_async<A, R, F>(pool: &Pool, f: F, args: A) -> AsyncResult<R>
where
    A: Send + 'static,
    R: Send + 'static,
    F: FnOnce(A) -> R + Send + 'static,
{
    let read = Read::moved(local::take_one::<R>);
    if !pool.core.runs_closures() {
        return AsyncResult::failed(no_closures(), read);
    }
    let job = match pool.core.new_job(Some(1)) {
        Ok(job) => job,
        Err(e) => return AsyncResult::failed(e, read),
    };
    pool.core.submit([local::task_once(job, f, args)]);
    AsyncResult::new(pool.core.clone(), job, 1, read)
}

/// `f` on every item, lazily, `chunksize` items per task; results in input
/// order if `ordered`, else as they finish (on a pool of threads; see
/// [`map_async`]).
///
/// ```
/// let pool = mp_pool::Pool::new(Some(1))?;
/// let mut r = mp_pool::plumbing::imap(&pool, |x: u32| x + 1, 0.., 1, true);
/// assert!(matches!(r.next(), Some(Err(_))));
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub fn imap<A, R, F, I>(pool: &Pool, f: F, items: I, chunksize: usize, ordered: bool) -> IMap<R>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
    I: IntoIterator<Item = A>,
    I::IntoIter: Send + 'static,
{
    imap_buffered(pool, f, items, (chunksize, None), ordered)
}

/// As [`imap`], at most `buffersize` tasks ahead of the consumer (`None`:
/// the default look-ahead; `Some(0)` fails as a `chunksize` of 0 does).
///
/// ```
/// let pool = mp_pool::Pool::new(Some(1))?;
/// let mut r = mp_pool::plumbing::imap_buffered(&pool, |x: u32| x + 1, 0.., (1, Some(2)), true);
/// assert!(matches!(r.next(), Some(Err(_))));
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub fn imap_buffered<A, R, F, I>(
    pool: &Pool,
    f: F,
    items: I,
    (chunksize, buffersize): (usize, Option<usize>),
    ordered: bool,
) -> IMap<R>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
    I: IntoIterator<Item = A>,
    I::IntoIter: Send + 'static,
{
    let take = local::take_next::<R>;
    if !pool.core.runs_closures() {
        return IMap::failed(no_closures(), take);
    }
    if chunksize == 0 {
        return IMap::failed(crate::pool::zero_chunksize(), take);
    }
    if buffersize == Some(0) {
        return IMap::failed(crate::imap::zero_buffersize(), take);
    }
    match pool.core.new_job(None) {
        Ok(job) => {
            let feed = Box::new(Closures {
                f: Arc::new(f),
                items: items.into_iter(),
            });
            IMap::new(
                pool.core.clone(),
                job,
                feed,
                (chunksize, buffersize),
                ordered,
                take,
            )
        }
        Err(e) => IMap::failed(e, take),
    }
}

/// An imap's input, a task of closures at a time.
struct Closures<F, I> {
    f: Arc<F>,
    items: I,
}

impl<A, R, F, I> Feed for Closures<F, I>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
    I: Iterator<Item = A> + Send,
{
    fn next_task(&mut self, job: JobId, start: usize, max: usize) -> Result<Option<Task>> {
        let chunk: Vec<A> = input::pull(&mut self.items, max)?;
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some(local::task(job, start, self.f.clone(), chunk)))
    }
}
