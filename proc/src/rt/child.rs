//! A child's life: what it receives from its parent (its bootstrap and
//! descriptors), becoming the child, running the target, reporting, exiting.
//! Every start method ends here: fork in the parent's copy, spawn after the
//! constructor reads the bootstrap, forkserver in the server's fork.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::method::StartMethod;
use crate::rt::helper::die;
use crate::rt::runtime::{self, Me};
use crate::sys;
use crate::sys::spawn::Channel;
use crate::wire::payload;
use crate::wire::runners::Runner;

/// Everything a child needs besides its descriptors.
#[derive(Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    /// Empty over a link that must not carry it (a stream launcher's): the
    /// agent then reads the job's key file (`rt::keyfile`).
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

/// Whether a panic payload is [`exit`](crate::exit) unwinding a child's
/// target: code that catches panics (a pool worker) must let it go on.
pub fn is_exit_request(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.is::<ExitRequest>()
}

/// The exit code a panic payload asks for: `n` for [`exit(n)`](crate::exit)
/// unwinding, `None` for a panic (a caller reports those as 1, as a child's
/// exit code).
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
/// assert_eq!(mp_proc::plumbing::exit_request_code(&*p), None);
/// ```
pub fn exit_request_code(payload: &(dyn std::any::Any + Send)) -> Option<i32> {
    payload.downcast_ref::<ExitRequest>().map(|r| r.0)
}

/// The message of a panic payload (a `&str` or a `String`, as `panic!`
/// makes them), for code that catches panics and reports them.
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
/// assert_eq!(mp_proc::plumbing::panic_message(&*p), "boom 1");
/// ```
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

thread_local! {
    /// Set on the thread that runs the target, where `exit(n)` may unwind.
    pub(crate) static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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
    payload::decode(&bytes).map_err(|e| format!("the bootstrap does not decode: {e}"))
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
    let ChildFds {
        alive,
        result,
        args,
    } = fds;
    // Kept open for the life of the child: CPython's parent sentinel, which
    // `parent_process()` watches.
    let alive = Arc::new(alive);
    {
        let mut state = runtime::state();
        runtime::become_child(
            &mut state,
            becoming.me,
            becoming.start_method,
            alive.clone(),
        );
    }
    // A process an agent forked for another host ends with its agent, as
    // a daemon with its parent, however the agent ends (a hangup of its
    // ssh session included). Its own children are ordinary.
    if boot.daemon || ENDS_WITH_PARENT.swap(false, std::sync::atomic::Ordering::Relaxed) {
        watch_parent(alive);
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
            Err(payload) => (1, Some(Outcome::Panicked(panic_message(&*payload)))),
        },
    };
    if let (Some(fd), Some(outcome)) = (result, outcome) {
        // One frame, as the parent's JoinHandle reads it with a Connection.
        let mut frame = Vec::new();
        if crate::wire::frame::append(&outcome, &mut frame).is_ok() {
            let _ = crate::sys::fd::write_all(fd.as_fd(), &frame, false);
        }
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
pub(crate) fn install_panic_hook(name: String) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("Process {name}:\n").as_bytes(),
        );
        previous(info);
    }));
}

/// Set by a remote agent before it forks its process: the process ends
/// when the agent does (see [`watch_parent`]).
pub(crate) static ENDS_WITH_PARENT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// A daemon child ends when its parent dies, however the parent dies: a
/// thread waits for end of file on the parent's alive pipe, then sends this
/// process SIGTERM (and SIGKILL if that was not enough).
fn watch_parent(alive: Arc<OwnedFd>) {
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
