//! The parent's side of the three start methods.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, OsContext, Result};
use crate::method::StartMethod;
use crate::rt::child::{self, Bootstrap, ChildFds, Leave};
use crate::rt::forkserver;
use crate::rt::helper::{self, refuse_if_secure};
use crate::rt::runtime::{self, Child, Watch};
use crate::sys;
use crate::wire::payload;
use crate::wire::runners::Runner;

/// A child about to start.
pub(crate) struct Launch<'a> {
    pub(crate) name: &'a str,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) method: StartMethod,
    pub(crate) runner: Runner,
    pub(crate) target: usize,
    pub(crate) args: Vec<u8>,
    /// The descriptors of the handles in the arguments (kept open by the caller).
    pub(crate) fds: Vec<RawFd>,
    /// The type of the handle that brought each of `fds`.
    pub(crate) fd_types: Vec<u64>,
    /// The write end of a `spawn` result pipe.
    pub(crate) result: Option<BorrowedFd<'a>>,
    /// The child's standard output, if not this process's (fork only: a
    /// remote agent's child writes into a pipe the agent forwards).
    pub(crate) stdout: Option<RawFd>,
}

/// Starts the child and returns its record.
pub(crate) fn launch(mut l: Launch<'_>) -> Result<Child> {
    forkserver::refuse_in_preload()?;
    match l.method {
        StartMethod::Fork => {}
        StartMethod::Spawn => refuse_if_secure("spawn", "use fork")?,
        StartMethod::Forkserver => refuse_if_secure("forkserver", "use fork")?,
    }
    if matches!(l.method, StartMethod::Spawn | StartMethod::Forkserver) {
        check_image(&l)?;
    }
    let boot = bootstrap_for(&mut l);
    match l.method {
        StartMethod::Fork => fork(&l, boot),
        StartMethod::Spawn => spawn(&l, &boot),
        StartMethod::Forkserver => forkserver(&l, &boot),
    }
}

/// Under spawn and forkserver (and on another host), the target and its
/// runner must be functions of the main executable, found again by offset.
pub(crate) fn check_image(l: &Launch<'_>) -> Result<()> {
    for (what, addr) in [
        ("target", l.target),
        ("argument decoder", l.runner as usize),
    ] {
        if let Err(object) = sys::image::check_in_main_image(addr) {
            return Err(Error::TargetNotInImage {
                name: l.name.to_owned(),
                what,
                object,
                method: l.method,
            });
        }
    }
    Ok(())
}

pub(crate) fn bootstrap_for(l: &mut Launch<'_>) -> Bootstrap {
    let (me, start_method) = {
        let state = runtime::state();
        (state.me.clone(), state.start_method.unwrap_or_default())
    };
    let logger = mp_logging::get_logger();
    let (runner, target) = match l.method {
        StartMethod::Fork => (l.runner as usize as i64, l.target as i64),
        _ => (
            sys::image::offset_of(l.runner as usize),
            sys::image::offset_of(l.target),
        ),
    };
    Bootstrap {
        name: l.name.to_owned(),
        identity: l.identity.clone(),
        daemon: l.daemon,
        authkey: me.authkey.to_vec(),
        parent_name: me.name.clone(),
        parent_pid: std::process::id(),
        start_method,
        log_level: logger.effective_level() as u8,
        log_stderr: logger.has_stderr_handler(),
        log_propagate: logger.propagate(),
        fingerprint: match l.method {
            StartMethod::Fork => (0, 0, 0),
            _ => sys::image::fingerprint(),
        },
        runner,
        target,
        args: std::mem::take(&mut l.args),
        nfds: l.fds.len() as u32,
        fd_types: l.fd_types.clone(),
        has_result: l.result.is_some(),
    }
}

/// The descriptors after the alive pipe, in the order children read them.
fn child_fd_list(alive: RawFd, l: &Launch<'_>) -> Vec<RawFd> {
    let mut fds = vec![alive];
    fds.extend(l.result.map(|r| r.as_raw_fd()));
    fds.extend_from_slice(&l.fds);
    fds
}

/// The record of a child of this very process (fork, spawn).
fn direct_child(l: &Launch<'_>, pid: u32) -> Result<Child> {
    let pidfd = pidfd_or_kill(pid)?;
    Ok(Child::new(
        l.name.to_owned(),
        pid,
        l.daemon,
        Watch::Direct { pidfd },
    ))
}

pub(crate) fn pidfd_or_kill(pid: u32) -> Result<OwnedFd> {
    match sys::process::pidfd_open(pid) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Without a pidfd the child cannot be watched: do not leave it behind.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
            Err(Error::os("pidfd_open", e))
        }
    }
}

static WARNED_THREADS: AtomicBool = AtomicBool::new(false);

#[allow(unsafe_code)] // calls of sys's unsafe fns, each with its SAFETY
pub(crate) fn fork(l: &Launch<'_>, boot: Bootstrap) -> Result<Child> {
    if !WARNED_THREADS.load(Ordering::Relaxed)
        && !sys::process::single_threaded()
        && sys::process::thread_count() > 1
        && !WARNED_THREADS.swap(true, Ordering::Relaxed)
    {
        mp_logging::get_logger().warning(format_args!(
            "This process (pid={}) is multi-threaded, use of fork() may lead to deadlocks in the child.",
            std::process::id()
        ));
    }
    let becoming = boot.becoming();
    // Rust's stdout and stderr locks are held by this thread across the
    // fork, as the runtime's lock below: a lock another thread held at the
    // fork (the test harness printing, a user's `println!`) would stay held
    // forever in the child, whose first print or final flush would hang.
    // The child's copy is this thread's (the same thread id): it unlocks.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.flush();
    let stderr = std::io::stderr().lock();
    let mut state = runtime::state();
    let stdin = state.dev_null()?.as_raw_fd();
    let alive = state.alive_reader()?.as_raw_fd();
    let inherited = child_fd_list(alive, l);
    let mut keep: Vec<RawFd> = vec![0, 1, 2];
    keep.extend_from_slice(&inherited);
    // In a process on another host, its agent's control socket (for
    // connections to forwarded addresses): its fork children keep it too.
    keep.extend(crate::rt::tunnel::inherited());
    keep.sort_unstable();
    keep.dedup();
    let plan = sys::process::ForkPlan {
        keep: &keep,
        stdio: [Some(stdin.as_raw_fd()), l.stdout, None],
        clear_mask: sys::process::signals_blocked(),
    };
    // SAFETY: in the child, nothing of the parent's that owns a descriptor
    // is used or dropped: `state`, `stdout` and `stderr` are guards (their
    // drops only unlock), the kept descriptors are taken below once each,
    // become_child forgets the runtime's objects, and child_main never
    // returns (it ends with _exit).
    match unsafe { sys::process::fork(&plan) }.os("fork")? {
        sys::process::Forked::Child => {
            // The locks were taken before fork by this very thread: release
            // them here too, then become the child.
            drop(state);
            drop(stderr);
            drop(stdout);
            // SAFETY: these numbers were kept across the fork for this child
            // (plan.keep); the objects that own them in the parent (the
            // runtime's alive pipe, the caller's handles) are never used or
            // dropped here (see above), and each is taken once.
            let fds = unsafe { sys::spawn::take_placed(inherited) }
                .ok()
                .and_then(|fds| ChildFds::from_vec(fds, l.result.is_some()));
            match fds {
                Some(fds) => child::child_main(
                    boot,
                    becoming,
                    (l.runner, l.target),
                    fds,
                    StartMethod::Fork,
                    Leave::Immediately,
                ),
                None => sys::process::exit_immediately(1),
            }
        }
        sys::process::Forked::Parent(pid) => {
            drop(state);
            drop(stderr);
            drop(stdout);
            direct_child(l, pid)
        }
    }
}

/// Writes a bootstrap into a sealed anonymous memory file (the only kind a
/// child accepts as its bootstrap).
fn bootstrap_memfd(boot: &Bootstrap) -> Result<OwnedFd> {
    let bytes = payload::encode(boot)?;
    sys::spawn::sealed_memfd(c"mp-proc-bootstrap", &bytes).os("write the bootstrap memfd")
}

fn spawn(l: &Launch<'_>, boot: &Bootstrap) -> Result<Child> {
    let memfd = bootstrap_memfd(boot)?;
    let pid = {
        let mut state = runtime::state();
        let alive = state.alive_reader()?.as_raw_fd();
        let mut fds = vec![memfd.as_raw_fd()];
        fds.extend(child_fd_list(alive, l));
        sys::spawn::spawn_self(&sys::spawn::SpawnPlan {
            fds: &fds,
            env: (helper::ENV_CHILD, "3".to_owned()),
            env_remove: helper::ENV_ALL,
            marker: "--multiprocessing-fork",
            null_output: false,
        })
        .os("posix_spawn")?
    };
    direct_child(l, pid)
}

fn forkserver(l: &Launch<'_>, boot: &Bootstrap) -> Result<Child> {
    let memfd = bootstrap_memfd(boot)?;
    let (client, alive) = {
        let mut state = runtime::state();
        let alive = state.alive_reader()?.as_raw_fd();
        (forkserver::client(&mut state)?, alive)
    };
    let mut fds = vec![memfd.as_raw_fd(), 1, 2];
    fds.extend(child_fd_list(alive, l));
    let (pid, status, pidfd) = match forkserver::request(&client, &fds) {
        Err(Error::ForkserverDied { .. }) => {
            // A dead server is restarted transparently (as CPython does), once.
            let client = forkserver::restart(&client)?;
            forkserver::request(&client, &fds)?
        }
        r => r?,
    };
    forkserver::log_preload_report();
    Ok(Child::new(
        l.name.to_owned(),
        pid,
        l.daemon,
        Watch::Forkserver { status, pidfd },
    ))
}
