//! Calls whose tasks are closures of this process (a pool over threads):
//! their items and results are never encoded. A task runs its items into a
//! [`Ran`] (the values in order, and the failures by index), which the
//! job table keeps type-erased until the call's handle reads it back.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::job::{Job, JobId, Outcomes, Task, Values, Work};

/// The outcomes of a task's items: the values of those that succeeded, in
/// order, and the failures by the item's index in the task.
pub(crate) struct Ran<R> {
    values: VecDeque<R>,
    errors: VecDeque<(usize, Error)>,
    /// The index of the next item to read (an imap reads one at a time).
    next: usize,
}

impl<R: Send + 'static> Values for Ran<R> {
    fn all_ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl<R> Ran<R> {
    /// The next item's outcome.
    fn take(&mut self) -> Result<R> {
        let i = self.next;
        self.next += 1;
        if self.errors.front().is_some_and(|(at, _)| *at == i) {
            if let Some((_, e)) = self.errors.pop_front() {
                return Err(e);
            }
        }
        self.values.pop_front().ok_or(Error::Terminated)
    }
}

/// A task's panic as its item's error (with its message; the panic is
/// printed nowhere, see [`crate::worker::InTasks`]); `mp_proc::exit` goes on
/// unwinding, to end the worker.
fn failure(payload: Box<dyn std::any::Any + Send>) -> Error {
    if mp_proc::plumbing::is_exit_request(&*payload) {
        resume_unwind(payload)
    }
    Error::Panicked {
        message: mp_proc::plumbing::panic_message(&*payload),
    }
}

/// Runs `f` on every item, as a worker runs a task: a panic fails only its
/// item. `capacity`: room for the values (more than the items if the
/// buffer becomes the whole call's result).
fn run_items<A, R>(f: &dyn Fn(A) -> R, items: Vec<A>, capacity: usize) -> Ran<R> {
    let mut values = Vec::with_capacity(capacity.max(items.len()));
    let mut errors = VecDeque::new();
    let mut items = items.into_iter();
    while let Err(payload) = catch_unwind(AssertUnwindSafe(|| values.extend(items.by_ref().map(f)))) {
        errors.push_back((values.len() + errors.len(), failure(payload)));
    }
    Ran {
        values: VecDeque::from(values),
        errors,
        next: 0,
    }
}

/// The task of items `start..` of `job`: `f` on each of `items`, with room
/// for `room` values (see [`run_items`]).
pub(crate) fn task<A, R, F>(job: JobId, start: usize, f: Arc<F>, items: Vec<A>, room: usize) -> Task
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let count = items.len();
    let run = move || Outcomes::Local(Box::new(run_items(&*f, items, room)));
    Task {
        job,
        start,
        count,
        work: Work::Local(Box::new(run)),
    }
}

/// The task of an `apply`: `f(args)` once.
pub(crate) fn task_once<A, R, F>(job: JobId, f: F, args: A) -> Task
where
    A: Send + 'static,
    R: Send + 'static,
    F: FnOnce(A) -> R + Send + 'static,
{
    let run = move || {
        let mut ran = Ran {
            values: VecDeque::with_capacity(1),
            errors: VecDeque::new(),
            next: 0,
        };
        match catch_unwind(AssertUnwindSafe(|| f(args))) {
            Ok(v) => ran.values.push_back(v),
            Err(payload) => ran.errors.push_back((0, failure(payload))),
        }
        Outcomes::Local(Box::new(ran))
    };
    Task {
        job,
        start: 0,
        count: 1,
        work: Work::Local(Box::new(run)),
    }
}

/// Takes the next item's outcome of a task (an imap's).
pub(crate) fn take_next<R: Send + 'static>(outcomes: &mut Outcomes) -> Result<R> {
    match outcomes {
        Outcomes::Local(v) => match v.as_any().downcast_mut::<Ran<R>>() {
            Some(ran) => ran.take(),
            None => Err(wrong_type()),
        },
        Outcomes::Failed(e) => Err(e.clone()),
        Outcomes::Records { .. } => Err(wrong_type()),
    }
}

fn wrong_type() -> Error {
    Error::Encoding {
        message: "a task's outcome is not of the call's type".into(),
    }
}

/// The results of a call of `items` items, in order, or its first error;
/// taken out of the job (a second read finds none: [`Error::Terminated`]).
pub(crate) fn take_all<R: Send + 'static>(job: &mut Job, items: usize) -> Result<Vec<R>> {
    let missing = job.missing();
    let mut out: Option<Vec<R>> = None;
    let mut next = 0;
    for (&start, (count, outcomes)) in job.chunks.iter_mut() {
        if start > next {
            return Err(missing);
        }
        let ran = match outcomes {
            Outcomes::Local(v) => v.as_any().downcast_mut::<Ran<R>>().ok_or_else(wrong_type)?,
            Outcomes::Failed(e) => return Err(e.clone()),
            Outcomes::Records { .. } => return Err(wrong_type()),
        };
        if let Some((_, e)) = ran.errors.front() {
            return Err(e.clone());
        }
        if ran.values.len() != *count {
            return Err(Error::Terminated); // read before
        }
        let values = Vec::from(std::mem::take(&mut ran.values));
        match &mut out {
            None => out = Some(values),
            Some(o) => o.extend(values),
        }
        next = start + *count;
    }
    if next < items {
        return Err(missing);
    }
    let mut out = out.unwrap_or_default();
    out.truncate(items);
    Ok(out)
}

/// The one result of an `apply`.
pub(crate) fn take_one<R: Send + 'static>(job: &mut Job, _items: usize) -> Result<R> {
    take_all::<R>(job, 1)?.pop().ok_or(Error::Terminated)
}
