//! The traits that `mp-pool`, `mp-manager` and `mp-dummy` compose through:
//! code written against [`Context`] runs on processes under any start
//! method ([`ProcessContext`](crate::ProcessContext)) and on threads
//! (`mp_dummy::ThreadContext`).
//!
//! Each `*Like` trait is narrow: a backend writes the few methods that do
//! the work (one wait with an optional timeout, the state queries) and the
//! trait provides the rest. The convention for the one wait is Python's
//! `block`/`timeout` pair folded into `timeout: Option<Duration>`: `None`
//! waits as long as it takes, `Some(Duration::ZERO)` does not wait (Python's
//! `block=False`), `Some(t)` waits at most `t`. Methods that a backend may
//! answer with a round trip (a manager's proxy, a process on another host)
//! return [`Result`]; the concrete types of this crate and of `mp-dummy`
//! keep infallible inherent methods where nothing can fail.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::{Payload, Shareable};

mod local;

/// What a started unit of work (a process, or a thread in `mp-dummy`) offers.
///
/// A backend writes [`start`](Self::start), [`join_within`](Self::join_within),
/// the name and daemon accessors, [`exitcode`](Self::exitcode) and
/// [`pid`](Self::pid); [`terminate`](Self::terminate),
/// [`interrupt`](Self::interrupt) and [`kill`](Self::kill) default to [`Error::NotImplemented`](crate::Error::NotImplemented)
/// for units that cannot be stopped from outside (threads).
pub trait ProcessLike: Send + 'static {
    /// Starts it.
    fn start(&mut self) -> Result<()>;
    /// Waits for it to end, for at most `timeout` (`None`: as long as it
    /// takes, `Some(Duration::ZERO)`: not at all); its exit code, or `None`
    /// if it still runs. Not started is
    /// [`Error::NotStarted`](crate::Error::NotStarted).
    fn join_within(&mut self, timeout: Option<Duration>) -> Result<Option<i32>>;
    /// Its name.
    fn get_name(&self) -> &str;
    /// Renames it (before it starts).
    fn set_name(&mut self, name: String);
    /// Makes it a daemon (before it starts): it ends when its creator does.
    fn set_daemon(&mut self, daemon: bool);
    /// Its exit code, once ended.
    fn exitcode(&self) -> Option<i32>;
    /// Its process id once started (a thread's: its process's).
    fn pid(&self) -> Option<u32>;

    /// Waits for it to end; returns its exit code.
    fn join(&mut self) -> Result<i32> {
        loop {
            if let Some(code) = self.join_within(None)? {
                return Ok(code);
            }
        }
    }
    /// Waits at most `timeout`; `None` if still running.
    fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.join_within(Some(timeout))
    }
    /// Whether it has started and not ended.
    fn is_alive(&mut self) -> bool {
        matches!(self.join_within(Some(Duration::ZERO)), Ok(None))
    }
    /// Asks it to end now (`SIGTERM` for a process; an error for a thread).
    fn terminate(&self) -> Result<()> {
        Err(crate::Error::NotImplemented {
            what: "terminate",
            reason: "this backend cannot stop its units from outside",
        })
    }
    /// Interrupts it (`SIGINT` for a process, as Ctrl-C would: see
    /// [`Process::interrupt`](crate::Process::interrupt); an error for a
    /// thread, as [`terminate`](Self::terminate) is).
    ///
    /// ```
    /// use mp_proc::{Context, EventLike, ProcessLike, StartMethod, get_context};
    ///
    /// fn wait_for_ever<C: Context>(never: C::Event) {
    ///     let _ = never.wait(None); // nobody sets it
    /// }
    ///
    /// fn interrupted<C: Context>(ctx: &C) -> mp_proc::Result<i32> {
    ///     let mut p = ctx.process(wait_for_ever::<C>, ctx.event()?);
    ///     p.start()?;
    ///     p.interrupt()?;
    ///     p.join()
    /// }
    ///
    /// for method in StartMethod::ALL {
    ///     assert_eq!(interrupted(&get_context(method))?, -libc::SIGINT);
    /// }
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    fn interrupt(&self) -> Result<()> {
        Err(crate::Error::NotImplemented {
            what: "interrupt",
            reason: "this backend cannot stop its units from outside",
        })
    }
    /// Ends it now (`SIGKILL` for a process; an error for a thread).
    fn kill(&self) -> Result<()> {
        Err(crate::Error::NotImplemented {
            what: "kill",
            reason: "this backend cannot stop its units from outside",
        })
    }
    /// A descriptor that becomes readable when it ends (Python's
    /// `sentinel`); `None` before `start()` or where there is none (a thread).
    fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

/// The methods of [`Queue`](crate::Queue).
///
/// A backend writes [`put_within`](Self::put_within),
/// [`get_within`](Self::get_within), [`qsize`](Self::qsize),
/// [`full`](Self::full) and [`close`](Self::close); the rest is provided.
///
/// ```
/// use mp_proc::{Error, QueueLike};
///
/// fn drain<Q: QueueLike<u32>>(q: &Q) -> mp_proc::Result<Vec<u32>> {
///     let mut out = Vec::new();
///     while !q.empty()? {
///         out.push(q.get()?);
///     }
///     assert!(matches!(q.try_get(), Err(Error::Empty)));
///     Ok(out)
/// }
///
/// let q = mp_proc::Queue::new()?;
/// q.put(1)?;
/// q.put(2)?;
/// assert_eq!(drain(&q)?, [1, 2]);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub trait QueueLike<T>: Clone + Payload {
    /// Puts `item` at the end, waiting at most `timeout` for room (see the
    /// [module](self) for `timeout`); [`Error::Full`](crate::Error::Full)
    /// when none came.
    fn put_within(&self, item: T, timeout: Option<Duration>) -> Result<()>;
    /// Takes the oldest item, waiting at most `timeout` for one;
    /// [`Error::Empty`](crate::Error::Empty) when none came.
    fn get_within(&self, timeout: Option<Duration>) -> Result<T>;
    /// See [`Queue::qsize`](crate::Queue::qsize).
    fn qsize(&self) -> Result<usize>;
    /// See [`Queue::full`](crate::Queue::full).
    fn full(&self) -> Result<bool>;
    /// See [`Queue::close`](crate::Queue::close).
    fn close(&self) -> Result<()>;

    /// See [`Queue::put`](crate::Queue::put).
    fn put(&self, item: T) -> Result<()> {
        self.put_within(item, None)
    }
    /// See [`Queue::put_timeout`](crate::Queue::put_timeout).
    fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.put_within(item, Some(timeout))
    }
    /// See [`Queue::try_put`](crate::Queue::try_put).
    fn try_put(&self, item: T) -> Result<()> {
        self.put_within(item, Some(Duration::ZERO))
    }
    /// See [`Queue::get`](crate::Queue::get).
    fn get(&self) -> Result<T> {
        self.get_within(None)
    }
    /// See [`Queue::get_timeout`](crate::Queue::get_timeout).
    fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_within(Some(timeout))
    }
    /// See [`Queue::try_get`](crate::Queue::try_get).
    fn try_get(&self) -> Result<T> {
        self.get_within(Some(Duration::ZERO))
    }
    /// See [`Queue::empty`](crate::Queue::empty).
    fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }
}

/// The methods of [`JoinableQueue`](crate::JoinableQueue).
pub trait JoinableQueueLike<T>: QueueLike<T> {
    /// See [`JoinableQueue::task_done`](crate::JoinableQueue::task_done).
    fn task_done(&self) -> Result<()>;
    /// See [`JoinableQueue::join`](crate::JoinableQueue::join).
    fn join(&self) -> Result<()>;
}

/// The methods of [`Lock`](crate::Lock) and [`RLock`](crate::RLock).
///
/// A backend writes [`acquire_within`](Self::acquire_within) and
/// [`release`](Self::release).
///
/// ```
/// use std::time::Duration;
/// use mp_proc::LockLike;
///
/// fn busy<L: LockLike>(lock: &L) -> mp_proc::Result<bool> {
///     Ok(lock.acquire_timeout(Duration::from_millis(1))?.is_none())
/// }
///
/// let lock = mp_proc::Lock::new()?;
/// assert!(!busy(&lock)?);
/// let held = LockLike::acquire(&lock)?;
/// drop(held);
/// assert!(LockLike::try_acquire(&lock)?.is_some());
/// # Ok::<(), mp_proc::Error>(())
/// ```
///
/// A backend of its own writes the two core methods and gets the rest:
///
/// ```
/// use std::time::Duration;
/// use mp_proc::{Lock, LockGuard, LockLike, Result};
///
/// /// A lock that says how it was asked to wait (a proxy would send it).
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Traced(Lock);
///
/// impl LockLike for Traced {
///     type Guard<'a> = LockGuard<'a>;
///     fn acquire_within(&self, timeout: Option<Duration>) -> Result<Option<LockGuard<'_>>> {
///         println!("acquire, timeout {timeout:?}");
///         match timeout {
///             None => self.0.acquire().map(Some),
///             Some(Duration::ZERO) => self.0.try_acquire(),
///             Some(t) => self.0.acquire_timeout(t),
///         }
///     }
///     fn release(&self) -> Result<()> {
///         self.0.release()
///     }
/// }
///
/// let lock = Traced(Lock::new()?);
/// drop(lock.acquire()?);
/// drop(lock.acquire_timeout(Duration::from_secs(1))?.expect("free"));
/// assert!(lock.try_acquire()?.is_some());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub trait LockLike: Clone + Payload {
    /// What holds the lock until dropped.
    type Guard<'a>
    where
        Self: 'a;
    /// Takes the lock, waiting at most `timeout` (see the [module](self));
    /// `None` if it stayed taken. `Some(Duration::ZERO)` is Python's
    /// `acquire(block=False)`: it never waits, and on a lock this thread
    /// already holds it answers as [`Lock::try_acquire`](crate::Lock::try_acquire).
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<Option<Self::Guard<'_>>>;
    /// See [`Lock::release`](crate::Lock::release).
    fn release(&self) -> Result<()>;

    /// See [`Lock::acquire`](crate::Lock::acquire).
    fn acquire(&self) -> Result<Self::Guard<'_>> {
        loop {
            if let Some(guard) = self.acquire_within(None)? {
                return Ok(guard);
            }
        }
    }
    /// See [`Lock::try_acquire`](crate::Lock::try_acquire).
    fn try_acquire(&self) -> Result<Option<Self::Guard<'_>>> {
        self.acquire_within(Some(Duration::ZERO))
    }
    /// See [`Lock::acquire_timeout`](crate::Lock::acquire_timeout).
    fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Self::Guard<'_>>> {
        self.acquire_within(Some(timeout))
    }
}

/// The guard type of a lock.
pub type GuardOf<'a, L> = <L as LockLike>::Guard<'a>;

/// The methods of [`Condition`](crate::Condition).
///
/// A backend writes [`lock`](Self::lock), [`wait_within`](Self::wait_within),
/// [`notify`](Self::notify) and [`notify_all`](Self::notify_all).
pub trait ConditionLike: Clone + Payload {
    /// The lock it is used with.
    type Lock: LockLike;
    /// See [`Condition::lock`](crate::Condition::lock).
    fn lock(&self) -> &Self::Lock;
    /// Releases the lock, waits for a notification for at most `timeout`
    /// (see the [module](self)), and takes the lock again; the flag is false
    /// when the time ran out.
    fn wait_within<'a>(
        &self,
        guard: GuardOf<'a, Self::Lock>,
        timeout: Option<Duration>,
    ) -> Result<(GuardOf<'a, Self::Lock>, bool)>
    where
        Self::Lock: 'a;
    /// See [`Condition::notify`](crate::Condition::notify).
    fn notify(&self, n: usize) -> Result<()>;
    /// See [`Condition::notify_all`](crate::Condition::notify_all).
    fn notify_all(&self) -> Result<()>;

    /// See [`Condition::acquire`](crate::Condition::acquire).
    fn acquire(&self) -> Result<GuardOf<'_, Self::Lock>> {
        self.lock().acquire()
    }
    /// See [`Condition::wait`](crate::Condition::wait).
    fn wait<'a>(&self, guard: GuardOf<'a, Self::Lock>) -> Result<GuardOf<'a, Self::Lock>>
    where
        Self::Lock: 'a,
    {
        Ok(self.wait_within(guard, None)?.0)
    }
    /// See [`Condition::wait_timeout`](crate::Condition::wait_timeout).
    fn wait_timeout<'a>(
        &self,
        guard: GuardOf<'a, Self::Lock>,
        timeout: Duration,
    ) -> Result<(GuardOf<'a, Self::Lock>, bool)>
    where
        Self::Lock: 'a,
    {
        self.wait_within(guard, Some(timeout))
    }
    /// See [`Condition::wait_for`](crate::Condition::wait_for).
    fn wait_for<'a>(
        &self,
        guard: GuardOf<'a, Self::Lock>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(GuardOf<'a, Self::Lock>, bool)>
    where
        Self::Lock: 'a,
    {
        crate::plumbing::wait_for_with(guard, predicate, timeout, |g, until| {
            let left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            self.wait_within(g, left)
        })
    }
}

/// The methods of [`Semaphore`](crate::Semaphore) and [`BoundedSemaphore`](crate::BoundedSemaphore).
///
/// A backend writes [`acquire_within`](Self::acquire_within),
/// [`release`](Self::release) and [`value`](Self::value).
pub trait SemaphoreLike: Clone + Payload {
    /// Takes a unit, waiting at most `timeout` (see the [module](self));
    /// `false` if none came.
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool>;
    /// See [`Semaphore::release`](crate::Semaphore::release).
    fn release(&self) -> Result<()>;
    /// See [`Semaphore::value`](crate::Semaphore::value).
    fn value(&self) -> Result<usize>;

    /// See [`Semaphore::acquire`](crate::Semaphore::acquire).
    fn acquire(&self) -> Result<()> {
        while !self.acquire_within(None)? {}
        Ok(())
    }
    /// See [`Semaphore::try_acquire`](crate::Semaphore::try_acquire).
    fn try_acquire(&self) -> Result<bool> {
        self.acquire_within(Some(Duration::ZERO))
    }
    /// See [`Semaphore::acquire_timeout`](crate::Semaphore::acquire_timeout).
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_within(Some(timeout))
    }
}

/// The methods of [`Event`](crate::Event): each is a backend's own.
pub trait EventLike: Clone + Payload {
    /// See [`Event::set`](crate::Event::set).
    fn set(&self) -> Result<()>;
    /// See [`Event::clear`](crate::Event::clear).
    fn clear(&self) -> Result<()>;
    /// See [`Event::is_set`](crate::Event::is_set).
    fn is_set(&self) -> Result<bool>;
    /// See [`Event::wait`](crate::Event::wait).
    fn wait(&self, timeout: Option<Duration>) -> Result<bool>;
}

/// The methods of [`Barrier`](crate::Barrier).
///
/// A backend writes all but [`wait`](Self::wait) and
/// [`wait_timeout`](Self::wait_timeout).
pub trait BarrierLike: Clone + Payload {
    /// Waits for the other parties for at most `timeout`, or, with `None`,
    /// the barrier's own timeout (Python's `wait(timeout=None)`); running out
    /// of time breaks the barrier.
    fn wait_within(&self, timeout: Option<Duration>) -> Result<usize>;
    /// See [`Barrier::abort`](crate::Barrier::abort).
    fn abort(&self) -> Result<()>;
    /// See [`Barrier::reset`](crate::Barrier::reset).
    fn reset(&self) -> Result<()>;
    /// See [`Barrier::broken`](crate::Barrier::broken).
    fn broken(&self) -> Result<bool>;
    /// See [`Barrier::n_waiting`](crate::Barrier::n_waiting).
    fn n_waiting(&self) -> Result<usize>;
    /// See [`Barrier::parties`](crate::Barrier::parties): fixed at creation,
    /// so a remote backend answers it from its handle.
    fn parties(&self) -> usize;

    /// See [`Barrier::wait`](crate::Barrier::wait).
    fn wait(&self) -> Result<usize> {
        self.wait_within(None)
    }
    /// See [`Barrier::wait_timeout`](crate::Barrier::wait_timeout).
    fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_within(Some(timeout))
    }
}

/// The methods of [`Value`](crate::Value): each is a backend's own.
pub trait ValueLike<T>: Clone + Payload {
    /// See [`Value::get`](crate::Value::get).
    fn get(&self) -> Result<T>;
    /// See [`Value::set`](crate::Value::set).
    fn set(&self, value: T) -> Result<()>;
    /// Changes the value with `f` under its lock and returns the new value
    /// (Python's `with v.get_lock(): v.value += 1`).
    fn update(&self, f: impl FnOnce(&mut T)) -> Result<T>;
}

/// One end of a [`Context::pipe`]: it travels to a process of its context
/// (it is a [`Payload`]) and carries values both ways. Implemented by
/// [`Connection`](crate::Connection), the pipe of processes on this machine
/// and of threads.
///
/// ```
/// use std::time::Duration;
/// use mp_proc::ConnectionLike;
///
/// fn ping<C: ConnectionLike>(a: &C, b: &C) -> mp_proc::Result<String> {
///     a.send("ping")?;
///     assert!(b.poll(Some(Duration::from_secs(5)))?);
///     b.recv()
/// }
///
/// let (a, b) = mp_proc::pipe(true)?;
/// assert_eq!(ping(&a, &b)?, "ping");
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub trait ConnectionLike: Payload {
    /// See [`Connection::send`](crate::Connection::send).
    fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()>;
    /// See [`Connection::recv`](crate::Connection::recv).
    fn recv<T: DeserializeOwned>(&self) -> Result<T>;
    /// See [`Connection::poll`](crate::Connection::poll).
    fn poll(&self, timeout: Option<Duration>) -> Result<bool>;
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
    /// Processes on other hosts, started by [`Launcher`](crate::Launcher)s:
    /// tasks travel encoded, over connections that cross hosts; a worker
    /// shares no memory with the pool.
    Hosts,
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
    /// One end of a [`pipe`](Context::pipe): [`Connection`](crate::Connection)
    /// for processes of this machine and for threads; a context whose
    /// processes run on other hosts brings its own (a stream over the
    /// network), so generic code names `C::Connection`, not `Connection`.
    type Connection: ConnectionLike;

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
            Workers::Threads | Workers::Hosts => None,
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
    /// A barrier for `parties` whose `action` runs once each time it trips,
    /// in the last party to arrive, before any party goes through (CPython's
    /// `ctx.Barrier(parties, action, timeout)`). If the action panics, the
    /// barrier breaks: the party that ran it gets
    /// [`Error::ActionPanicked`](crate::Error::ActionPanicked), the others
    /// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier). See
    /// [`Barrier::with_action`](crate::Barrier::with_action) for processes.
    ///
    /// The provided method is
    /// [`Error::NotImplemented`](crate::Error::NotImplemented), for a
    /// backend that cannot run an action; every backend of this workspace
    /// (processes, threads) runs it.
    ///
    /// ```
    /// use mp_proc::{BarrierLike, Context, ProcessLike, StartMethod, get_context};
    ///
    /// fn trip() {
    ///     println!("both parties arrived");
    /// }
    /// fn party<C: Context>(barrier: C::Barrier) {
    ///     barrier.wait().unwrap();
    /// }
    ///
    /// fn run<C: Context>(ctx: &C) -> mp_proc::Result<i32> {
    ///     let barrier = ctx.barrier_with_action(2, trip, None)?;
    ///     let mut p = ctx.process(party::<C>, barrier.clone());
    ///     p.start()?;
    ///     barrier.wait()?; // one of the two printed the line, once
    ///     p.join()
    /// }
    ///
    /// assert_eq!(run(&get_context(StartMethod::Spawn))?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    fn barrier_with_action(
        &self,
        parties: usize,
        action: fn(),
        timeout: Option<Duration>,
    ) -> Result<Self::Barrier> {
        let _ = (parties, action, timeout);
        Err(crate::Error::NotImplemented {
            what: "barrier_with_action",
            reason: "this backend cannot run a barrier's action",
        })
    }
    /// A shared value.
    fn value<T: Shareable + Payload>(&self, value: T) -> Result<Self::Value<T>>;
    /// A pipe whose ends may be passed to processes of this context (in
    /// their arguments): two-way if `duplex`, else the first end receives
    /// and the second sends.
    ///
    /// ```
    /// use mp_proc::{ConnectionLike, Context, ProcessLike, StartMethod, get_context};
    ///
    /// fn echo<C: Context>(end: C::Connection) {
    ///     let n: u32 = end.recv().unwrap();
    ///     end.send(&(n + 1)).unwrap();
    /// }
    ///
    /// fn run<C: Context>(ctx: &C) -> mp_proc::Result<u32> {
    ///     let (here, there) = ctx.pipe(true)?;
    ///     let mut p = ctx.process(echo::<C>, there);
    ///     p.start()?;
    ///     here.send(&41u32)?;
    ///     let answer = here.recv()?;
    ///     p.join()?;
    ///     Ok(answer)
    /// }
    ///
    /// assert_eq!(run(&get_context(StartMethod::Fork))?, 42);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    fn pipe(&self, duplex: bool) -> Result<(Self::Connection, Self::Connection)>;
    /// How many CPUs this context may use.
    fn cpu_count(&self) -> usize;
    /// How many CPUs this context's workers can keep busy: for this
    /// machine's processes and threads [`available_cpus`](crate::available_cpus)
    /// (the affinity mask bounded by the cgroup CPU quota). The provided
    /// method is [`cpu_count`](Self::cpu_count), for a backend that knows
    /// no quota. A pool's default number of workers.
    ///
    /// ```
    /// use mp_proc::{Context, StartMethod, get_context};
    /// let ctx = get_context(StartMethod::Fork);
    /// assert!(ctx.available_cpus() >= 1);
    /// assert!(Context::available_cpus(&ctx) <= Context::cpu_count(&ctx));
    /// ```
    fn available_cpus(&self) -> usize {
        self.cpu_count()
    }
}
