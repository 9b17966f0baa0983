//! The scheduler of a pool whose workers are elsewhere (processes of this
//! machine or of other hosts): one thread per pool, non-generic, that starts
//! workers through a [`Spawn`], hands each its tasks over its own
//! connection, collects outcomes, and replaces a worker that dies, failing
//! exactly the task it was running. A replacement that cannot start is
//! tried again later while other workers go on (see `refill`).

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use mp_proc::Connection;

use crate::error::{Error, Result};
use crate::job::{Garbage, Outcomes, Run, Shared, Task, Work, record, run_callbacks};
use crate::limits::Cause;
pub(crate) use crate::limits::Limits;
use crate::progress::Position;
use crate::worker::{DoneMsg, FromWorker, TaskRef, ToWorker, ToWorkerRef};

mod held;
mod refill;
use held::{Sent, Worker};

/// How long a worker that closed its connection gets to exit before it is
/// killed (only a guard: it normally exits at once).
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Makes the workers of a pool: each runs [`worker_main`](crate::worker::worker_main)
/// at the other end of a [`Link`].
pub(crate) trait Spawn: Send {
    /// Starts one worker.
    fn spawn(&mut self) -> Result<Link>;
}

/// The pool's side of one worker.
pub(crate) struct Link {
    /// Its end of the worker's connection.
    pub(crate) conn: Connection,
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) worker: Box<dyn Remote>,
}

/// A worker as the scheduler watches and ends it.
pub(crate) trait Remote: Send {
    /// Readable once the worker has ended (a process's sentinel); `None`:
    /// its connection's end says so.
    fn sentinel(&self) -> Option<BorrowedFd<'_>>;
    /// The task and item it says it runs, from a record it shares with the
    /// pool; `None` without one (a worker on another host): it then
    /// reports its calls over its connection, and only when the pool has a
    /// task timeout.
    fn position(&self) -> Option<Position>;
    /// Asks it to end now (`SIGTERM`).
    fn terminate(&mut self);
    /// Ends it now (`SIGKILL`: a hung task may ignore `SIGTERM`).
    fn kill(&mut self);
    /// Waits for it to end (killing it after [`EXIT_GRACE`]); its exit code.
    fn reap(&mut self) -> i32;
}

/// What a scheduler needs: the pool's state, how to make workers, how
/// many, and how many tasks each runs before it is replaced.
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
    spawn: Box<dyn Spawn>,
    processes: usize,
    limits: Limits,
    /// A request to end the workers: the signal (0: none).
    end_workers: Arc<AtomicI32>,
    /// Its wake-up (an eventfd, see [`crate::sys::wake_fd`]): written by
    /// anyone, read by the scheduler, with no lock.
    wake: Arc<crate::sys::Wake>,
    workers: Vec<Worker>,
    next_task: u64,
    /// Failed starts of replacements, and when to try again.
    retry: refill::Retry,
}

impl Scheduler {
    pub(crate) fn new(
        shared: Arc<Shared>,
        spawn: Box<dyn Spawn>,
        processes: usize,
        limits: Limits,
        wake: Arc<crate::sys::Wake>,
        end_workers: Arc<AtomicI32>,
    ) -> Scheduler {
        Scheduler {
            shared,
            spawn,
            processes,
            limits,
            end_workers,
            wake,
            workers: Vec::new(),
            next_task: 0,
            retry: refill::Retry::default(),
        }
    }

    /// Starts workers until there are `processes` of them.
    pub(crate) fn fill(&mut self) -> Result<()> {
        self.fill_to(self.processes)
    }

    /// Ends the workers now if asked to (`terminate_workers`, `kill_workers`):
    /// their ends are seen as deaths.
    fn end_if_asked(&mut self) {
        // A load first: the common case costs no read-modify-write.
        if self.end_workers.load(Ordering::Acquire) == 0 {
            return;
        }
        let signal = self.end_workers.swap(0, Ordering::AcqRel);
        // `SIGKILL` also ends the workers a `SIGTERM` did not (CPython's
        // `kill_workers` after `terminate_workers`).
        let kill = signal == libc::SIGKILL;
        for w in self
            .workers
            .iter_mut()
            .filter(|w| !w.retiring && (kill || !w.ended))
        {
            w.ended = true;
            if kill {
                w.link.worker.kill();
            } else {
                w.link.worker.terminate();
            }
        }
    }

    /// With a task timeout: kills and buries the workers whose call has run
    /// past it (whether any). With an idle timeout: tells the workers idle
    /// for longer to stop. Either way, how long until the next deadline
    /// (`None`: none). A worker that holds tasks but is not in a call is
    /// looked at again a whole timeout later (its next call starts after
    /// now), so the scheduler never wakes late and never spins.
    fn deadlines(&mut self) -> (bool, Option<Duration>) {
        let mut next: Option<Duration> = None;
        let mut soonest = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        let mut expired = Vec::new();
        if let Some(limit) = self.limits.task_timeout {
            let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
            let now = crate::sys::monotonic_ns();
            for (i, w) in self.workers.iter().enumerate() {
                // An ended worker is watched too: one that did not end on
                // `SIGTERM` (`terminate_workers`) may still be in its call.
                if w.in_flight.is_empty() || w.retiring {
                    continue;
                }
                let at = w.position().unwrap_or_default();
                let in_call = at.began != 0 && w.in_flight.iter().any(|t| t.id + 1 == at.task);
                let deadline = if in_call {
                    at.began.saturating_add(limit_ns)
                } else {
                    now.saturating_add(limit_ns)
                };
                if deadline == u64::MAX {
                    continue; // a limit past any clock: none
                }
                if in_call && deadline <= now {
                    expired.push((i, at));
                } else {
                    soonest(Duration::from_nanos(deadline.saturating_sub(now)));
                }
            }
            // A worker that reports its calls may have reported since its
            // position was read: read that first, so that a call that ended
            // in time is not blamed for the one after it.
            let mut confirmed = Vec::with_capacity(expired.len());
            for (i, at) in expired {
                let w = &self.workers[i];
                if w.link.worker.position().is_none()
                    && matches!(w.link.conn.poll(Some(Duration::ZERO)), Ok(true))
                {
                    // Gone: its end is seen by the wait below.
                    let alive = self.collect(i);
                    if !alive || self.workers[i].position() != Some(at) {
                        soonest(limit);
                        continue;
                    }
                }
                confirmed.push((i, at));
            }
            expired = confirmed;
            for &(i, at) in expired.iter().rev() {
                self.time_out(i, at, limit);
            }
        }
        if let Some(idle) = self.limits.idle {
            let now = Instant::now();
            for w in &mut self.workers {
                if !w.in_flight.is_empty() || w.retiring || w.ended {
                    continue;
                }
                let Some(due) = w.idle_since.checked_add(idle) else {
                    continue;
                };
                if due <= now {
                    mp_logging::get_logger().debug("stopping an idle worker");
                    let _ = w.link.conn.send(&ToWorker::Stop);
                    w.retiring = true;
                } else {
                    soonest(due - now);
                }
            }
        }
        (!expired.is_empty(), next)
    }

    /// Worker `i`'s call `at` ran past the task timeout: kill it, read what
    /// it reported before, and bury it blaming that call.
    fn time_out(&mut self, i: usize, at: Position, limit: Duration) {
        let w = &mut self.workers[i];
        mp_logging::get_logger().debug(format_args!(
            "worker {} ran past the task timeout: killing it",
            w.link.pid
        ));
        w.link.worker.kill();
        let _ = w.link.worker.reap();
        if matches!(w.link.conn.poll(Some(Duration::ZERO)), Ok(true)) {
            self.collect(i);
        }
        let cause = Cause::TimedOut {
            id: at.task.wrapping_sub(1),
            item: at.item,
            limit,
        };
        self.bury(i, cause);
    }

    pub(crate) fn run(mut self) {
        let interrupts = crate::sys::interrupts();
        loop {
            self.end_if_asked();
            // Decide, under the lock.
            let mut st = self.shared.lock();
            if crate::sys::interrupts() != interrupts && st.run != Run::Terminated {
                st.run = Run::Terminated;
                st.end = Some(Error::Interrupted);
            }
            if st.run == Run::Terminated {
                let why = st.end.clone().unwrap_or(Error::Terminated);
                drop(st);
                self.end(why);
                return;
            }
            let idle = st.pending.is_empty() && self.workers.iter().all(|w| w.in_flight.is_empty());
            if st.run == Run::Closed && idle {
                drop(st);
                self.stop();
                return;
            }
            let mut sends: Vec<(usize, Vec<Task>)> = Vec::new();
            let mut refused: Vec<Task> = Vec::new();
            if st.broken.is_none() {
                // One task to each worker that wants more, round after round,
                // so that a short queue is spread over the workers.
                let mut held: Vec<(usize, usize, Vec<Task>)> = self
                    .workers
                    .iter()
                    .map(|w| {
                        let items = w.in_flight.iter().map(|s| s.count).sum();
                        (w.in_flight.len(), items, Vec::new())
                    })
                    .collect();
                // Idle workers first: a task never waits in a busy worker's
                // prefetch while one is idle.
                let mut order: Vec<usize> = (0..self.workers.len()).collect();
                order.sort_by_key(|&i| held[i].0 > 0);
                let now = Instant::now();
                let mut more = true;
                while more && !st.pending.is_empty() {
                    more = false;
                    for &i in &order {
                        let (w, (tasks, items, batch)) = (&mut self.workers[i], &mut held[i]);
                        if !w.wants(*tasks, *items, now) {
                            continue;
                        }
                        let Some(t) = st.pending.pop_front() else {
                            break;
                        };
                        if matches!(t.work, Work::Local(_)) {
                            refused.push(t);
                            more = true;
                            continue;
                        }
                        if let Some(left) = &mut w.left {
                            *left -= 1;
                        }
                        *tasks += 1;
                        *items += t.count;
                        batch.push(t);
                        more = true;
                    }
                }
                for (i, (_, _, batch)) in held.into_iter().enumerate() {
                    if !batch.is_empty() {
                        sends.push((i, batch));
                    }
                }
            }
            drop(st);
            // Closures cannot travel (no API makes them for this transport).
            if !refused.is_empty() {
                self.shared.record_all(refused.into_iter().map(|t| {
                    let why = Error::InvalidArgument {
                        what: "a closure cannot run in a worker process".into(),
                    };
                    ((t.job, t.start, t.count), Outcomes::Failed(why))
                }));
            }

            // Hand out the tasks, one message per worker (a worker that died
            // is seen below).
            for (i, batch) in sends {
                let w = &mut self.workers[i];
                let first = w.in_flight.len();
                if first == 0 {
                    w.busy_since = Instant::now();
                }
                for task in batch {
                    let Task {
                        job,
                        start,
                        count,
                        work: Work::Encoded { func, items },
                    } = task
                    else {
                        continue; // refused above
                    };
                    let id = self.next_task;
                    self.next_task += 1;
                    w.in_flight.push_back(Sent {
                        id,
                        job,
                        start,
                        count,
                        func,
                        items,
                    });
                }
                let msgs = w
                    .in_flight
                    .range(first..)
                    .map(|t| TaskRef {
                        id: t.id,
                        func: t.func,
                        items: &t.items,
                    })
                    .collect();
                // Never a blocking write: a worker may itself be blocked
                // writing its outcomes to us, and only we read them. What
                // the worker's buffer does not take now waits in its outbox
                // until poll says it is writable.
                let _ = Connection::encode_frame(&ToWorkerRef::Tasks(msgs), &mut w.outbox);
                w.flush();
            }

            // Kill the workers whose call ran too long; wake up for the
            // next deadline, or to start a replacement again (none without
            // timeouts or a failed start: no clock is read).
            let mut wake_in = self.retry.wake_in(Instant::now);
            if self.limits.task_timeout.is_some() || self.limits.idle.is_some() {
                let (killed, next) = self.deadlines();
                if killed {
                    self.refill();
                    continue;
                }
                wake_in = match (wake_in, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }

            // Wait for outcomes, a dead worker, or a wake-up. A worker's end
            // shows on its sentinel even if something else (a process its
            // task started) still holds its end of the connection.
            let n = self.workers.len();
            let mut fds = vec![self.wake.get().as_fd()];
            fds.extend(self.workers.iter().map(|w| w.link.conn.as_fd()));
            let mut sentinel_of = Vec::new();
            for (i, w) in self.workers.iter().enumerate() {
                if let Some(fd) = w.link.worker.sentinel() {
                    fds.push(fd);
                    sentinel_of.push(i);
                }
            }
            // Workers with frames waiting in their outbox: wait for room too.
            let pending: Vec<usize> = (0..n)
                .filter(|&i| self.workers[i].sent < self.workers[i].outbox.len())
                .collect();
            let out: Vec<_> = pending
                .iter()
                .map(|&i| self.workers[i].link.conn.as_fd())
                .collect();
            let (ready, writable) = spin_then_wait(&fds, &out, wake_in);
            drop((out, fds));
            for k in writable {
                self.workers[pending[k]].flush();
            }
            if ready.contains(&0) {
                let mut buf = [0u8; 256];
                let _ = self.wake.get().read(&mut buf);
            }
            let mut dead = Vec::new();
            for &r in ready.iter().filter(|&&r| r > 0 && r <= n) {
                if !self.collect(r - 1) {
                    dead.push(r - 1);
                }
            }
            for &r in ready.iter().filter(|&&r| r > n) {
                let i = sentinel_of[r - n - 1];
                if dead.contains(&i) {
                    continue;
                }
                // It has ended: what it sent before is in the connection.
                if matches!(
                    self.workers[i].link.conn.poll(Some(Duration::ZERO)),
                    Ok(true)
                ) {
                    self.collect(i);
                }
                dead.push(i);
            }
            dead.sort_unstable();
            for i in dead.into_iter().rev() {
                self.bury(i, Cause::Ended);
            }
            self.refill();
        }
    }

    /// Reads what worker `i` sent; false if it is gone.
    fn collect(&mut self, i: usize) -> bool {
        loop {
            match self.workers[i].link.conn.recv::<FromWorker>() {
                Ok(FromWorker::Done { done, returned }) => self.done(i, done, returned),
                Ok(FromWorker::Retiring) => self.workers[i].retiring = true,
                Ok(FromWorker::Began { task, item }) => {
                    // Kept only where it is the source (no shared record,
                    // timed); its start is when it came, by our clock.
                    if let Some(at) = &mut self.workers[i].reported {
                        *at = Position {
                            task: task.wrapping_add(1),
                            item,
                            began: crate::sys::monotonic_ns().max(1),
                        };
                    }
                }
                Ok(FromWorker::InitFailed(message)) => {
                    self.shared
                        .fail_everything(Error::InitializerFailed { message });
                    return false;
                }
                Err(_) => return false,
            }
            if !matches!(
                self.workers[i].link.conn.poll(Some(Duration::ZERO)),
                Ok(true)
            ) {
                return true;
            }
        }
    }

    /// Records finished tasks of worker `i`, and re-queues the ones it gave back.
    fn done(&mut self, i: usize, done: Vec<DoneMsg>, returned: Vec<u64>) {
        let w = &mut self.workers[i];
        let now = Instant::now();
        let items: usize = done
            .iter()
            .filter_map(|d| w.in_flight.iter().find(|t| t.id == d.id))
            .map(|t| t.count)
            .sum();
        if items > 0 {
            w.item_cost = Some((now - w.busy_since) / u32::try_from(items).unwrap_or(u32::MAX));
            w.busy_since = now;
        }
        let mut finished = Vec::with_capacity(done.len());
        for d in done {
            let Some(pos) = w.in_flight.iter().position(|t| t.id == d.id) else {
                continue;
            };
            let Some(t) = w.in_flight.remove(pos) else {
                continue;
            };
            let outcomes = Outcomes::Records {
                buf: d.outcomes,
                pos: 0,
            };
            finished.push(((t.job, t.start, t.count), outcomes));
        }
        if !returned.is_empty() {
            let mut st = self.shared.lock();
            for id in returned.into_iter().rev() {
                if let Some(pos) = w.in_flight.iter().position(|t| t.id == id)
                    && let Some(t) = w.in_flight.remove(pos)
                {
                    st.pending.push_front(t.requeue());
                }
            }
        }
        if w.in_flight.is_empty() {
            w.idle_since = now;
        }
        self.shared.record_all(finished);
    }

    /// Worker `i` is gone: reap it, fail the item it was running (or that
    /// ran past the task timeout), and queue the others it held again: the
    /// other items of that task, the tasks it had not started, and the few
    /// it finished in its last moments without reporting them.
    fn bury(&mut self, i: usize, cause: Cause) {
        let mut w = self.workers.remove(i);
        let exitcode = w.link.worker.reap();
        mp_logging::get_logger().debug(format_args!("cleaning up worker {}", w.link.pid));
        if w.in_flight.is_empty() {
            return; // retired (maxtasksperchild), or stopped
        }
        if self.shared.lock().broken.is_some() {
            return; // every job has failed already: nothing to run again
        }
        // Whether every task it held fails whole: see `Cause::Ended`.
        let mut every = false;
        let (blamed, why) = match cause {
            Cause::TimedOut { id, item, limit } => {
                // Not found: it reported the call after all, just in time.
                let k = w.in_flight.iter().position(|t| t.id == id);
                let item = k.and_then(|k| {
                    let t = &w.in_flight[k];
                    t.start.checked_add(item.min(t.count.saturating_sub(1)))
                });
                let why = Error::TaskTimeout {
                    worker: w.link.name.clone(),
                    pid: w.link.pid,
                    item: item.unwrap_or(0),
                    limit,
                };
                (k.map(|k| (k, item)), why)
            }
            Cause::Ended => {
                // The running item; if none of those held is running (it
                // died between two), the first is blamed, so that every
                // death fails an item and a worker that cannot run anything
                // cannot make the pool spin. A worker that retired, or that
                // was ended from outside between two calls, fails nothing.
                // Where it was is not known of a worker that shares no
                // memory with the pool in an untimed pool (it reports only
                // what it finished): every task it held and had not
                // reported fails whole, none runs twice.
                let at = w.position();
                every = at.is_none() && !w.retiring;
                let running =
                    at.and_then(|at| w.in_flight.iter().position(|t| t.id + 1 == at.task));
                let blamed = match running {
                    _ if w.retiring || every => None,
                    Some(k) => Some((k, at.map_or(0, |at| at.item))),
                    None if w.ended => None,
                    None => Some((0, 0)),
                };
                let why = Error::WorkerDied {
                    worker: w.link.name.clone(),
                    pid: w.link.pid,
                    exitcode,
                };
                (blamed.map(|(k, item)| (k, Some(item))), why)
            }
        };
        let mut again = Vec::with_capacity(w.in_flight.len() + 1);
        let mut failed = Vec::new();
        for (k, t) in w.in_flight.drain(..).enumerate() {
            match blamed {
                _ if every => failed.push((t.job, t.start, t.count)),
                Some((b, item)) if b == k && t.count > 0 => {
                    // `item` is an index into the call's input for a timeout;
                    // into the task for a death.
                    let item = match &why {
                        Error::TaskTimeout { item, .. } => item.saturating_sub(t.start),
                        _ => item.unwrap_or(0),
                    }
                    .min(t.count - 1);
                    let [before, after] = t.split_around(item);
                    again.extend(before);
                    again.extend(after);
                    failed.push((t.job, t.start + item, 1));
                }
                _ => again.push(t.requeue()),
            }
        }
        let mut st = self.shared.lock();
        for t in again.into_iter().rev() {
            st.pending.push_front(t);
        }
        if failed.is_empty() {
            return;
        }
        let mut garbage = Garbage::default();
        let callbacks: Vec<_> = failed
            .into_iter()
            .filter_map(|(job, start, count)| {
                let why = Outcomes::Failed(why.clone());
                record(&mut st, job, start, count, why, &mut garbage)
            })
            .collect();
        drop(st);
        garbage.dispose();
        for job in callbacks {
            run_callbacks(Some(job), &self.shared);
        }
        self.shared.changed.notify_all();
    }

    /// Takes the wake-up out of the SIGINT handler's table (the pool ends).
    fn release_slot(&mut self) {
        crate::sys::withdraw(&self.wake);
    }

    /// `close()` and all work done: stop the workers and end.
    fn stop(&mut self) {
        self.release_slot();
        for w in &self.workers {
            let _ = w.link.conn.send(&ToWorker::Stop);
        }
        for mut w in self.workers.drain(..) {
            w.link.worker.reap();
        }
        mp_logging::get_logger().debug("worker handler exiting");
        self.shared.lock().finished = true;
        self.shared.changed.notify_all();
    }

    /// `terminate()`: end the workers now and fail what is left.
    pub(crate) fn end(&mut self, why: Error) {
        self.release_slot();
        let log = mp_logging::get_logger();
        log.debug("finalizing pool");
        log.debug("terminating workers");
        for w in &mut self.workers {
            w.link.worker.terminate();
        }
        for w in self.workers.drain(..) {
            let Link {
                mut worker, conn, ..
            } = w.link;
            drop(conn); // a worker that is not killed sees end of file
            worker.reap();
        }
        let mut st = self.shared.lock();
        st.finished = true;
        self.shared.abort_all(st, why);
    }
}

/// The scheduler's wait: zero-timeout polls, as mp-proc's waits poll before
/// they sleep (`plumbing::poll_until`: about a cross-CPU sleep and wake-up,
/// yielding between polls, none on one CPU), then a blocking one. (A waiting
/// caller does not spin: it would take CPU from the workers.)
///
/// `timeout`: the next deadline (a task timeout's, an idle worker's);
/// `None` without one, as long as it takes.
fn spin_then_wait(
    fds: &[BorrowedFd<'_>],
    out: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> (Vec<usize>, Vec<usize>) {
    let found = std::cell::Cell::new(None);
    mp_proc::plumbing::poll_until(|| {
        let (r, w) =
            mp_proc::plumbing::wait_fds_rw(fds, out, Some(Duration::ZERO)).unwrap_or_default();
        let any = !r.is_empty() || !w.is_empty();
        if any {
            found.set(Some((r, w)));
        }
        any
    });
    found
        .take()
        .unwrap_or_else(|| mp_proc::plumbing::wait_fds_rw(fds, out, timeout).unwrap_or_default())
}
