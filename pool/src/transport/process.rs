//! Workers that are processes of a [`mp_proc::Context`]: each runs
//! [`worker_main`] at the other end of its own connection, fed by the
//! pool's [`Scheduler`] thread with encoded tasks.
//!
//! Processes on other hosts ([`Workers::Hosts`]) are the same workers
//! with one difference, where the scheduler learns which call a worker
//! is in: a worker of this machine writes it in a shared record
//! ([`Progress`]); one on another host shares no memory with the pool,
//! so its only handle is its connection, and it reports its calls over
//! it when the pool has a task timeout (see [`crate::worker::Reporter`]).

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use mp_proc::plumbing::{ErasedFunction, Packed};
use mp_proc::{Context, ProcessLike, Workers};

use crate::error::Result;
use crate::job::Shared;
use crate::progress::{Position, Progress};
use crate::scheduler::{EXIT_GRACE, Limits, Link, Remote, Scheduler, Spawn};
use crate::transport::{Live, Transport};
use crate::worker::{WorkerArgs, worker_main};

/// Makes a worker process (not started) for the pool's context.
type Spawner = Box<dyn Fn(WorkerArgs) -> Box<dyn ProcessLike> + Send>;

/// The process transport: a scheduler thread and its worker processes.
pub(crate) struct Processes {
    setup: Mutex<Option<(ProcessSpawn, usize)>>,
    wake: Arc<crate::sys::Wake>,
    scheduler: Mutex<Option<JoinHandle<()>>>,
    /// The scheduler thread while it runs (it reaps the workers before it
    /// ends), for every joiner to wait on.
    live: Arc<Live>,
    /// A request to end the current workers: the signal to send them (0:
    /// none), carried out by the scheduler.
    end_workers: Arc<AtomicI32>,
}

impl Processes {
    /// Workers of `ctx`, `processes` of them, each running `initializer`
    /// first, within `limits`.
    pub(crate) fn new<C: Context>(
        ctx: C,
        processes: usize,
        initializer: Option<(ErasedFunction, Packed)>,
        limits: Limits,
    ) -> Result<Processes> {
        let wake = crate::sys::wake_fd().map_err(|source| mp_proc::Error::Os {
            op: "eventfd",
            source,
        })?;
        let shared_memory = ctx.workers() != Workers::Hosts;
        let spawner: Spawner = Box::new(move |args| Box::new(ctx.process(worker_main, args)));
        let spawn = ProcessSpawn {
            spawner,
            initializer,
            limits,
            shared_memory,
        };
        Ok(Processes {
            setup: Mutex::new(Some((spawn, processes))),
            wake: Arc::new(wake),
            scheduler: Mutex::new(None),
            live: Arc::default(),
            end_workers: Arc::default(),
        })
    }
}

impl Transport for Processes {
    fn start(self: Arc<Self>, shared: &Arc<Shared>) -> Result<()> {
        let Some((spawn, processes)) = mp_proc::plumbing::lock(&self.setup).take() else {
            return Ok(());
        };
        let limits = spawn.limits;
        let mut scheduler = Scheduler::new(
            shared.clone(),
            Box::new(spawn),
            processes,
            limits,
            self.wake.clone(),
            self.end_workers.clone(),
        );
        // Start the first workers here, so that a pool that cannot start any
        // is an error of its constructor.
        if let Err(e) = scheduler.fill() {
            scheduler.end(crate::Error::Terminated);
            return Err(e);
        }
        let alive = self.live.start();
        let handle = std::thread::Builder::new()
            .name("mp-pool".into())
            .spawn(move || {
                let _alive = alive;
                scheduler.run()
            })
            .map_err(|e| mp_proc::Error::Os {
                op: "start the pool's thread",
                source: e,
            })?;
        *mp_proc::plumbing::lock(&self.scheduler) = Some(handle);
        Ok(())
    }

    fn wake(&self) {
        let _ = self.wake.get().write(&1u64.to_ne_bytes());
    }

    fn end_workers(&self, signal: i32) {
        let _ = self
            .end_workers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |asked| {
                Some(stronger(asked, signal))
            });
        self.wake();
    }

    fn join(&self, deadline: Option<Instant>) -> bool {
        if !self.live.wait(0, deadline) {
            return false;
        }
        // The scheduler has returned: its thread is ending. The lock is held
        // while it is joined, so that a concurrent joiner returns after it.
        let mut handle = mp_proc::plumbing::lock(&self.scheduler);
        if let Some(h) = handle.take() {
            let _ = h.join();
        }
        true
    }
}

/// Starts worker processes.
struct ProcessSpawn {
    spawner: Spawner,
    initializer: Option<(ErasedFunction, Packed)>,
    limits: Limits,
    /// Whether the workers may share memory with the pool (not on other
    /// hosts): each then gets a [`Progress`] record.
    shared_memory: bool,
}

impl ProcessSpawn {
    /// A worker's arguments over its end of the connection, and the
    /// pool's handle of its record (none on other hosts).
    fn args(&self, conn: mp_proc::Connection) -> Result<(WorkerArgs, Option<Progress>)> {
        let progress = match self.shared_memory {
            true => Some(Progress::new()?),
            false => None,
        };
        let args = WorkerArgs {
            conn,
            initializer: self.initializer.clone(),
            maxtasks: self.limits.maxtasks,
            progress: progress.clone(),
            timed: self.limits.task_timeout.is_some(),
            max_memory: self.limits.max_memory,
        };
        Ok((args, progress))
    }
}

impl Spawn for ProcessSpawn {
    fn spawn(&mut self) -> Result<Link> {
        let (ours, theirs) = mp_proc::pipe(true)?;
        let (args, progress) = self.args(theirs)?;
        let mut process = (self.spawner)(args);
        let name = process.get_name().replacen("Process", "PoolWorker", 1);
        process.set_name(name.clone());
        process.set_daemon(true);
        process.start()?;
        let pid = process.pid().unwrap_or(0);
        Ok(Link {
            conn: ours,
            name,
            pid,
            worker: Box::new(WorkerProcess { process, progress }),
        })
    }
}

/// A worker process, and the task it says it runs.
struct WorkerProcess {
    process: Box<dyn ProcessLike>,
    /// See [`WorkerArgs::progress`].
    progress: Option<Progress>,
}

impl Remote for WorkerProcess {
    fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.process.sentinel()
    }

    fn position(&self) -> Option<Position> {
        self.progress.as_ref().map(Progress::read)
    }

    fn terminate(&mut self) {
        let _ = self.process.terminate();
    }

    fn kill(&mut self) {
        let _ = self.process.kill();
    }

    fn reap(&mut self) -> i32 {
        match self.process.join_timeout(EXIT_GRACE) {
            Ok(Some(code)) => code,
            _ => {
                let _ = self.process.kill();
                self.process.join().unwrap_or(-libc::SIGKILL)
            }
        }
    }
}

/// Of two requests to end the workers (a signal; 0: none), the one to carry
/// out: `SIGKILL` wins over a `SIGTERM` asked for at the same time, whatever
/// the order (their numbers, 9 and 15, do not say it).
fn stronger(asked: i32, signal: i32) -> i32 {
    if asked == libc::SIGKILL || signal == 0 {
        asked
    } else {
        signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The descriptors a worker's arguments take to the worker, each with
    /// the type tag of the handle that brought it (read from the packed
    /// value's `Debug`: mp-proc keeps its descriptors private).
    fn descriptors<T: serde::Serialize + 'static>(args: &T) -> Vec<(String, u64)> {
        let packed = mp_proc::plumbing::Packed::pack(args).unwrap();
        let text = format!("{packed:?}");
        let fds = text
            .split("fds: [")
            .nth(1)
            .unwrap()
            .split("], ty:")
            .next()
            .unwrap();
        fds.split("(OwnedFd")
            .skip(1)
            .map(|entry| {
                let (fd, rest) = entry.split_once("}, ").unwrap();
                let tag = rest.split(')').next().unwrap().trim().parse().unwrap();
                (fd.to_owned(), tag)
            })
            .collect()
    }

    fn spawn(shared_memory: bool) -> ProcessSpawn {
        ProcessSpawn {
            spawner: Box::new(|_| unreachable!("no worker is started")),
            initializer: None,
            limits: Limits {
                task_timeout: Some(std::time::Duration::from_secs(1)),
                ..Limits::default()
            },
            shared_memory,
        }
    }

    #[test]
    fn a_worker_on_another_host_gets_its_connection_and_no_other_handle() {
        // The tag a connection's descriptor travels with.
        let (a, _b) = mp_proc::pipe(true).unwrap();
        let conn_tag = descriptors(&a)[0].1;
        let (_ours, theirs) = mp_proc::pipe(true).unwrap();
        let (args, progress) = spawn(false).args(theirs).unwrap();
        assert!(progress.is_none() && args.progress.is_none() && args.timed);
        let fds = descriptors(&args);
        assert_eq!(fds.len(), 1, "{fds:?}");
        assert_eq!(fds[0].1, conn_tag, "{fds:?}");
        // A local worker's take its shared record too: what is counted
        // here is what travels.
        let (_ours, theirs) = mp_proc::pipe(true).unwrap();
        let (args, progress) = spawn(true).args(theirs).unwrap();
        assert!(progress.is_some());
        let fds = descriptors(&args);
        assert_eq!(fds.len(), 2, "{fds:?}");
        assert_eq!(fds.iter().filter(|f| f.1 == conn_tag).count(), 1, "{fds:?}");
    }

    #[test]
    fn sigkill_wins_over_sigterm_in_either_order() {
        let (term, kill) = (libc::SIGTERM, libc::SIGKILL);
        assert_eq!(stronger(stronger(0, kill), term), kill);
        assert_eq!(stronger(stronger(0, term), kill), kill);
        assert_eq!(stronger(stronger(0, term), term), term);
        assert_eq!(stronger(0, 0), 0);
    }
}
