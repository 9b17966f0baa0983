//! The process-wide state: who this process is, the children it started, and
//! what happens when it exits.
//!
//! One mutex guards it, and the fork start method holds that mutex across
//! `fork()`, so a child never inherits it taken by a thread that does not
//! exist in the child.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, OsContext, Result};
use crate::method::StartMethod;
use crate::mutex::lock;
use crate::rt::helper::Helper;
use crate::sys;
use crate::wire::handle::HandleKey;

/// Who this process is.
#[derive(Clone)]
pub(crate) struct Me {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) authkey: Arc<[u8]>,
    pub(crate) parent: Option<(String, u32)>,
}

/// A started child that has not been reaped yet.
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) daemon: bool,
    pub(crate) watch: Watch,
    exitcode: Mutex<Option<i32>>,
}

/// How the end of a child is observed.
pub(crate) enum Watch {
    /// Our own child (fork, spawn): its pidfd, then `waitpid`.
    Direct { pidfd: OwnedFd },
    /// A child of the fork server: the server writes its exit code to
    /// `status`; `pidfd` is for signals.
    Forkserver {
        status: OwnedFd,
        pidfd: Option<OwnedFd>,
    },
    /// A process on another host, through its launcher.
    Remote(Box<dyn RemoteWatch>),
}

/// How a process on another host is watched and signalled (`rt::remote`).
pub(crate) trait RemoteWatch: Send + Sync {
    /// Readable once the process has ended (its launcher has exited).
    fn sentinel(&self) -> BorrowedFd<'_>;
    /// Once the sentinel is readable: the exit code (the launcher reaped).
    fn exit_code(&self) -> Result<i32>;
    /// Sends `signal` to the process.
    fn signal(&self, signal: i32) -> Result<()>;
}

pub(crate) struct State {
    pub(crate) me: Arc<Me>,
    pub(crate) start_method: Option<StartMethod>,
    pub(crate) children: Vec<Arc<Child>>,
    /// `(read, write)`: children get the read end; it reaches end of file
    /// when this process dies, however it dies.
    pub(crate) alive: Option<(OwnedFd, OwnedFd)>,
    /// The read end of the parent's alive pipe (in a child): readable (end
    /// of file) once the parent has died. Python's parent sentinel.
    pub(crate) parent_alive: Option<Arc<OwnedFd>>,
    pub(crate) forkserver: Option<Arc<Helper>>,
    /// The functions every fork server this process starts runs once, before
    /// it serves (`set_forkserver_preload`).
    pub(crate) preload: Vec<fn()>,
    /// The running fork server's report on its preload functions, read at
    /// the first start it answers.
    pub(crate) preload_report: Option<OwnedFd>,
    /// `/dev/null`, the stdin of fork children, opened once.
    dev_null: Option<OwnedFd>,
    /// Children whose `Process` was dropped while they ran.
    orphans: Vec<Arc<Child>>,
    /// The write end of the reaper thread's wake-up pipe, while it runs.
    reaper: Option<OwnedFd>,
    /// The resource tracker, started with the first named shared memory.
    pub(crate) tracker: Option<Helper>,
    exit_hook: bool,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        me: Arc::new(Me {
            name: "MainProcess".to_owned(),
            identity: Vec::new(),
            daemon: false,
            authkey: new_authkey(),
            parent: None,
        }),
        start_method: None,
        children: Vec::new(),
        alive: None,
        parent_alive: None,
        forkserver: None,
        preload: Vec::new(),
        preload_report: None,
        dev_null: None,
        orphans: Vec::new(),
        reaper: None,
        tracker: None,
        exit_hook: false,
    })
});

/// The counter behind `Process-N`: processes created by this process.
static COUNTER: AtomicU32 = AtomicU32::new(0);
/// Set once this process has run its exit function.
static EXITING: AtomicBool = AtomicBool::new(false);

fn new_authkey() -> Arc<[u8]> {
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        // No entropy source: fall back to something unique to this process.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        for (i, b) in seed.bytes().enumerate() {
            key[i % 32] ^= b;
        }
    }
    Arc::from(&key[..])
}

/// Locks the state.
pub(crate) fn state() -> MutexGuard<'static, State> {
    lock(&STATE)
}

/// Who this process is.
pub(crate) fn me() -> Arc<Me> {
    state().me.clone()
}

impl HandleKey {
    /// The key of this process tree's handles (from this process's authkey,
    /// which the runtime holds; the wire only signs and checks).
    pub fn process() -> HandleKey {
        thread_local! {
            static CACHE: std::cell::RefCell<Option<(Arc<[u8]>, HandleKey)>> =
                const { std::cell::RefCell::new(None) };
        }
        let authkey = me().authkey.clone();
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            match &*c {
                Some((k, key)) if Arc::ptr_eq(k, &authkey) => key.clone(),
                _ => {
                    let key = HandleKey::new(&authkey);
                    *c = Some((authkey, key.clone()));
                    key
                }
            }
        })
    }
}

/// The start method of processes that do not choose one (the one set, or
/// the default).
pub(crate) fn start_method() -> StartMethod {
    state().start_method.unwrap_or_default()
}

/// The next process number.
pub(crate) fn next_count() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

impl State {
    /// The read end of this process's alive pipe, made on first use.
    pub(crate) fn alive_reader(&mut self) -> Result<BorrowedFd<'_>> {
        if self.alive.is_none() {
            self.alive = Some(sys::fd::pipe().os("pipe")?);
        }
        Ok(self.alive.as_ref().expect("just set").0.as_fd())
    }

    /// `/dev/null`, opened on first use.
    pub(crate) fn dev_null(&mut self) -> Result<BorrowedFd<'_>> {
        if self.dev_null.is_none() {
            self.dev_null = Some(sys::fd::dev_null(false).os("open /dev/null")?);
        }
        Ok(self.dev_null.as_ref().expect("just set").as_fd())
    }

    /// Registers the exit function with `atexit`, once.
    pub(crate) fn ensure_exit_hook(&mut self) {
        if !self.exit_hook {
            self.exit_hook = sys::process::at_exit(at_exit);
        }
    }
}

/// Becomes a new child: called in the child right after fork, or in a fresh
/// image. The parent's children and helpers are not ours: under fork their
/// descriptors are already closed, so they are forgotten, never dropped.
/// `parent_alive` is the parent's alive pipe, this child's parent sentinel.
pub(crate) fn become_child(
    state: &mut State,
    me: Arc<Me>,
    start_method: StartMethod,
    parent_alive: Arc<OwnedFd>,
) {
    std::mem::forget(std::mem::take(&mut state.children));
    std::mem::forget(state.alive.take());
    std::mem::forget(state.parent_alive.replace(parent_alive));
    std::mem::forget(state.forkserver.take());
    std::mem::forget(state.preload_report.take());
    std::mem::forget(state.dev_null.take());
    std::mem::forget(std::mem::take(&mut state.orphans));
    std::mem::forget(state.reaper.take());
    std::mem::forget(state.tracker.take());
    std::mem::forget(std::mem::replace(&mut state.me, me));
    state.start_method = Some(start_method);
    state.exit_hook = false;
    COUNTER.store(0, Ordering::Relaxed);
    EXITING.store(false, Ordering::Relaxed);
}

impl Child {
    pub(crate) fn new(name: String, pid: u32, daemon: bool, watch: Watch) -> Child {
        Child {
            name,
            pid,
            daemon,
            watch,
            exitcode: Mutex::new(None),
        }
    }

    /// The descriptor that becomes readable when the child ends.
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.watch {
            Watch::Direct { pidfd } => pidfd.as_fd(),
            Watch::Forkserver { status, .. } => status.as_fd(),
            Watch::Remote(remote) => remote.sentinel(),
        }
    }

    fn cached(&self) -> Option<i32> {
        *lock(&self.exitcode)
    }

    /// Waits up to `timeout` (`None`: forever) for the child to end; returns
    /// its exit code once it has, reaping it.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        if let Some(code) = self.cached() {
            return Ok(Some(code));
        }
        if !sys::fd::readable(self.sentinel(), timeout).os("wait for process")? {
            return Ok(None);
        }
        let mut cached = lock(&self.exitcode);
        if let Some(code) = *cached {
            return Ok(Some(code));
        }
        let code = match &self.watch {
            Watch::Remote(remote) => remote.exit_code()?,
            Watch::Direct { .. } => match sys::process::try_reap(self.pid).os("waitpid")? {
                Some(code) => code,
                None => return Ok(None),
            },
            Watch::Forkserver { status, pidfd } => {
                let mut buf = [0u8; 4];
                let mut got = 0;
                while got < 4 {
                    match sys::fd::read(status.as_fd(), &mut buf[got..]).os("read exit status")? {
                        0 => break,
                        n => got += n,
                    }
                }
                if got == 4 {
                    i32::from_ne_bytes(buf)
                } else {
                    // The fork server died and the exit code with it (the
                    // status socket is at end of file, so that wait returned at
                    // once). Wait for the child itself; CPython reports 255.
                    if let Some(pidfd) = pidfd {
                        drop(cached);
                        if !sys::fd::readable(pidfd.as_fd(), timeout).os("wait for process")? {
                            return Ok(None);
                        }
                        cached = lock(&self.exitcode);
                    }
                    255
                }
            }
        };
        *cached = Some(code);
        drop(cached);
        forget_child(self);
        Ok(Some(code))
    }

    /// Sends `signal`; an ended child is [`Error::AlreadyExited`].
    pub(crate) fn signal(&self, signal: i32) -> Result<()> {
        if let Some(code) = self.wait(Some(Duration::ZERO))? {
            return Err(Error::AlreadyExited {
                name: self.name.clone(),
                exitcode: code,
            });
        }
        let pidfd = match &self.watch {
            Watch::Direct { pidfd } => Some(pidfd),
            Watch::Forkserver { pidfd, .. } => pidfd.as_ref(),
            Watch::Remote(remote) => return remote.signal(signal),
        };
        let result = match pidfd {
            Some(pidfd) => sys::process::pidfd_send_signal(pidfd.as_fd(), signal),
            None => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::try_from(signal).ok(),
            )
            .map_err(Into::into),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                let code = self.wait(Some(Duration::from_secs(1)))?.unwrap_or(255);
                Err(Error::AlreadyExited {
                    name: self.name.clone(),
                    exitcode: code,
                })
            }
            Err(e) => Err(Error::os("signal process", e)),
        }
    }
}

/// Removes a reaped child from the registry (by identity: a process on
/// another host may have the pid of one here).
fn forget_child(child: &Child) {
    state()
        .children
        .retain(|c| !std::ptr::eq(Arc::as_ptr(c), child));
}

/// Takes over a child whose `Process` is dropped: it is reaped as soon as it
/// ends, by a reaper thread that runs only while there are such children.
pub(crate) fn adopt(child: Arc<Child>) {
    if !matches!(child.wait(Some(Duration::ZERO)), Ok(None)) {
        return; // ended (and now reaped), or cannot be watched
    }
    let mut state = state();
    state.orphans.push(child);
    if let Some(wake) = &state.reaper {
        let _ = sys::fd::write(wake.as_fd(), b"+", false);
        return;
    }
    let Ok((wake_r, wake_w)) = sys::fd::pipe() else {
        return;
    };
    let started = std::thread::Builder::new()
        .name("mp-reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || reap_orphans(wake_r));
    if started.is_ok() {
        state.reaper = Some(wake_w);
    }
}

/// The reaper thread: waits for any orphan to end (or for a new one), reaps,
/// and ends when none is left.
fn reap_orphans(wake: OwnedFd) {
    loop {
        let orphans: Vec<Arc<Child>> = state().orphans.clone();
        let running: Vec<Arc<Child>> = orphans
            .into_iter()
            .filter(|c| matches!(c.wait(Some(Duration::ZERO)), Ok(None)))
            .collect();
        {
            let mut state = state();
            state.orphans.retain(|o| o.cached().is_none());
            if state.orphans.is_empty() {
                state.reaper = None;
                return;
            }
        }
        let mut fds = vec![wake.as_fd()];
        fds.extend(running.iter().map(|c| c.sentinel()));
        if let Ok(ready) = sys::fd::wait_readable(&fds, None)
            && ready[0]
        {
            let mut buf = [0u8; 64];
            let _ = sys::fd::read(wake.as_fd(), &mut buf);
        }
    }
}

/// Reaps every finished child and returns the live ones (Python's
/// `active_children()`).
pub(crate) fn live_children() -> Vec<Arc<Child>> {
    let children = state().children.clone();
    children
        .into_iter()
        .filter(|c| matches!(c.wait(Some(Duration::ZERO)), Ok(None)))
        .collect()
}

/// Python's `util._exit_function`: at the end of every process (main and
/// children) terminate daemon children, then join the others.
pub(crate) fn exit_function() {
    if EXITING.swap(true, Ordering::SeqCst) {
        return;
    }
    let log = mp_logging::get_logger();
    log.info("process shutting down");
    log.debug("running all \"atexit\" finalizers with priority >= 0");
    for child in live_children() {
        if child.daemon {
            log.info(format_args!(
                "calling terminate() for daemon {}",
                child.name
            ));
            let _ = child.signal(libc::SIGTERM);
        }
    }
    for child in live_children() {
        log.info(format_args!("calling join() for process {}", child.name));
        let _ = child.wait(None);
    }
    log.debug("running the remaining \"atexit\" finalizers");
}

extern "C" fn at_exit() {
    // A panic must not unwind into the C runtime.
    let _ = std::panic::catch_unwind(exit_function);
}
