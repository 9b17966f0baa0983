//! `ThreadContext`: `mp_proc::Context` on threads.

use std::time::Duration;

use mp_proc::{
    BarrierLike, ConditionLike, Connection, Context, EventLike, JoinableQueueLike, LockLike,
    Payload, QueueLike, Result, SemaphoreLike, Shareable, ValueLike,
};

use crate::{
    Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, LockGuard, Process, Queue,
    RLock, Semaphore, Value,
};

/// The thread backend of [`mp_proc::Context`]: code written against
/// `Context` runs unchanged on processes (`mp_proc::get_context(method)`)
/// and on threads (`ThreadContext`).
///
/// ```
/// use mp_proc::{Context, ProcessLike, QueueLike};
///
/// fn square<C: Context>((q, x): (C::Queue<u64>, u64)) {
///     q.put(x * x).unwrap();
/// }
///
/// fn run<C: Context>(ctx: &C) -> mp_proc::Result<u64> {
///     let q = ctx.queue::<u64>()?;
///     let mut p = ctx.process(square::<C>, (q.clone(), 9));
///     p.start()?;
///     p.join()?;
///     q.get()
/// }
///
/// assert_eq!(run(&mp_dummy::ThreadContext)?, 81);
/// assert_eq!(run(&mp_proc::get_context(mp_proc::StartMethod::Fork))?, 81);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadContext;

macro_rules! queue_like {
    ($ty:ident) => {
        impl<T: Send + 'static> QueueLike<T> for $ty<T> {
            fn put(&self, item: T) -> Result<()> {
                $ty::put(self, item)
            }
            fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
                $ty::put_timeout(self, item, timeout)
            }
            fn try_put(&self, item: T) -> Result<()> {
                $ty::try_put(self, item)
            }
            fn get(&self) -> Result<T> {
                $ty::get(self)
            }
            fn get_timeout(&self, timeout: Duration) -> Result<T> {
                $ty::get_timeout(self, timeout)
            }
            fn try_get(&self) -> Result<T> {
                $ty::try_get(self)
            }
            fn qsize(&self) -> usize {
                $ty::qsize(self)
            }
            fn empty(&self) -> bool {
                $ty::empty(self)
            }
            fn full(&self) -> bool {
                $ty::full(self)
            }
            fn close(&self) {
                $ty::close(self)
            }
        }
    };
}

queue_like!(Queue);
queue_like!(JoinableQueue);

impl<T: Send + 'static> JoinableQueueLike<T> for JoinableQueue<T> {
    fn task_done(&self) -> Result<()> {
        JoinableQueue::task_done(self)
    }
    fn join(&self) -> Result<()> {
        JoinableQueue::join(self)
    }
}

macro_rules! lock_like {
    ($ty:ident) => {
        impl LockLike for $ty {
            type Guard<'a> = LockGuard<'a>;
            fn acquire(&self) -> Result<LockGuard<'_>> {
                $ty::acquire(self)
            }
            fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
                $ty::try_acquire(self)
            }
            fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
                $ty::acquire_timeout(self, timeout)
            }
            fn release(&self) -> Result<()> {
                $ty::release(self)
            }
        }
    };
}

lock_like!(Lock);
lock_like!(RLock);

impl ConditionLike for Condition {
    type Lock = Lock;
    fn lock(&self) -> &Lock {
        Condition::lock(self)
    }
    fn acquire(&self) -> Result<LockGuard<'_>> {
        Condition::acquire(self)
    }
    fn wait<'a>(&self, guard: LockGuard<'a>) -> Result<LockGuard<'a>>
    where
        Lock: 'a,
    {
        Condition::wait(self, guard)
    }
    fn wait_timeout<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> Result<(LockGuard<'a>, bool)>
    where
        Lock: 'a,
    {
        Condition::wait_timeout(self, guard, timeout)
    }
    fn wait_for<'a>(
        &self,
        guard: LockGuard<'a>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(LockGuard<'a>, bool)>
    where
        Lock: 'a,
    {
        Condition::wait_for(self, guard, predicate, timeout)
    }
    fn notify(&self, n: usize) -> Result<()> {
        Condition::notify(self, n)
    }
    fn notify_all(&self) -> Result<()> {
        Condition::notify_all(self)
    }
}

macro_rules! semaphore_like {
    ($ty:ident) => {
        impl SemaphoreLike for $ty {
            fn acquire(&self) -> Result<()> {
                $ty::acquire(self)
            }
            fn try_acquire(&self) -> Result<bool> {
                $ty::try_acquire(self)
            }
            fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                $ty::acquire_timeout(self, timeout)
            }
            fn release(&self) -> Result<()> {
                $ty::release(self)
            }
            fn value(&self) -> usize {
                $ty::value(self)
            }
        }
    };
}

semaphore_like!(Semaphore);
semaphore_like!(BoundedSemaphore);

impl EventLike for Event {
    fn set(&self) {
        Event::set(self)
    }
    fn clear(&self) {
        Event::clear(self)
    }
    fn is_set(&self) -> bool {
        Event::is_set(self)
    }
    fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        Event::wait(self, timeout)
    }
}

impl BarrierLike for Barrier {
    fn wait(&self) -> Result<usize> {
        Barrier::wait(self)
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        Barrier::wait_timeout(self, timeout)
    }
    fn abort(&self) -> Result<()> {
        Barrier::abort(self)
    }
    fn reset(&self) -> Result<()> {
        Barrier::reset(self)
    }
    fn broken(&self) -> bool {
        Barrier::broken(self)
    }
    fn n_waiting(&self) -> usize {
        Barrier::n_waiting(self)
    }
    fn parties(&self) -> usize {
        Barrier::parties(self)
    }
}

impl<T: Shareable + Payload> ValueLike<T> for Value<T> {
    fn get(&self) -> T {
        Value::get(self)
    }
    fn set(&self, value: T) {
        Value::set(self, value)
    }
    fn update(&self, f: impl FnOnce(&mut T)) -> Result<T> {
        Value::update(self, f)
    }
}

impl Context for ThreadContext {
    type Process = Process;
    type Queue<T: Payload> = Queue<T>;
    type JoinableQueue<T: Payload> = JoinableQueue<T>;
    type Lock = Lock;
    type RLock = RLock;
    type Condition = Condition;
    type Semaphore = Semaphore;
    type BoundedSemaphore = BoundedSemaphore;
    type Event = Event;
    type Barrier = Barrier;
    type Value<T: Shareable + Payload> = Value<T>;

    fn name(&self) -> &'static str {
        "threads"
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        Process::new(target, args)
    }
    fn workers(&self) -> mp_proc::Workers {
        mp_proc::Workers::Threads
    }
    fn queue<T: Payload>(&self) -> Result<Queue<T>> {
        Queue::new()
    }
    fn queue_with_maxsize<T: Payload>(&self, maxsize: usize) -> Result<Queue<T>> {
        Queue::with_maxsize(maxsize)
    }
    fn joinable_queue<T: Payload>(&self) -> Result<JoinableQueue<T>> {
        JoinableQueue::new()
    }
    fn lock(&self) -> Result<Lock> {
        Lock::new()
    }
    fn rlock(&self) -> Result<RLock> {
        RLock::new()
    }
    fn condition(&self, lock: Option<Lock>) -> Result<Condition> {
        Condition::new(lock)
    }
    fn semaphore(&self, value: usize) -> Result<Semaphore> {
        Semaphore::new(value)
    }
    fn bounded_semaphore(&self, value: usize) -> Result<BoundedSemaphore> {
        BoundedSemaphore::new(value)
    }
    fn event(&self) -> Result<Event> {
        Event::new()
    }
    fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<Barrier> {
        Barrier::new(parties, timeout)
    }
    fn value<T: Shareable + Payload>(&self, value: T) -> Result<Value<T>> {
        Value::new(value)
    }
    fn pipe(&self, duplex: bool) -> Result<(Connection, Connection)> {
        mp_proc::pipe(duplex)
    }
    fn cpu_count(&self) -> usize {
        mp_proc::cpu_count()
    }
}
