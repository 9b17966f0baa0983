//! The fork server: a copy of the executable, started by spawn, that runs no
//! user code but the program's preload functions and no threads, and forks a
//! child on every request. Forking from it is fast and safe however many
//! threads the program runs.
//!
//! The program talks to it over a private seqpacket socket pair (no name in
//! the filesystem, so no other user can reach it). Its first message is the
//! preload list (always sent, maybe empty): the functions' offsets in the
//! executable and a socket for the server's report on them; the server runs
//! them once, reports, then serves. A request is one message
//! carrying descriptors: a reply socket, the child's bootstrap (a memfd), the
//! program's stdout and stderr, and the child's own descriptors. The server
//! forks, answers with the child's pid and a pidfd, and writes the child's
//! exit code to the reply socket when the child ends, so the reply socket is
//! the child's sentinel. The server holds no copy of the program's stdout or
//! stderr between requests and exits when the program does.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Error, OsContext, Result};
use crate::method::StartMethod;
use crate::rt::child::{self, ChildFds, Leave};
use crate::rt::helper::{self, Helper, Role};
use crate::rt::runtime::{self, State};
use crate::sys;
use crate::wire::{payload, runners};

/// At most this many preload functions (one control message carries them).
const MAX_PRELOAD: usize = 64;
/// The largest preload message the server reads: `P`, then the encoded
/// fingerprint and offsets (64 offsets take at most 650 bytes).
const PRELOAD_MESSAGE: usize = 1024;
/// The longest line of the server's report (a panic message is cut there).
const REPORT_LINE: usize = 300;
/// The largest report the program reads: a line per function and one more.
const REPORT_MAX: usize = (MAX_PRELOAD + 1) * (REPORT_LINE + 8) + 16;

/// Python's `set_forkserver_preload`: functions that every fork server this
/// process starts runs once, in order, before it serves, so that each child
/// it forks starts with what they set up (statics, loaded data, warmed
/// caches), without paying for it.
///
/// A preload function that panics does not break the server: the server
/// goes on with the next one and serves, and the program logs a warning
/// (`fork server: preload function N panicked: ...`, at the first start
/// the server answers). CPython 3.15's `on_error='warn'`: a failed preload
/// is never silent and never ends the program. (Built with `panic = "abort"`,
/// such a function ends the server instead, and starts under forkserver fail
/// with [`Error::ForkserverDied`].)
///
/// The functions run in the fork server, before its `main`, with no stdout
/// or stderr (`/dev/null`): they must not start threads (the server would
/// fork from a multi-threaded process; the program is warned) or processes
/// (a start there is [`Error::Invalid`]: under forkserver it would start a
/// fork server running the same preloads, without end).
/// They never run in this process, nor in spawn or fork children. The first
/// start under forkserver waits for them (the server serves once they have
/// run); a server started again after its death runs them again. A child
/// started with fork inherits the list, for a fork server of its own; spawn
/// and forkserver children start with none.
///
/// Errors: [`Error::Invalid`] when this process's fork server already runs
/// (CPython stores the list for the next server; a running server is not
/// restarted here, which would lose its running children's exit codes:
/// set the list before the first forkserver start), when there are more
/// than 64 functions, or when one does not live in the main executable
/// (the server finds functions there only).
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use mp_proc::{Process, StartMethod, pipe};
///
/// static WARM: AtomicBool = AtomicBool::new(false);
///
/// fn warm_up() {
///     WARM.store(true, Ordering::Relaxed); // load a model, fill a cache, ...
/// }
///
/// fn report(conn: mp_proc::Connection) {
///     conn.send(&WARM.load(Ordering::Relaxed)).unwrap();
/// }
///
/// mp_proc::set_forkserver_preload(&[warm_up])?;
/// let (here, there) = pipe(false)?;
/// let mut p = Process::new(report, there).start_method(StartMethod::Forkserver);
/// p.start()?;
/// assert!(here.recv::<bool>()?, "forked from a warmed-up server");
/// assert_eq!(p.join()?, 0);
/// assert!(!WARM.load(Ordering::Relaxed), "not run in this process");
/// assert!(mp_proc::set_forkserver_preload(&[]).is_err(), "the server runs");
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn set_forkserver_preload(fns: &[fn()]) -> Result<()> {
    let what = "set the forkserver preload";
    if fns.len() > MAX_PRELOAD {
        return Err(Error::Invalid {
            what,
            reason: format!(
                "{} functions: the fork server takes at most {MAX_PRELOAD}",
                fns.len()
            ),
        });
    }
    for (i, f) in fns.iter().enumerate() {
        if let Err(object) = sys::image::check_in_main_image(*f as usize) {
            return Err(Error::Invalid {
                what,
                reason: format!(
                    "preload function {i} lives in {object}, not in the executable the fork \
                     server runs: only functions of the main executable can be preloaded"
                ),
            });
        }
    }
    let mut state = runtime::state();
    if state.forkserver.is_some() {
        return Err(Error::Invalid {
            what,
            reason: "the fork server already runs: set the list before the first start under \
                     forkserver (restarting the server would lose its children's exit codes)"
                .to_owned(),
        });
    }
    state.preload = fns.to_vec();
    Ok(())
}

/// The running fork server (the program's end of its control socket),
/// started on first use.
pub(crate) fn client(state: &mut State) -> Result<Arc<Helper>> {
    if let Some(client) = &state.forkserver {
        return Ok(client.clone());
    }
    let (ours, theirs) = sys::fd::socket_pair(true).os("socketpair")?;
    // Every descriptor first: a failure once the server runs must end it.
    let (report, report_theirs) = sys::fd::socket_pair(true).os("socketpair")?;
    let server = Helper::start(
        Role::Forkserver,
        theirs.as_raw_fd(),
        ours,
        "--multiprocessing-forkserver",
        ("forkserver", "use fork"),
    )?;
    if let Err(e) = send_preload(&server, &state.preload, report_theirs) {
        abandon(server);
        return Err(e);
    }
    state.preload_report = Some(report);
    let client = Arc::new(server);
    state.forkserver = Some(client.clone());
    Ok(client)
}

/// Ends a server that was started but cannot serve (its first message
/// was not sent): killed and reaped now, never left a zombie (dropped, it
/// would end at the end of file on its channel, after the drop's
/// non-blocking reap).
fn abandon(server: Helper) {
    server.kill_and_reap();
}

/// Sends a new server its first message, the preload list (maybe empty),
/// with `report_to`, the socket its report goes back on.
fn send_preload(server: &Helper, preload: &[fn()], report_to: OwnedFd) -> Result<()> {
    let offsets: Vec<i64> = preload
        .iter()
        .map(|f| sys::image::offset_of(*f as usize))
        .collect();
    let mut message = vec![b'P'];
    message.extend(payload::encode(&(sys::image::fingerprint(), offsets))?);
    match sys::scm::send_with_fds(server.channel().as_fd(), &message, &[report_to.as_raw_fd()]) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)
            ) =>
        {
            Err(Error::ForkserverDied {
                reason: "it ended before it read its preload list",
            })
        }
        Err(e) => Err(Error::os("send to the fork server", e)),
    }
}

/// Logs the running server's report on its preload functions (a warning a
/// line), once. Called after a start the server answered: it wrote the
/// report before it read that request, so the report is there.
pub(crate) fn log_preload_report() {
    let Some(report) = runtime::state().preload_report.take() else {
        return;
    };
    if !matches!(
        sys::fd::readable(report.as_fd(), Some(Duration::ZERO)),
        Ok(true)
    ) {
        return;
    }
    let mut buf = vec![0u8; REPORT_MAX];
    let lines: Vec<String> = match sys::scm::recv_with_fds(report.as_fd(), &mut buf) {
        Ok((n, _)) if n > 0 => payload::decode(&buf[..n]).unwrap_or_default(),
        _ => return,
    };
    let logger = mp_logging::get_logger();
    for line in lines {
        logger.warning(format_args!("fork server: {line}"));
    }
}

/// Replaces a dead fork server (if nobody replaced it yet).
pub(crate) fn restart(dead: &Arc<Helper>) -> Result<Arc<Helper>> {
    let mut state = runtime::state();
    if let Some(current) = &state.forkserver
        && !Arc::ptr_eq(current, dead)
    {
        return Ok(current.clone());
    }
    // Its channel broke, but it may not have exited yet (a non-blocking
    // reap now could miss it and leave a zombie), or not be ending at all.
    dead.kill_and_reap();
    state.forkserver = None;
    client(&mut state)
}

/// Asks the fork server for a child. `fds` = bootstrap memfd, stdout,
/// stderr, then the child's descriptors. Returns its pid, its status socket
/// and its pidfd.
pub(crate) fn request(server: &Helper, fds: &[RawFd]) -> Result<(u32, OwnedFd, Option<OwnedFd>)> {
    // One message carries them all: more is the caller's argument, not an
    // OS failure (a child's args with hundreds of handles).
    if fds.len() + 1 > sys::scm::MAX_FDS {
        return Err(Error::Invalid {
            what: "start a process under forkserver",
            reason: format!(
                "the child needs {} descriptors (those in its args and its own set-up): the fork \
                 server takes at most {} per child",
                fds.len(),
                sys::scm::MAX_FDS - 1
            ),
        });
    }
    let (reply, server_end) = sys::fd::socket_pair(false).os("socketpair")?;
    let mut all = vec![server_end.as_raw_fd()];
    all.extend_from_slice(fds);
    match sys::scm::send_with_fds(server.channel().as_fd(), b"F", &all) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)
            ) =>
        {
            return Err(Error::ForkserverDied {
                reason: "its socket is closed",
            });
        }
        Err(e) => return Err(Error::os("send to the fork server", e)),
    }
    drop(server_end);
    let mut buf = [0u8; 8];
    let (n, mut got) =
        sys::scm::recv_with_fds(reply.as_fd(), &mut buf).os("read from the fork server")?;
    if n == 0 {
        return Err(Error::ForkserverDied {
            reason: "it closed the request without an answer",
        });
    }
    if n != 8 {
        return Err(Error::ForkserverDied {
            reason: "it sent a short answer",
        });
    }
    let tag = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
    let value = u32::from_ne_bytes(buf[4..].try_into().expect("4 bytes"));
    if tag != 0 {
        return Err(Error::os(
            "fork (in the fork server)",
            std::io::Error::from_raw_os_error(value as i32),
        ));
    }
    Ok((value, reply, got.pop()))
}

/// The server's loop. Never returns. It ends with its program (end of file
/// on the control socket); anything on that socket that the program does not
/// send (a failed read, a malformed request) ends it at once with a message.
pub(crate) fn serve(control: OwnedFd) -> ! {
    if let Err(e) = sys::process::hold_sigint() {
        fatal(&format!("cannot hold SIGINT: {e}"));
    }
    let sigchld = match sys::process::sigchld_fd() {
        Ok(fd) => fd,
        Err(e) => fatal(&format!("cannot watch its children: {e}")),
    };
    preload(&control);
    let mut waiting: HashMap<u32, OwnedFd> = HashMap::new();
    let mut buf = [0u8; 16];
    loop {
        let ready = match sys::fd::wait_readable(&[control.as_fd(), sigchld.as_fd()], None) {
            Ok(r) => r,
            Err(e) => fatal(&format!("cannot wait for requests: {e}")),
        };
        if ready[1] {
            while let Ok(Some(_)) = sigchld.read_signal() {}
            while let Ok(Some((pid, code))) = sys::process::reap_any() {
                if let Some(reply) = waiting.remove(&pid) {
                    let _ = sys::fd::write_all(reply.as_fd(), &code.to_ne_bytes(), true);
                }
            }
        }
        if ready[0] {
            let (n, fds) = match sys::scm::recv_with_fds(control.as_fd(), &mut buf) {
                Ok(r) => r,
                Err(e) => fatal(&format!("cannot read a request: {e}")),
            };
            if n == 0 && fds.is_empty() {
                // The program is gone. Its children go on (daemons end themselves).
                std::process::exit(0);
            }
            if &buf[..n] != b"F" || fds.len() < 5 {
                fatal(&format!(
                    "a request that its program does not send ({n} bytes, {} descriptors)",
                    fds.len()
                ));
            }
            if let Some((pid, reply)) = fork_child(fds) {
                waiting.insert(pid, reply);
            }
        }
    }
}

/// Set while this process, a fork server, runs its preload functions.
static PRELOADING: AtomicBool = AtomicBool::new(false);

/// An error if this process is a fork server running its preload
/// functions: a process started there would be the server's child, and
/// under forkserver it would start a fork server of its own, which runs the
/// same preloads and starts another, without end.
pub(crate) fn refuse_in_preload() -> Result<()> {
    if PRELOADING.load(Ordering::Relaxed) {
        return Err(Error::Invalid {
            what: "start a process",
            reason: "from a forkserver preload function (it runs in the fork server, which \
                     would start a fork server of its own running the same preloads, without \
                     end): start processes from the program"
                .to_owned(),
        });
    }
    Ok(())
}

/// The end of a server whose program sent what it does not send.
fn fatal(what: &str) -> ! {
    helper::fatal(Role::Forkserver, what)
}

/// The server's first message: its program's preload functions, run once,
/// in order; the report (a line per failure) goes back on the socket that
/// came with them. Anything else ends the server, as a malformed request
/// does; end of file (the program is gone) ends it quietly.
#[allow(unsafe_code)] // a call of sys's unsafe fn_from_addr, with its SAFETY
fn preload(control: &OwnedFd) {
    let mut buf = [0u8; PRELOAD_MESSAGE + 1];
    let (n, mut fds) = match sys::scm::recv_with_fds(control.as_fd(), &mut buf) {
        Ok(r) => r,
        Err(e) => fatal(&format!("cannot read its preload list: {e}")),
    };
    if n == 0 && fds.is_empty() {
        std::process::exit(0);
    }
    if n > PRELOAD_MESSAGE || buf[0] != b'P' || fds.len() != 1 {
        fatal(&format!(
            "a first message that its program does not send ({n} bytes, {} descriptors)",
            fds.len()
        ));
    }
    let report_to = fds.pop();
    let (fingerprint, offsets): ((u64, u64, i64), Vec<i64>) = match payload::decode(&buf[1..n]) {
        Ok(list) => list,
        Err(e) => fatal(&format!("its preload list does not decode: {e}")),
    };
    if offsets.len() > MAX_PRELOAD {
        fatal(&format!("{} preload functions", offsets.len()));
    }
    let mut report = Vec::new();
    PRELOADING.store(true, Ordering::Relaxed);
    for (i, offset) in offsets.into_iter().enumerate() {
        let Some(addr) = sys::image::function_at(offset, fingerprint) else {
            report.push(format!(
                "preload function {i} is not in this executable (it changed since the program \
                 started): skipped"
            ));
            continue;
        };
        // SAFETY: `addr` is where the program found an `fn()` (its
        // `set_forkserver_preload` takes only those), sent as its offset on
        // this private socket (which only the program holds, as it holds the
        // bootstrap memfds whose targets this server's children call), found
        // again in this same executable (fingerprint and main image checked).
        let f: fn() = unsafe { sys::image::fn_from_addr(addr) };
        if let Err(panic) = std::panic::catch_unwind(f) {
            report.push(format!(
                "preload function {i} panicked: {}",
                child::panic_message(&*panic)
            ));
        }
    }
    // Its children (forked from now on) start processes as any process does.
    PRELOADING.store(false, Ordering::Relaxed);
    if !sys::process::single_threaded() && sys::process::thread_count() > 1 {
        report.push(
            "a preload function left a thread running: every child is forked from a \
             multi-threaded process, where a lock that thread held stays held"
                .to_owned(),
        );
    }
    for line in &mut report {
        if line.len() > REPORT_LINE {
            let mut end = REPORT_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
    }
    if let (Some(to), Ok(bytes)) = (report_to, payload::encode(&report)) {
        let _ = sys::scm::send_with_fds(to.as_fd(), &bytes, &[]);
    }
}

/// Forks one child for a request (at least 5 descriptors); returns its pid
/// and reply socket.
#[allow(unsafe_code)] // a call of sys's unsafe fork, with its SAFETY
fn fork_child(mut fds: Vec<OwnedFd>) -> Option<(u32, OwnedFd)> {
    let rest = fds.split_off(4);
    let stderr = fds.pop()?;
    let stdout = fds.pop()?;
    let memfd = fds.pop()?;
    let reply = fds.pop()?;
    let mut keep: Vec<RawFd> = vec![0, 1, 2, memfd.as_raw_fd()];
    keep.extend(rest.iter().map(|fd| fd.as_raw_fd()));
    keep.sort_unstable();
    let plan = sys::process::ForkPlan {
        keep: &keep,
        stdio: [None, Some(stdout.as_raw_fd()), Some(stderr.as_raw_fd())],
        // The server blocks SIGCHLD and SIGINT: the child unblocks them at
        // once, so a SIGINT sent to it from now on is delivered.
        clear_mask: true,
    };
    // SAFETY: in the child only the descriptors in plan.keep are used (the
    // memfd and `rest`, taken by this frame); everything else (the control
    // socket, the signalfd, the waiting replies, this request's reply, stdout
    // and stderr objects, whose numbers are closed in the child) is never
    // used or dropped, as the child branch never returns: child_main ends the
    // process, and so does a bad request. The server runs one thread.
    match unsafe { sys::process::fork(&plan) } {
        Ok(sys::process::Forked::Child) => {
            let boot = child::read_bootstrap(memfd).and_then(|boot| {
                let fds = ChildFds::from_vec(rest, boot.has_result)
                    .ok_or("missing descriptors in the request")?;
                let entry = runners::resolve(boot.runner, boot.target, boot.fingerprint).ok_or(
                    "the executable changed since the program started: cannot find the target",
                )?;
                Ok((boot, fds, entry))
            });
            match boot {
                Ok((boot, fds, entry)) => {
                    let becoming = boot.becoming();
                    child::child_main(
                        boot,
                        becoming,
                        entry,
                        fds,
                        StartMethod::Forkserver,
                        Leave::Normally,
                    )
                }
                Err(e) => helper::fatal(Role::Child, &e),
            }
        }
        Ok(sys::process::Forked::Parent(pid)) => {
            let pidfd = sys::process::pidfd_open(pid).ok();
            let mut answer = [0u8; 8];
            answer[4..].copy_from_slice(&pid.to_ne_bytes());
            let pidfds: Vec<RawFd> = pidfd.iter().map(|fd| fd.as_raw_fd()).collect();
            let _ = sys::scm::send_with_fds(reply.as_fd(), &answer, &pidfds);
            Some((pid, reply))
        }
        Err(e) => {
            let mut answer = [0u8; 8];
            answer[..4].copy_from_slice(&1u32.to_ne_bytes());
            answer[4..]
                .copy_from_slice(&(e.raw_os_error().unwrap_or(libc::EIO) as u32).to_ne_bytes());
            let _ = sys::scm::send_with_fds(reply.as_fd(), &answer, &[]);
            None
        }
    }
}
