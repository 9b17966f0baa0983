//! Workers that are processes of a [`mp_proc::Context`]: each runs
//! [`worker_main`] at the other end of its own connection, fed by the
//! pool's [`Scheduler`] thread with encoded tasks.

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use mp_proc::plumbing::{ErasedFunction, Packed};
use mp_proc::{Context, ProcessLike};

use crate::error::Result;
use crate::job::Shared;
use crate::scheduler::{EXIT_GRACE, Link, Remote, Scheduler, Spawn};
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
}

impl Processes {
    /// Workers of `ctx`, `processes` of them, each running `initializer`
    /// first and replaced after `maxtasks` tasks.
    pub(crate) fn new<C: Context>(
        ctx: C,
        processes: usize,
        initializer: Option<(ErasedFunction, Packed)>,
        maxtasks: Option<usize>,
    ) -> Result<Processes> {
        let wake = crate::sys::wake_fd().map_err(|source| mp_proc::Error::Os {
            op: "eventfd",
            source,
        })?;
        let spawner: Spawner = Box::new(move |args| Box::new(ctx.process(worker_main, args)));
        let spawn = ProcessSpawn {
            spawner,
            initializer,
            maxtasks,
        };
        Ok(Processes {
            setup: Mutex::new(Some((spawn, processes))),
            wake: Arc::new(wake),
            scheduler: Mutex::new(None),
            live: Arc::default(),
        })
    }
}

impl Transport for Processes {
    fn start(self: Arc<Self>, shared: &Arc<Shared>) -> Result<()> {
        let Some((spawn, processes)) = mp_proc::plumbing::lock(&self.setup).take() else {
            return Ok(());
        };
        let maxtasks = spawn.maxtasks;
        let mut scheduler = Scheduler::new(
            shared.clone(),
            Box::new(spawn),
            processes,
            maxtasks,
            self.wake.clone(),
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
    maxtasks: Option<usize>,
}

impl Spawn for ProcessSpawn {
    fn spawn(&mut self) -> Result<Link> {
        let (ours, theirs) = mp_proc::pipe(true)?;
        let progress = mp_proc::RawValue::new(0u64)?;
        let args = WorkerArgs {
            conn: theirs,
            initializer: self.initializer.clone(),
            maxtasks: self.maxtasks,
            progress: progress.clone(),
        };
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
    progress: mp_proc::RawValue<u64>,
}

impl Remote for WorkerProcess {
    fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.process.sentinel()
    }

    fn running(&self) -> u64 {
        self.progress.get()
    }

    fn terminate(&mut self) {
        let _ = self.process.terminate();
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
