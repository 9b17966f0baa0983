//! The traits that `mp-pool`, `mp-manager` and `mp-dummy` compose through:
//! code written against [`Context`] runs on processes under any start
//! method ([`ProcessContext`](crate::ProcessContext)) and on threads
//! (`mp_dummy::ThreadContext`).

use std::time::Duration;

use crate::connection::Connection;
use crate::error::Result;
use crate::{Payload, Shareable};

/// What a started unit of work (a process, or a thread in `mp-dummy`) offers.
pub trait ProcessLike: Send + 'static {
    /// Starts it.
    fn start(&mut self) -> Result<()>;
    /// Waits for it to end; returns its exit code.
    fn join(&mut self) -> Result<i32>;
    /// Waits at most `timeout`; `None` if still running.
    fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>>;
    /// Whether it has started and not ended.
    fn is_alive(&mut self) -> bool;
    /// Its name.
    fn get_name(&self) -> &str;
    /// Renames it (before it starts).
    fn set_name(&mut self, name: String);
    /// Makes it a daemon (before it starts): it ends when its creator does.
    fn set_daemon(&mut self, daemon: bool);
    /// Asks it to end now (`SIGTERM` for a process; an error for a thread).
    fn terminate(&self) -> Result<()>;
    /// Ends it now (`SIGKILL` for a process; an error for a thread).
    fn kill(&self) -> Result<()>;
    /// Its exit code, once ended.
    fn exitcode(&self) -> Option<i32>;
    /// Its process id once started (a thread's: its process's).
    fn pid(&self) -> Option<u32>;
    /// A descriptor that becomes readable when it ends (Python's
    /// `sentinel`); `None` before `start()` or where there is none (a thread).
    fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

/// The methods of [`Queue`](crate::Queue).
pub trait QueueLike<T>: Clone + Payload {
    /// See [`Queue::put`](crate::Queue::put).
    fn put(&self, item: T) -> Result<()>;
    /// See [`Queue::put_timeout`](crate::Queue::put_timeout).
    fn put_timeout(&self, item: T, timeout: Duration) -> Result<()>;
    /// See [`Queue::try_put`](crate::Queue::try_put).
    fn try_put(&self, item: T) -> Result<()>;
    /// See [`Queue::get`](crate::Queue::get).
    fn get(&self) -> Result<T>;
    /// See [`Queue::get_timeout`](crate::Queue::get_timeout).
    fn get_timeout(&self, timeout: Duration) -> Result<T>;
    /// See [`Queue::try_get`](crate::Queue::try_get).
    fn try_get(&self) -> Result<T>;
    /// See [`Queue::qsize`](crate::Queue::qsize).
    fn qsize(&self) -> usize;
    /// See [`Queue::empty`](crate::Queue::empty).
    fn empty(&self) -> bool;
    /// See [`Queue::full`](crate::Queue::full).
    fn full(&self) -> bool;
    /// See [`Queue::close`](crate::Queue::close).
    fn close(&self);
}

/// The methods of [`JoinableQueue`](crate::JoinableQueue).
pub trait JoinableQueueLike<T>: QueueLike<T> {
    /// See [`JoinableQueue::task_done`](crate::JoinableQueue::task_done).
    fn task_done(&self) -> Result<()>;
    /// See [`JoinableQueue::join`](crate::JoinableQueue::join).
    fn join(&self) -> Result<()>;
}

/// The methods of [`Lock`](crate::Lock) and [`RLock`](crate::RLock).
pub trait LockLike: Clone + Payload {
    /// What holds the lock until dropped.
    type Guard<'a>
    where
        Self: 'a;
    /// See [`Lock::acquire`](crate::Lock::acquire).
    fn acquire(&self) -> Result<Self::Guard<'_>>;
    /// See [`Lock::try_acquire`](crate::Lock::try_acquire).
    fn try_acquire(&self) -> Result<Option<Self::Guard<'_>>>;
    /// See [`Lock::acquire_timeout`](crate::Lock::acquire_timeout).
    fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Self::Guard<'_>>>;
    /// See [`Lock::release`](crate::Lock::release).
    fn release(&self) -> Result<()>;
}

/// The guard type of a lock.
pub type GuardOf<'a, L> = <L as LockLike>::Guard<'a>;

/// The methods of [`Condition`](crate::Condition).
pub trait ConditionLike: Clone + Payload {
    /// The lock it is used with.
    type Lock: LockLike;
    /// See [`Condition::lock`](crate::Condition::lock).
    fn lock(&self) -> &Self::Lock;
    /// See [`Condition::acquire`](crate::Condition::acquire).
    fn acquire(&self) -> Result<GuardOf<'_, Self::Lock>>;
    /// See [`Condition::wait`](crate::Condition::wait).
    fn wait<'a>(&self, guard: GuardOf<'a, Self::Lock>) -> Result<GuardOf<'a, Self::Lock>>
    where
        Self::Lock: 'a;
    /// See [`Condition::wait_timeout`](crate::Condition::wait_timeout).
    fn wait_timeout<'a>(
        &self,
        guard: GuardOf<'a, Self::Lock>,
        timeout: Duration,
    ) -> Result<(GuardOf<'a, Self::Lock>, bool)>
    where
        Self::Lock: 'a;
    /// See [`Condition::wait_for`](crate::Condition::wait_for).
    fn wait_for<'a>(
        &self,
        guard: GuardOf<'a, Self::Lock>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(GuardOf<'a, Self::Lock>, bool)>
    where
        Self::Lock: 'a;
    /// See [`Condition::notify`](crate::Condition::notify).
    fn notify(&self, n: usize) -> Result<()>;
    /// See [`Condition::notify_all`](crate::Condition::notify_all).
    fn notify_all(&self) -> Result<()>;
}

/// The methods of [`Semaphore`](crate::Semaphore) and [`BoundedSemaphore`](crate::BoundedSemaphore).
pub trait SemaphoreLike: Clone + Payload {
    /// See [`Semaphore::acquire`](crate::Semaphore::acquire).
    fn acquire(&self) -> Result<()>;
    /// See [`Semaphore::try_acquire`](crate::Semaphore::try_acquire).
    fn try_acquire(&self) -> Result<bool>;
    /// See [`Semaphore::acquire_timeout`](crate::Semaphore::acquire_timeout).
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool>;
    /// See [`Semaphore::release`](crate::Semaphore::release).
    fn release(&self) -> Result<()>;
    /// See [`Semaphore::value`](crate::Semaphore::value).
    fn value(&self) -> usize;
}

/// The methods of [`Event`](crate::Event).
pub trait EventLike: Clone + Payload {
    /// See [`Event::set`](crate::Event::set).
    fn set(&self);
    /// See [`Event::clear`](crate::Event::clear).
    fn clear(&self);
    /// See [`Event::is_set`](crate::Event::is_set).
    fn is_set(&self) -> bool;
    /// See [`Event::wait`](crate::Event::wait).
    fn wait(&self, timeout: Option<Duration>) -> Result<bool>;
}

/// The methods of [`Barrier`](crate::Barrier).
pub trait BarrierLike: Clone + Payload {
    /// See [`Barrier::wait`](crate::Barrier::wait).
    fn wait(&self) -> Result<usize>;
    /// See [`Barrier::wait_timeout`](crate::Barrier::wait_timeout).
    fn wait_timeout(&self, timeout: Duration) -> Result<usize>;
    /// See [`Barrier::abort`](crate::Barrier::abort).
    fn abort(&self) -> Result<()>;
    /// See [`Barrier::reset`](crate::Barrier::reset).
    fn reset(&self) -> Result<()>;
    /// See [`Barrier::broken`](crate::Barrier::broken).
    fn broken(&self) -> bool;
    /// See [`Barrier::n_waiting`](crate::Barrier::n_waiting).
    fn n_waiting(&self) -> usize;
    /// See [`Barrier::parties`](crate::Barrier::parties).
    fn parties(&self) -> usize;
}

/// The methods of [`Value`](crate::Value).
pub trait ValueLike<T>: Clone + Payload {
    /// See [`Value::get`](crate::Value::get).
    fn get(&self) -> T;
    /// See [`Value::set`](crate::Value::set).
    fn set(&self, value: T);
    /// Changes the value with `f` under its lock and returns the new value
    /// (Python's `with v.get_lock(): v.value += 1`).
    fn update(&self, f: impl FnOnce(&mut T)) -> Result<T>;
}

/// Where a [`Context`] runs its processes, which decides how a pool's tasks
/// travel to its workers.
///
/// ```
/// use mp_proc::{Context, StartMethod, Workers, get_context};
///
/// let ctx = get_context(StartMethod::Fork);
/// assert_eq!(ctx.workers(), Workers::Processes(StartMethod::Fork));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Workers {
    /// Processes of this machine, started by this method: tasks travel
    /// encoded, over connections.
    Processes(crate::StartMethod),
    /// Threads of this process: tasks travel as closures, not encoded.
    Threads,
}

/// Python's context objects: one family of processes (or threads) and the
/// primitives they share.
///
/// ```
/// use mp_proc::{Context, ProcessLike, QueueLike, StartMethod, get_context};
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
/// assert_eq!(run(&get_context(StartMethod::Spawn))?, 81);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub trait Context: Clone + Send + Sync + 'static {
    /// A process (or thread).
    type Process: ProcessLike;
    /// A queue.
    type Queue<T: Payload>: QueueLike<T>;
    /// A joinable queue.
    type JoinableQueue<T: Payload>: JoinableQueueLike<T>;
    /// A lock.
    type Lock: LockLike;
    /// A re-entrant lock.
    type RLock: LockLike;
    /// A condition variable over [`Self::Lock`](Context::Lock).
    type Condition: ConditionLike<Lock = Self::Lock>;
    /// A semaphore.
    type Semaphore: SemaphoreLike;
    /// A bounded semaphore.
    type BoundedSemaphore: SemaphoreLike;
    /// An event.
    type Event: EventLike;
    /// A barrier.
    type Barrier: BarrierLike;
    /// A shared value.
    type Value<T: Shareable + Payload>: ValueLike<T>;

    /// A short name for reports: `fork`, `spawn`, `forkserver`, `threads`.
    fn name(&self) -> &'static str;
    /// A process (or thread) that will run `target(args)`.
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Self::Process;
    /// Where this context runs its processes: how a pool's tasks travel to
    /// its workers.
    fn workers(&self) -> Workers;
    /// The start method, for processes (`None` for threads).
    fn start_method(&self) -> Option<crate::StartMethod> {
        match self.workers() {
            Workers::Processes(method) => Some(method),
            Workers::Threads => None,
        }
    }
    /// A queue with no item limit.
    fn queue<T: Payload>(&self) -> Result<Self::Queue<T>>;
    /// A queue of at most `maxsize` items.
    fn queue_with_maxsize<T: Payload>(&self, maxsize: usize) -> Result<Self::Queue<T>>;
    /// A joinable queue.
    fn joinable_queue<T: Payload>(&self) -> Result<Self::JoinableQueue<T>>;
    /// A lock.
    fn lock(&self) -> Result<Self::Lock>;
    /// A re-entrant lock.
    fn rlock(&self) -> Result<Self::RLock>;
    /// A condition variable over `lock`, or over a new lock.
    fn condition(&self, lock: Option<Self::Lock>) -> Result<Self::Condition>;
    /// A semaphore with `value` units.
    fn semaphore(&self, value: usize) -> Result<Self::Semaphore>;
    /// A bounded semaphore with `value` units.
    fn bounded_semaphore(&self, value: usize) -> Result<Self::BoundedSemaphore>;
    /// An event, not set.
    fn event(&self) -> Result<Self::Event>;
    /// A barrier for `parties`.
    fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<Self::Barrier>;
    /// A shared value.
    fn value<T: Shareable + Payload>(&self, value: T) -> Result<Self::Value<T>>;
    /// A pipe.
    fn pipe(&self, duplex: bool) -> Result<(Connection, Connection)>;
    /// How many CPUs this context may use.
    fn cpu_count(&self) -> usize;
}

impl ProcessLike for crate::Process {
    fn start(&mut self) -> Result<()> {
        crate::Process::start(self)
    }
    fn join(&mut self) -> Result<i32> {
        crate::Process::join(self)
    }
    fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        crate::Process::join_timeout(self, timeout)
    }
    fn is_alive(&mut self) -> bool {
        crate::Process::is_alive(self)
    }
    fn get_name(&self) -> &str {
        crate::Process::get_name(self)
    }
    fn set_name(&mut self, name: String) {
        crate::Process::set_name(self, name)
    }
    fn set_daemon(&mut self, daemon: bool) {
        crate::Process::set_daemon(self, daemon)
    }
    fn terminate(&self) -> Result<()> {
        crate::Process::terminate(self)
    }
    fn kill(&self) -> Result<()> {
        crate::Process::kill(self)
    }
    fn exitcode(&self) -> Option<i32> {
        crate::Process::exitcode(self)
    }
    fn pid(&self) -> Option<u32> {
        crate::Process::pid(self)
    }
    fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        crate::Process::sentinel(self)
    }
}

macro_rules! queue_like {
    ($ty:ident) => {
        impl<T: Payload> QueueLike<T> for crate::$ty<T> {
            fn put(&self, item: T) -> Result<()> {
                crate::$ty::put(self, item)
            }
            fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
                crate::$ty::put_timeout(self, item, timeout)
            }
            fn try_put(&self, item: T) -> Result<()> {
                crate::$ty::try_put(self, item)
            }
            fn get(&self) -> Result<T> {
                crate::$ty::get(self)
            }
            fn get_timeout(&self, timeout: Duration) -> Result<T> {
                crate::$ty::get_timeout(self, timeout)
            }
            fn try_get(&self) -> Result<T> {
                crate::$ty::try_get(self)
            }
            fn qsize(&self) -> usize {
                crate::$ty::qsize(self)
            }
            fn empty(&self) -> bool {
                crate::$ty::empty(self)
            }
            fn full(&self) -> bool {
                crate::$ty::full(self)
            }
            fn close(&self) {
                crate::$ty::close(self)
            }
        }
    };
}

queue_like!(Queue);
queue_like!(SimpleQueue);
queue_like!(JoinableQueue);

impl<T: Payload> JoinableQueueLike<T> for crate::JoinableQueue<T> {
    fn task_done(&self) -> Result<()> {
        crate::JoinableQueue::task_done(self)
    }
    fn join(&self) -> Result<()> {
        crate::JoinableQueue::join(self)
    }
}

macro_rules! lock_like {
    ($ty:ident) => {
        impl LockLike for crate::$ty {
            type Guard<'a> = crate::LockGuard<'a>;
            fn acquire(&self) -> Result<crate::LockGuard<'_>> {
                crate::$ty::acquire(self)
            }
            fn try_acquire(&self) -> Result<Option<crate::LockGuard<'_>>> {
                crate::$ty::try_acquire(self)
            }
            fn acquire_timeout(&self, timeout: Duration) -> Result<Option<crate::LockGuard<'_>>> {
                crate::$ty::acquire_timeout(self, timeout)
            }
            fn release(&self) -> Result<()> {
                crate::$ty::release(self)
            }
        }
    };
}

lock_like!(Lock);
lock_like!(RLock);

macro_rules! semaphore_like {
    ($ty:ident) => {
        impl SemaphoreLike for crate::$ty {
            fn acquire(&self) -> Result<()> {
                crate::$ty::acquire(self)
            }
            fn try_acquire(&self) -> Result<bool> {
                crate::$ty::try_acquire(self)
            }
            fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                crate::$ty::acquire_timeout(self, timeout)
            }
            fn release(&self) -> Result<()> {
                crate::$ty::release(self)
            }
            fn value(&self) -> usize {
                crate::$ty::value(self)
            }
        }
    };
}

semaphore_like!(Semaphore);
semaphore_like!(BoundedSemaphore);

impl EventLike for crate::Event {
    fn set(&self) {
        crate::Event::set(self)
    }
    fn clear(&self) {
        crate::Event::clear(self)
    }
    fn is_set(&self) -> bool {
        crate::Event::is_set(self)
    }
    fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        crate::Event::wait(self, timeout)
    }
}

impl BarrierLike for crate::Barrier {
    fn wait(&self) -> Result<usize> {
        crate::Barrier::wait(self)
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        crate::Barrier::wait_timeout(self, timeout)
    }
    fn abort(&self) -> Result<()> {
        crate::Barrier::abort(self)
    }
    fn reset(&self) -> Result<()> {
        crate::Barrier::reset(self)
    }
    fn broken(&self) -> bool {
        crate::Barrier::broken(self)
    }
    fn n_waiting(&self) -> usize {
        crate::Barrier::n_waiting(self)
    }
    fn parties(&self) -> usize {
        crate::Barrier::parties(self)
    }
}

impl<T: Shareable + Payload> ValueLike<T> for crate::Value<T> {
    fn get(&self) -> T {
        crate::Value::get(self)
    }
    fn set(&self, value: T) {
        crate::Value::set(self, value)
    }
    fn update(&self, f: impl FnOnce(&mut T)) -> Result<T> {
        let mut guard = self.lock()?;
        f(&mut guard);
        Ok(*guard)
    }
}

impl ConditionLike for crate::Condition {
    type Lock = crate::Lock;
    fn lock(&self) -> &crate::Lock {
        crate::Condition::lock(self)
    }
    fn acquire(&self) -> Result<crate::LockGuard<'_>> {
        crate::Condition::acquire(self)
    }
    fn wait<'a>(&self, guard: crate::LockGuard<'a>) -> Result<crate::LockGuard<'a>>
    where
        crate::Lock: 'a,
    {
        crate::Condition::wait(self, guard)
    }
    fn wait_timeout<'a>(
        &self,
        guard: crate::LockGuard<'a>,
        timeout: Duration,
    ) -> Result<(crate::LockGuard<'a>, bool)>
    where
        crate::Lock: 'a,
    {
        crate::Condition::wait_timeout(self, guard, timeout)
    }
    fn wait_for<'a>(
        &self,
        guard: crate::LockGuard<'a>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(crate::LockGuard<'a>, bool)>
    where
        crate::Lock: 'a,
    {
        crate::Condition::wait_for(self, guard, predicate, timeout)
    }
    fn notify(&self, n: usize) -> Result<()> {
        crate::Condition::notify(self, n)
    }
    fn notify_all(&self) -> Result<()> {
        crate::Condition::notify_all(self)
    }
}

impl Context for crate::ProcessContext {
    type Process = crate::Process;
    type Queue<T: Payload> = crate::Queue<T>;
    type JoinableQueue<T: Payload> = crate::JoinableQueue<T>;
    type Lock = crate::Lock;
    type RLock = crate::RLock;
    type Condition = crate::Condition;
    type Semaphore = crate::Semaphore;
    type BoundedSemaphore = crate::BoundedSemaphore;
    type Event = crate::Event;
    type Barrier = crate::Barrier;
    type Value<T: Shareable + Payload> = crate::Value<T>;

    fn name(&self) -> &'static str {
        self.get_start_method().name()
    }
    fn process<A: Payload>(&self, target: fn(A), args: A) -> crate::Process {
        crate::ProcessContext::process(self, target, args)
    }
    fn workers(&self) -> Workers {
        Workers::Processes(self.get_start_method())
    }
    fn queue<T: Payload>(&self) -> Result<crate::Queue<T>> {
        crate::Queue::new()
    }
    fn queue_with_maxsize<T: Payload>(&self, maxsize: usize) -> Result<crate::Queue<T>> {
        crate::Queue::with_maxsize(maxsize)
    }
    fn joinable_queue<T: Payload>(&self) -> Result<crate::JoinableQueue<T>> {
        crate::JoinableQueue::new()
    }
    fn lock(&self) -> Result<crate::Lock> {
        crate::Lock::new()
    }
    fn rlock(&self) -> Result<crate::RLock> {
        crate::RLock::new()
    }
    fn condition(&self, lock: Option<crate::Lock>) -> Result<crate::Condition> {
        crate::Condition::new(lock)
    }
    fn semaphore(&self, value: usize) -> Result<crate::Semaphore> {
        crate::Semaphore::new(value)
    }
    fn bounded_semaphore(&self, value: usize) -> Result<crate::BoundedSemaphore> {
        crate::BoundedSemaphore::new(value)
    }
    fn event(&self) -> Result<crate::Event> {
        crate::Event::new()
    }
    fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<crate::Barrier> {
        crate::Barrier::new(parties, timeout)
    }
    fn value<T: Shareable + Payload>(&self, value: T) -> Result<crate::Value<T>> {
        crate::Value::new(value)
    }
    fn pipe(&self, duplex: bool) -> Result<(Connection, Connection)> {
        crate::pipe(duplex)
    }
    fn cpu_count(&self) -> usize {
        crate::cpu_count()
    }
}
