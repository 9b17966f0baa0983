//! Calls whose tasks are closures of this process (a pool over threads):
//! their items and results are never encoded. A `map`'s tasks write their
//! results in place into the call's result vector ([`Slots`]); an `imap`'s
//! or an `apply`'s task runs its items into a [`Ran`] (the values in order,
//! and the failures by index). The job table keeps either type-erased until
//! the call's handle reads it back. The buffers of the items go back to the
//! pool's [`Spare`] for its next calls.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::job::{Job, JobId, Outcomes, Task, Values, Work};
use crate::spare::Spare;
use crate::sys::Slots;

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

    fn first_error(&self) -> Option<Error> {
        self.errors.front().map(|(_, e)| e.clone())
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
        if self.errors.front().is_some_and(|(at, _)| *at == i)
            && let Some((_, e)) = self.errors.pop_front()
        {
            return Err(e);
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
/// item.
fn run_items<A, R>(f: &dyn Fn(A) -> R, items: Vec<A>) -> Ran<R> {
    let mut values = Vec::with_capacity(items.len());
    let mut errors = VecDeque::new();
    let mut items = items.into_iter();
    while let Err(payload) = catch_unwind(AssertUnwindSafe(|| values.extend(items.by_ref().map(f))))
    {
        errors.push_back((values.len() + errors.len(), failure(payload)));
    }
    Ran {
        values: VecDeque::from(values),
        errors,
        next: 0,
    }
}

/// The task of items `start..` of `job` (an imap's): `f` on each of `items`.
pub(crate) fn task<A, R, F>(job: JobId, start: usize, f: Arc<F>, items: Vec<A>) -> Task
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let count = items.len();
    let run = move || Outcomes::Local(Box::new(run_items(&*f, items)));
    Task {
        job,
        start,
        count,
        work: Work::Local(Box::new(run)),
    }
}

/// What a `map`'s task leaves: the call's result vector (shared by its
/// tasks) and the failure that stopped it, if one did.
struct Written<R> {
    slots: Option<Arc<Slots<R>>>,
    error: Option<Error>,
}

impl<R: Send + 'static> Values for Written<R> {
    fn all_ok(&self) -> bool {
        self.error.is_none()
    }

    fn first_error(&self) -> Option<Error> {
        self.error.clone()
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A `map`'s tasks, in order: `f` on each part of the input, written into
/// the range of `slots` of the same index (`parts` must match its ranges).
/// A panic stops its task (the call fails with it). Emptied buffers of the
/// parts go to `spare`.
pub(crate) fn map_tasks<A, R, F>(
    job: JobId,
    f: F,
    parts: Vec<Vec<A>>,
    slots: Slots<R>,
    spare: &Arc<Spare>,
) -> Vec<Task>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let (f, slots) = (Arc::new(f), Arc::new(slots));
    let mut start = 0;
    let mut tasks = Vec::with_capacity(parts.len());
    for (i, mut items) in parts.into_iter().enumerate() {
        let count = items.len();
        let (f, slots, spare) = (f.clone(), slots.clone(), spare.clone());
        let run = move || {
            let error = match slots.claim(i) {
                Some(mut w) => catch_unwind(AssertUnwindSafe(|| {
                    for a in items.drain(..) {
                        w.push(f(a));
                    }
                }))
                .err()
                .map(failure),
                None => Some(Error::Terminated),
            };
            spare.give(items);
            let slots = Some(slots);
            Outcomes::Local(Box::new(Written { slots, error }))
        };
        tasks.push(Task {
            job,
            start,
            count,
            work: Work::Local(Box::new(run)),
        });
        start += count;
    }
    tasks
}

/// The results of a `map` of `items` items, in order, or its first error;
/// taken out of the job (a second read finds none: [`Error::Terminated`]).
pub(crate) fn take_map<R: Send + 'static>(job: &mut Job, items: usize) -> Result<Vec<R>> {
    let missing = job.missing();
    let mut next = 0;
    let mut slots = None;
    for (&start, (count, outcomes)) in job.chunks.iter_mut() {
        if start > next {
            return Err(missing);
        }
        let written = match outcomes {
            Outcomes::Local(v) => v
                .as_any()
                .downcast_mut::<Written<R>>()
                .ok_or_else(wrong_type)?,
            Outcomes::Failed(e) => return Err(e.clone()),
            Outcomes::Records { .. } => return Err(wrong_type()),
        };
        if let Some(e) = &written.error {
            return Err(e.clone());
        }
        slots = written.slots.take().or(slots);
        next = start + *count;
    }
    if next < items {
        return Err(missing);
    }
    // Every task has run: the job holds the last references.
    job.chunks.clear();
    match slots {
        None if items == 0 => Ok(Vec::new()),
        None => Err(Error::Terminated), // read before
        Some(slots) => Arc::try_unwrap(slots)
            .ok()
            .and_then(Slots::into_vec)
            .ok_or(Error::Terminated),
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

/// The one result of an `apply`.
pub(crate) fn take_one<R: Send + 'static>(job: &mut Job, _items: usize) -> Result<R> {
    let missing = job.missing();
    match job.chunks.get_mut(&0) {
        Some((_, outcomes)) => take_next(outcomes),
        None => Err(missing),
    }
}
