//! The traits on this crate's types, the backend of
//! [`ProcessContext`](crate::ProcessContext): each core method calls the
//! inherent method of the same wait, so a call through a trait costs what
//! the inherent call costs (no clock read, syscall or allocation more).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BarrierLike, ConditionLike, ConnectionLike, Context, EventLike, JoinableQueueLike, LockLike,
    ProcessLike, QueueLike, SemaphoreLike, ValueLike, Workers,
};
use crate::error::Result;
use crate::{
    Barrier, BoundedSemaphore, Condition, Connection, Event, JoinableQueue, Lock, LockGuard,
    Payload, Process, ProcessContext, Queue, RLock, Semaphore, Shareable, SimpleQueue, Value,
};

impl ProcessLike for Process {
    fn start(&mut self) -> Result<()> {
        Process::start(self)
    }
    fn join_within(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        match timeout {
            None => Process::join(self).map(Some),
            Some(t) => Process::join_timeout(self, t),
        }
    }
    fn get_name(&self) -> &str {
        Process::get_name(self)
    }
    fn set_name(&mut self, name: String) {
        Process::set_name(self, name)
    }
    fn set_daemon(&mut self, daemon: bool) {
        Process::set_daemon(self, daemon)
    }
    fn exitcode(&self) -> Option<i32> {
        Process::exitcode(self)
    }
    fn pid(&self) -> Option<u32> {
        Process::pid(self)
    }
    fn terminate(&self) -> Result<()> {
        Process::terminate(self)
    }
    fn interrupt(&self) -> Result<()> {
        Process::interrupt(self)
    }
    fn kill(&self) -> Result<()> {
        Process::kill(self)
    }
    fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Process::sentinel(self)
    }
}

// Each core method calls the inherent method of the same wait: a zero
// timeout is the non-blocking attempt (for a lock, a `trylock` with no clock
// read), as Python's `block=False`.

impl<T: Payload> QueueLike<T> for Queue<T> {
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

impl<T: Payload> QueueLike<T> for SimpleQueue<T> {
    fn put_within(&self, item: T, timeout: Option<Duration>) -> Result<()> {
        match timeout {
            None => SimpleQueue::put(self, item),
            Some(Duration::ZERO) => SimpleQueue::try_put(self, item),
            Some(t) => SimpleQueue::put_timeout(self, item, t),
        }
    }
    fn get_within(&self, timeout: Option<Duration>) -> Result<T> {
        match timeout {
            None => SimpleQueue::get(self),
            Some(Duration::ZERO) => SimpleQueue::try_get(self),
            Some(t) => SimpleQueue::get_timeout(self, t),
        }
    }
    fn qsize(&self) -> Result<usize> {
        Ok(SimpleQueue::qsize(self))
    }
    fn full(&self) -> Result<bool> {
        Ok(SimpleQueue::full(self))
    }
    fn close(&self) -> Result<()> {
        SimpleQueue::close(self);
        Ok(())
    }
}

impl<T: Payload> QueueLike<T> for JoinableQueue<T> {
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

impl<T: Payload> JoinableQueueLike<T> for JoinableQueue<T> {
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
        let mut guard = self.lock()?;
        f(&mut guard);
        Ok(*guard)
    }
}

impl ConnectionLike for Connection {
    fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        Connection::send(self, value)
    }
    fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        Connection::recv(self)
    }
    fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        Connection::poll(self, timeout)
    }
}

impl Context for ProcessContext {
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
    type Connection = Connection;

    fn name(&self) -> &'static str {
        self.get_start_method().name()
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        ProcessContext::process(self, target, args)
    }
    fn workers(&self) -> Workers {
        Workers::Processes(self.get_start_method())
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
        crate::pipe(duplex)
    }
    fn cpu_count(&self) -> usize {
        crate::cpu_count()
    }
    fn available_cpus(&self) -> usize {
        crate::available_cpus()
    }
}
