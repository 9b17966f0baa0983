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
/// assert_eq!(run(&mp_dummy::ThreadContext::new())?, 81);
/// assert_eq!(run(&mp_proc::get_context(mp_proc::StartMethod::Fork))?, 81);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadContext;

impl ThreadContext {
    /// The thread context (Python's `multiprocessing.dummy` module, which
    /// plays the part of a context); the same as `ThreadContext::default()`.
    ///
    /// ```
    /// use mp_proc::{Context, Workers};
    /// use mp_dummy::ThreadContext;
    ///
    /// let ctx = ThreadContext::new();
    /// assert_eq!(ctx.workers(), Workers::Threads);
    /// assert_eq!(ctx.start_method(), None);
    /// assert_eq!(ctx.name(), ThreadContext::default().name());
    /// let q = ctx.queue::<u8>()?;
    /// q.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub const fn new() -> ThreadContext {
        ThreadContext
    }
}

// Each core method calls the inherent method of the same wait: a zero
// timeout is the non-blocking attempt (Python's `block=False`).

impl<T: Send + 'static> QueueLike<T> for Queue<T> {
    fn put_within(&self, item: T, timeout: Option<Duration>) -> Result<()> {
        match timeout {
            None => Queue::put(self, item),
            Some(Duration::ZERO) => Queue::try_put(self, item),
            Some(t) => Queue::put_timeout(self, item, t),
        }
    }
    fn get_within(&self, timeout: Option<Duration>) -> Result<T> {
        match timeout {
            None => Queue::get(self),
            Some(Duration::ZERO) => Queue::try_get(self),
            Some(t) => Queue::get_timeout(self, t),
        }
    }
    fn qsize(&self) -> Result<usize> {
        Ok(Queue::qsize(self))
    }
    fn full(&self) -> Result<bool> {
        Ok(Queue::full(self))
    }
    fn close(&self) -> Result<()> {
        Queue::close(self);
        Ok(())
    }
}

impl<T: Send + 'static> QueueLike<T> for JoinableQueue<T> {
    fn put_within(&self, item: T, timeout: Option<Duration>) -> Result<()> {
        match timeout {
            None => JoinableQueue::put(self, item),
            Some(Duration::ZERO) => JoinableQueue::try_put(self, item),
            Some(t) => JoinableQueue::put_timeout(self, item, t),
        }
    }
    fn get_within(&self, timeout: Option<Duration>) -> Result<T> {
        match timeout {
            None => JoinableQueue::get(self),
            Some(Duration::ZERO) => JoinableQueue::try_get(self),
            Some(t) => JoinableQueue::get_timeout(self, t),
        }
    }
    fn qsize(&self) -> Result<usize> {
        Ok(JoinableQueue::qsize(self))
    }
    fn full(&self) -> Result<bool> {
        Ok(JoinableQueue::full(self))
    }
    fn close(&self) -> Result<()> {
        JoinableQueue::close(self);
        Ok(())
    }
}

impl<T: Send + 'static> JoinableQueueLike<T> for JoinableQueue<T> {
    fn task_done(&self) -> Result<()> {
        JoinableQueue::task_done(self)
    }
    fn join(&self) -> Result<()> {
        JoinableQueue::join(self)
    }
}

impl LockLike for Lock {
    type Guard<'a> = LockGuard<'a>;
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<Option<LockGuard<'_>>> {
        match timeout {
            None => Lock::acquire(self).map(Some),
            Some(Duration::ZERO) => Lock::try_acquire(self),
            Some(t) => Lock::acquire_timeout(self, t),
        }
    }
    fn release(&self) -> Result<()> {
        Lock::release(self)
    }
}

impl LockLike for RLock {
    type Guard<'a> = LockGuard<'a>;
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<Option<LockGuard<'_>>> {
        match timeout {
            None => RLock::acquire(self).map(Some),
            Some(Duration::ZERO) => RLock::try_acquire(self),
            Some(t) => RLock::acquire_timeout(self, t),
        }
    }
    fn release(&self) -> Result<()> {
        RLock::release(self)
    }
}

impl ConditionLike for Condition {
    type Lock = Lock;
    fn lock(&self) -> &Lock {
        Condition::lock(self)
    }
    fn wait_within<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Option<Duration>,
    ) -> Result<(LockGuard<'a>, bool)>
    where
        Lock: 'a,
    {
        match timeout {
            None => Ok((Condition::wait(self, guard)?, true)),
            Some(t) => Condition::wait_timeout(self, guard, t),
        }
    }
    fn notify(&self, n: usize) -> Result<()> {
        Condition::notify(self, n)
    }
    fn notify_all(&self) -> Result<()> {
        Condition::notify_all(self)
    }
}

impl SemaphoreLike for Semaphore {
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool> {
        match timeout {
            None => Semaphore::acquire(self).map(|()| true),
            Some(Duration::ZERO) => Semaphore::try_acquire(self),
            Some(t) => Semaphore::acquire_timeout(self, t),
        }
    }
    fn release(&self) -> Result<()> {
        Semaphore::release(self)
    }
    fn value(&self) -> Result<usize> {
        Ok(Semaphore::value(self))
    }
}

impl SemaphoreLike for BoundedSemaphore {
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool> {
        match timeout {
            None => BoundedSemaphore::acquire(self).map(|()| true),
            Some(Duration::ZERO) => BoundedSemaphore::try_acquire(self),
            Some(t) => BoundedSemaphore::acquire_timeout(self, t),
        }
    }
    fn release(&self) -> Result<()> {
        BoundedSemaphore::release(self)
    }
    fn value(&self) -> Result<usize> {
        Ok(BoundedSemaphore::value(self))
    }
}

impl EventLike for Event {
    fn set(&self) -> Result<()> {
        Event::set(self);
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        Event::clear(self);
        Ok(())
    }
    fn is_set(&self) -> Result<bool> {
        Ok(Event::is_set(self))
    }
    fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        Event::wait(self, timeout)
    }
}

impl BarrierLike for Barrier {
    fn wait_within(&self, timeout: Option<Duration>) -> Result<usize> {
        match timeout {
            None => Barrier::wait(self),
            Some(t) => Barrier::wait_timeout(self, t),
        }
    }
    fn abort(&self) -> Result<()> {
        Barrier::abort(self)
    }
    fn reset(&self) -> Result<()> {
        Barrier::reset(self)
    }
    fn broken(&self) -> Result<bool> {
        Ok(Barrier::broken(self))
    }
    fn n_waiting(&self) -> Result<usize> {
        Ok(Barrier::n_waiting(self))
    }
    fn parties(&self) -> usize {
        Barrier::parties(self)
    }
}

impl<T: Shareable + Payload> ValueLike<T> for Value<T> {
    fn get(&self) -> Result<T> {
        Ok(Value::get(self))
    }
    fn set(&self, value: T) -> Result<()> {
        Value::set(self, value);
        Ok(())
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
    /// mp-proc's connections: threads share them too.
    type Connection = Connection;

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
    fn barrier_with_action(
        &self,
        parties: usize,
        action: fn(),
        timeout: Option<Duration>,
    ) -> Result<Barrier> {
        Barrier::with_action(parties, action, timeout)
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
    fn available_cpus(&self) -> usize {
        mp_proc::available_cpus()
    }
}
