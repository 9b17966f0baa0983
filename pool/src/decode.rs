//! Reading a job's encoded outcomes (from workers in other processes) into
//! the call's value.

use mp_proc::Payload;

use crate::codec::{VALUE, decode_result, outcome, read};
use crate::error::{Error, Result};
use crate::job::{Job, Outcomes};

fn malformed() -> Error {
    Error::Encoding {
        message: "a malformed outcome".into(),
    }
}

/// Takes the next item's outcome of a task, decoded as `R`.
pub(crate) fn take_decoded<R: Payload>(outcomes: &mut Outcomes) -> Result<R> {
    match outcomes {
        Outcomes::Records { buf, pos } => match read(buf, *pos) {
            Some((tag, bytes, next)) => {
                *pos = next;
                outcome(tag, bytes).and_then(decode_result)
            }
            None => Err(malformed()),
        },
        Outcomes::Failed(e) => Err(e.clone()),
        Outcomes::Local(_) => Err(malformed()),
    }
}

/// Visits the outcomes of a job's first `items` items in index order,
/// without taking them; missing ones (the pool ended) are the abort error.
pub(crate) fn each(job: &Job, items: usize, mut f: impl FnMut(Result<&[u8]>)) {
    let mut next = 0;
    for (&start, (count, outcomes)) in &job.chunks {
        while next < start.min(items) {
            f(Err(job.missing()));
            next += 1;
        }
        match outcomes {
            Outcomes::Records { buf, pos } => {
                let mut p = *pos;
                for _ in 0..*count {
                    match read(buf, p) {
                        Some((VALUE, bytes, n)) => {
                            f(Ok(bytes));
                            p = n;
                        }
                        Some((tag, bytes, n)) => {
                            f(outcome(tag, bytes));
                            p = n;
                        }
                        None => f(Err(malformed())),
                    }
                }
            }
            Outcomes::Failed(e) => (0..*count).for_each(|_| f(Err(e.clone()))),
            Outcomes::Local(_) => (0..*count).for_each(|_| f(Err(malformed()))),
        }
        next = start + count;
    }
    while next < items {
        f(Err(job.missing()));
        next += 1;
    }
}

/// The one result of an `apply`.
pub(crate) fn decode_one<R: Payload>(job: &mut Job, _items: usize) -> Result<R> {
    let mut out = None;
    each(job, 1, |r| out = Some(r.and_then(decode_result)));
    out.unwrap_or(Err(Error::Terminated))
}

/// The results of a `map`, in order, or the first error.
pub(crate) fn decode_all<R: Payload>(job: &mut Job, items: usize) -> Result<Vec<R>> {
    let mut values = Vec::with_capacity(items);
    let mut first_error = None;
    each(job, items, |r| {
        if first_error.is_none() {
            match r.and_then(decode_result) {
                Ok(v) => values.push(v),
                Err(e) => first_error = Some(e),
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(values),
    }
}
