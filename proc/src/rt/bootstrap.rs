//! The child's side of every start method: what a child receives, and the
//! life of a child from its first instruction to its exit code.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::connection::Connection;
use crate::rt::runtime::{self, Me};
use crate::sys::spawn::Channel;
use crate::wire::runners::Runner;
use crate::{StartMethod, sys};

/// Tells a spawned copy of the executable that fd 3 holds its bootstrap.
pub(crate) const ENV_CHILD: &str = "__MP_PROC_CHILD";
/// Tells a spawned copy of the executable to be a fork server on fd 3.
pub(crate) const ENV_FORKSERVER: &str = "__MP_PROC_FORKSERVER";
/// Tells a spawned copy of the executable to be a resource tracker on fd 3.
pub(crate) const ENV_TRACKER: &str = "__MP_PROC_TRACKER";
/// Every variable above: none is passed on to a process's own children.
pub(crate) const ENV_ALL: &[&str] = &[ENV_CHILD, ENV_FORKSERVER, ENV_TRACKER];

/// Everything a child needs besides its descriptors.
#[derive(Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) authkey: Vec<u8>,
    pub(crate) parent_name: String,
    pub(crate) parent_pid: u32,
    /// The default start method for the child's own children.
    pub(crate) start_method: StartMethod,
    pub(crate) log_level: u8,
    pub(crate) log_stderr: bool,
    pub(crate) log_propagate: bool,
    /// The executable's fingerprint (spawn, forkserver) and the runner and
    /// target: offsets from the image's anchor, or addresses under fork.
    pub(crate) fingerprint: (u64, u64, i64),
    pub(crate) runner: i64,
    pub(crate) target: i64,
    pub(crate) args: Vec<u8>,
    /// How many descriptors the arguments' handles brought.
    pub(crate) nfds: u32,
    /// The type of the handle that brought each of them.
    pub(crate) fd_types: Vec<u64>,
    /// Whether a result pipe follows the alive pipe.
    pub(crate) has_result: bool,
}

/// The descriptors a child receives, in the order every start method uses:
/// the parent's alive pipe, the result pipe (for `spawn`), then the handles
/// in the arguments.
pub(crate) struct ChildFds {
    pub(crate) alive: OwnedFd,
    pub(crate) result: Option<OwnedFd>,
    pub(crate) args: Vec<OwnedFd>,
}

impl ChildFds {
    pub(crate) fn from_vec(mut fds: Vec<OwnedFd>, has_result: bool) -> Option<ChildFds> {
        if fds.is_empty() || (has_result && fds.len() < 2) {
            return None;
        }
        let args = fds.split_off(if has_result { 2 } else { 1 });
        let result = if has_result { fds.pop() } else { None };
        let alive = fds.pop()?;
        Some(ChildFds {
            alive,
            result,
            args,
        })
    }
}

/// How a child leaves.
#[derive(Copy, Clone)]
pub(crate) enum Leave {
    /// `_exit`: a fork child, whose memory still holds its parent's objects.
    Immediately,
    /// `exit`: a fresh image (spawn) or a fork of the clean fork server; runs
    /// the process's `atexit` handlers, as CPython 3.13+ children do.
    Normally,
}

/// What a `spawn`ed child sends back on its result pipe.
#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome {
    Returned(Vec<u8>),
    Panicked(String),
    Failed(String),
}

/// `mp_proc::exit(n)` unwinding out of the target with this payload.
pub(crate) struct ExitRequest(pub(crate) i32);

thread_local! {
    /// Set on the thread that runs the target, where `exit(n)` may unwind.
    pub(crate) static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

sys::ctor::before_main! {
    /// Runs the bootstrap of spawned children and helpers before `main`, so
    /// that spawn and forkserver work in every binary that links mp-proc,
    /// test harnesses and doctests included, with no line of set-up.
    static BOOTSTRAP = run_if_child;
}

/// Keeps the constructor in every binary that starts processes, whatever the
/// linker does with unreferenced sections.
pub(crate) fn keep_constructor() {
    std::hint::black_box(&BOOTSTRAP);
}

/// What a spawned copy of the executable was started to be.
#[derive(Copy, Clone)]
pub(crate) enum Role {
    Child,
    Forkserver,
    Tracker,
}

impl Role {
    fn variable(self) -> &'static str {
        match self {
            Role::Child => ENV_CHILD,
            Role::Forkserver => ENV_FORKSERVER,
            Role::Tracker => ENV_TRACKER,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Role::Child => "child bootstrap",
            Role::Forkserver => "fork server",
            Role::Tracker => "resource tracker",
        }
    }
}

/// The constructor's and `init()`'s entry: if this process was spawned to run
/// a target, to be the fork server or to be the resource tracker, do that and
/// never return.
///
/// The variables are removed from the environment (so that no process
/// started from here sees them) and obeyed only in a process that is not
/// under secure execution: a setuid or setcap program ignores them and its
/// `main` runs, whoever set them. A variable whose descriptor is not what a
/// parent places there ends the process at once with a message on stderr.
#[allow(unsafe_code)] // calls of sys's unsafe fns, each with its SAFETY
pub(crate) fn run_if_child() {
    let set: Vec<(Role, std::ffi::OsString)> = [Role::Tracker, Role::Forkserver, Role::Child]
        .into_iter()
        .filter_map(|role| sys::process::take_env_var(role.variable()).map(|v| (role, v)))
        .collect();
    let Some((role, value)) = set.first() else {
        return;
    };
    if sys::process::secure_execution() {
        // Whoever set them may not be the owner of this program's privileges.
        return;
    }
    let role = *role;
    if set.len() > 1 {
        let names: Vec<&str> = set.iter().map(|(r, _)| r.variable()).collect();
        die(&format!(
            "bootstrap failed: more than one bootstrap variable is set ({}); a parent sets one",
            names.join(", ")
        ));
    }
    let Some(fd) = value
        .to_str()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd >= 0)
    else {
        fatal(
            role,
            &format!("{}={value:?} is not a descriptor number", role.variable()),
        );
    };
    match role {
        Role::Tracker => {
            // SAFETY: the parent placed this fd for this process alone and
            // named it in its variable; it is taken once, here.
            match unsafe { sys::spawn::take_channel(fd, Channel::PipeReadEnd) } {
                Ok(pipe) => crate::rt::tracker::serve(pipe),
                Err(e) => fatal(role, &e.to_string()),
            }
        }
        Role::Forkserver => {
            // SAFETY: as above.
            match unsafe { sys::spawn::take_channel(fd, Channel::Seqpacket) } {
                Ok(control) => crate::rt::forkserver::serve(control),
                Err(e) => fatal(role, &e.to_string()),
            }
        }
        Role::Child => match read_spawned(fd) {
            Ok((boot, fds)) => {
                let fingerprint = boot.fingerprint;
                match crate::wire::runners::resolve(boot.runner, boot.target, fingerprint) {
                    Some(entry) => {
                        let becoming = boot.becoming();
                        child_main(
                            boot,
                            becoming,
                            entry,
                            fds,
                            StartMethod::Spawn,
                            Leave::Normally,
                        )
                    }
                    None => fatal(
                        role,
                        "the executable changed since the parent started: cannot find the target",
                    ),
                }
            }
            Err(e) => fatal(role, &e),
        },
    }
}

/// Starts a helper process (the fork server, the resource tracker): this
/// executable again, with `fd` as its fd 3, `env` telling it its role, and no
/// stdio of the program's. Returns its pid.
pub(crate) fn spawn_helper(
    fd: std::os::fd::RawFd,
    env: &str,
    marker: &str,
) -> std::io::Result<u32> {
    sys::spawn::spawn_self(&sys::spawn::SpawnPlan {
        fds: &[fd],
        env: (env, "3".to_owned()),
        env_remove: ENV_ALL,
        marker,
        null_output: true,
    })
}

/// `Err(Error::SecureExecution)` in a setuid or setcap process, which must
/// not run its own executable again: `what` is refused, `instead` works.
pub(crate) fn refuse_if_secure(what: &'static str, instead: &'static str) -> crate::Result<()> {
    if sys::process::secure_execution() {
        return Err(crate::Error::SecureExecution { what, instead });
    }
    Ok(())
}

/// Whether this process was spawned to run a target that has not run (its
/// bootstrap did not run before `main`). Never under secure execution, where
/// the variables mean nothing.
pub(crate) fn bootstrap_pending() -> bool {
    ENV_ALL.iter().any(|v| std::env::var_os(v).is_some()) && !sys::process::secure_execution()
}

/// A spawned child's bootstrap: the memfd at `fd`, descriptors after it.
#[allow(unsafe_code)] // calls of sys's unsafe fns, each with its SAFETY
fn read_spawned(fd: i32) -> Result<(Bootstrap, ChildFds), String> {
    // SAFETY: the parent placed this fd for this process alone and named it
    // in its variable; it is taken once, here.
    let boot_fd =
        unsafe { sys::spawn::take_channel(fd, Channel::SealedMemfd) }.map_err(|e| e.to_string())?;
    let boot = read_bootstrap(boot_fd)?;
    let count = 1 + boot.has_result as usize + boot.nfds as usize;
    let first = fd
        .checked_add(1)
        .ok_or("no room for descriptors after the bootstrap")?;
    let alive = {
        // SAFETY: the parent placed the alive pipe right after the bootstrap,
        // for this process alone; it is taken once, here.
        unsafe { sys::spawn::take_channel(first, Channel::PipeReadEnd) }
            .map_err(|e| format!("the alive pipe: {e}"))?
    };
    let rest = (first..=i32::MAX).skip(1).take(count - 1);
    // SAFETY: the parent placed these after the alive pipe, as many as the
    // bootstrap says, for this process alone; each is taken once, here.
    let mut fds = unsafe { sys::spawn::take_placed(rest) }.map_err(|e| e.to_string())?;
    if fds.len() != count - 1 {
        return Err("no room for the descriptors the bootstrap announces".to_owned());
    }
    fds.insert(0, alive);
    let fds = ChildFds::from_vec(fds, boot.has_result).ok_or("missing descriptors")?;
    Ok((boot, fds))
}

/// Reads a bootstrap from the sealed memfd a parent made.
pub(crate) fn read_bootstrap(fd: OwnedFd) -> Result<Bootstrap, String> {
    sys::spawn::check_channel(fd.as_fd(), Channel::SealedMemfd).map_err(|e| e.to_string())?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read the bootstrap: {e}"))?;
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the bootstrap: {e}"))?;
    if bytes.is_empty() {
        return Err("the bootstrap is empty".to_owned());
    }
    crate::wire::payload::decode(&bytes).map_err(|e| format!("the bootstrap does not decode: {e}"))
}

/// The end of a process whose bootstrap is not what a parent sets up (a
/// wrong descriptor, a failed read, garbage): one line on stderr and exit
/// code 1, before anything else runs.
pub(crate) fn fatal(role: Role, what: &str) -> ! {
    die(&format!("{} failed: {what}", role.what()))
}

fn die(message: &str) -> ! {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("mp-proc: {message}\n").as_bytes(),
    );
    std::process::exit(1)
}

/// Who a child becomes, made from its bootstrap: in the parent under fork (so
/// that the child writes as little memory as it can: every page it writes is
/// a copy-on-write fault), in the child otherwise.
pub(crate) struct Becoming {
    me: Arc<Me>,
    /// The name records carry (a copy made before a fork, not after).
    log_name: String,
    /// Whether SIGPIPE must be set to ignored (not already, as under fork
    /// from a Rust program).
    ignore_sigpipe: bool,
    start_method: StartMethod,
}

impl Bootstrap {
    pub(crate) fn becoming(&self) -> Becoming {
        Becoming {
            me: Arc::new(Me {
                name: self.name.clone(),
                identity: self.identity.clone(),
                daemon: self.daemon,
                authkey: self.authkey.clone().into(),
                parent: Some((self.parent_name.clone(), self.parent_pid)),
            }),
            log_name: self.name.clone(),
            ignore_sigpipe: !sys::process::sigpipe_ignored(),
            start_method: self.start_method,
        }
    }
}

/// A child's life: become the child, run the target, report, exit.
pub(crate) fn child_main(
    boot: Bootstrap,
    becoming: Becoming,
    entry: (Runner, usize),
    fds: ChildFds,
    how: StartMethod,
    leave: Leave,
) -> ! {
    let logger = mp_logging::get_logger();
    if boot.log_stderr {
        mp_logging::log_to_stderr(None);
    }
    if let Some(level) = mp_logging::Level::from_number(boot.log_level) {
        logger.set_level(level);
    }
    logger.set_propagate(boot.log_propagate);
    mp_logging::set_process_name(becoming.log_name);
    if becoming.ignore_sigpipe {
        sys::process::ignore_sigpipe();
    }
    if how == StartMethod::Forkserver {
        sys::process::default_sigint();
    }
    {
        let mut state = runtime::state();
        runtime::become_child(&mut state, becoming.me, becoming.start_method);
    }
    let ChildFds {
        alive,
        result,
        args,
    } = fds;
    if boot.daemon {
        watch_parent(alive);
    } else {
        // Kept open for the life of the child, as CPython's parent sentinel.
        std::mem::forget(alive);
    }
    if how != StartMethod::Fork {
        // A fork child keeps its parent's hook: setting one takes a lock that
        // another thread of the parent may have held at the fork.
        install_panic_hook(boot.name.clone());
    }

    logger.info("child process calling self.run()");
    let (runner, target) = entry;
    if args.len() != boot.fd_types.len() {
        die("the bootstrap names the types of another number of descriptors than arrived");
    }
    let args: Vec<_> = args
        .into_iter()
        .zip(boot.fd_types.iter().copied())
        .collect();
    IN_TARGET.with(|t| t.set(true));
    #[allow(unsafe_code)]
    // SAFETY: `entry` is the runner and target the parent paired (its own
    // addresses under fork; under spawn and forkserver the offsets it sent
    // on the channel it set up, found again in this same executable by
    // `runners::resolve`).
    let ran = std::panic::catch_unwind(|| unsafe { runner(target, &boot.args, args) });
    IN_TARGET.with(|t| t.set(false));
    let (code, outcome) = match ran {
        Ok(Ok(Some(value))) => (0, Some(Outcome::Returned(value))),
        Ok(Ok(None)) => (0, None),
        Ok(Err(e)) => {
            let message = format!("Process {}: {e}", boot.name);
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("{message}\n").as_bytes(),
            );
            (1, Some(Outcome::Failed(e.to_string())))
        }
        Err(payload) => match payload.downcast::<ExitRequest>() {
            Ok(exit) => (exit.0, None),
            Err(payload) => (
                1,
                Some(Outcome::Panicked(crate::function::panic_message(&*payload))),
            ),
        },
    };
    if let (Some(fd), Some(outcome)) = (result, outcome) {
        let _ = Connection::new(fd, false, true, false).send(&outcome);
    }
    finish(code, leave)
}

/// The end of a child: Python's exit function, the last log line, flushed
/// output, and the exit code.
pub(crate) fn finish(code: i32, leave: Leave) -> ! {
    runtime::exit_function();
    mp_logging::get_logger().info(format_args!("process exiting with exitcode {code}"));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    match leave {
        Leave::Immediately => sys::process::exit_immediately(code),
        Leave::Normally => std::process::exit(code),
    }
}

/// Prints `Process <name>:` before the usual panic report, as CPython prints
/// `Process <name>:` before a child's traceback.
fn install_panic_hook(name: String) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("Process {name}:\n").as_bytes(),
        );
        previous(info);
    }));
}

/// A daemon child ends when its parent dies, however the parent dies: a
/// thread waits for end of file on the parent's alive pipe, then sends this
/// process SIGTERM (and SIGKILL if that was not enough).
fn watch_parent(alive: OwnedFd) {
    let spawned = std::thread::Builder::new()
        .name("mp-parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if sys::fd::readable(alive.as_fd(), None).unwrap_or(true) {
                sys::process::raise(libc::SIGTERM);
                std::thread::sleep(Duration::from_secs(5));
                sys::process::raise(libc::SIGKILL);
            }
        });
    if spawned.is_err() {
        mp_logging::get_logger()
            .warning("could not start the thread that ends this daemon with its parent");
    }
}

#[cfg(test)]
mod tests;
