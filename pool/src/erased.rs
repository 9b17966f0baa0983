//! Calls whose function and items are already encoded, for a pool that
//! runs on behalf of other processes (a manager's `Pool()`): the function is
//! a signed reference, each item its argument's encoding, and the outcomes
//! come back as encoded results, one per item. They go through the pool's
//! one job path (`Task`s of `Work::Encoded`), as a typed call's do.

use mp_proc::plumbing::ErasedFunction;

use crate::codec::{self, VALUE};
use crate::decode;
use crate::error::Result;
use crate::job::{Job, Task, Work};
use crate::pool::{Pool, default_chunksize, zero_chunksize};
use crate::result::{AsyncResult, Read};

/// The outcomes of an erased call: one per item, in input order, each the
/// encoded result or that item's error.
pub type Outcomes = Vec<Result<Vec<u8>>>;

/// Submits `func` on every item (each already encoded as `func`'s
/// argument), `chunksize` items per task (`None`: CPython's default). The
/// result is one outcome per item, its encoded value or its error (a panic,
/// a dead worker, the pool terminated); the call fails as a whole only if
/// it never ran (the pool is not running, a zero chunk size, a function
/// the workers cannot call).
///
/// ```
/// fn double(x: u32) -> u32 {
///     2 * x
/// }
/// let pool = mp_pool::Pool::new(Some(1))?;
/// let f = mp_proc::Function::new(double).erased();
/// let items = vec![mp_proc::codec::encode(&21u32)?];
/// let out = mp_pool::plumbing::submit_erased(&pool, f, items, None).get()?;
/// assert_eq!(mp_proc::codec::decode::<u32>(out[0].as_ref().unwrap())?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn submit_erased(
    pool: &Pool,
    func: ErasedFunction,
    items: Vec<Vec<u8>>,
    chunksize: Option<usize>,
) -> AsyncResult<Outcomes> {
    let read = Read::decoded(outcomes);
    if chunksize == Some(0) {
        return AsyncResult::failed(zero_chunksize(), read);
    }
    if let Err(e) = pool.check(&func) {
        return AsyncResult::failed(e, read);
    }
    let n = items.len();
    let per = chunksize.unwrap_or_else(|| default_chunksize(n, pool.processes()));
    let job = match pool.core.new_job(Some(n)) {
        Ok(job) => job,
        Err(e) => return AsyncResult::failed(e, read),
    };
    for (c, chunk) in items.chunks(per).enumerate() {
        let mut records = Vec::with_capacity(chunk.iter().map(|i| i.len() + 5).sum());
        for item in chunk {
            codec::push(&mut records, VALUE, item);
        }
        pool.core.submit([Task {
            job,
            start: c * per,
            count: chunk.len(),
            work: Work::Encoded {
                func,
                items: records,
            },
        }]);
    }
    AsyncResult::new(pool.core.clone(), job, n, read)
}

/// Every item's outcome, encoded, in order.
fn outcomes(job: &mut Job, items: usize) -> Result<Outcomes> {
    let mut out = Vec::with_capacity(items);
    decode::each(job, items, |r| out.push(r.map(<[u8]>::to_vec)));
    Ok(out)
}

/// At most `max` more items of `items`, or the input's panic as
/// [`Error::InputPanicked`](crate::Error::InputPanicked) (the items
/// pulled before it are dropped), as a pool's `imap` pulls its input.
///
/// ```
/// let mut input = (0..5).map(|i| if i == 3 { panic!("no {i}") } else { i });
/// assert_eq!(mp_pool::plumbing::pull_input(&mut input, 2)?, [0, 1]);
/// assert!(matches!(
///     mp_pool::plumbing::pull_input(&mut input, 2),
///     Err(mp_pool::Error::InputPanicked { .. })
/// ));
/// # Ok::<(), mp_pool::Error>(())
/// ```
pub fn pull_input<A>(items: &mut impl Iterator<Item = A>, max: usize) -> Result<Vec<A>> {
    crate::input::pull(items, max)
}
