//! The fork server: a copy of the executable, started by spawn, that never
//! runs user code or threads and forks a child on every request. Forking from
//! it is fast and safe however many threads the program runs.
//!
//! The program talks to it over a private seqpacket socket pair (no name in
//! the filesystem, so no other user can reach it). A request is one message
//! carrying descriptors: a reply socket, the child's bootstrap (a memfd), the
//! program's stdout and stderr, and the child's own descriptors. The server
//! forks, answers with the child's pid and a pidfd, and writes the child's
//! exit code to the reply socket when the child ends, so the reply socket is
//! the child's sentinel. The server holds no copy of the program's stdout or
//! stderr between requests and exits when the program does.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::error::{Error, OsContext, Result};
use crate::method::StartMethod;
use crate::rt::child::{self, ChildFds, Leave};
use crate::rt::helper::{self, Helper, Role};
use crate::rt::runtime::{self, State};
use crate::sys;
use crate::wire::runners;

/// The running fork server (the program's end of its control socket),
/// started on first use.
pub(crate) fn client(state: &mut State) -> Result<Arc<Helper>> {
    if let Some(client) = &state.forkserver {
        return Ok(client.clone());
    }
    let (ours, theirs) = sys::fd::socket_pair(true).os("socketpair")?;
    let client = Arc::new(Helper::start(
        Role::Forkserver,
        theirs.as_raw_fd(),
        ours,
        "--multiprocessing-forkserver",
        ("forkserver", "use fork"),
    )?);
    state.forkserver = Some(client.clone());
    Ok(client)
}

/// Replaces a dead fork server (if nobody replaced it yet).
pub(crate) fn restart(dead: &Arc<Helper>) -> Result<Arc<Helper>> {
    let mut state = runtime::state();
    if let Some(current) = &state.forkserver
        && !Arc::ptr_eq(current, dead)
    {
        return Ok(current.clone());
    }
    let _ = sys::process::try_reap(dead.pid());
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
    fn fatal(what: &str) -> ! {
        helper::fatal(Role::Forkserver, what)
    }
    if let Err(e) = sys::process::hold_sigint() {
        fatal(&format!("cannot hold SIGINT: {e}"));
    }
    let sigchld = match sys::process::sigchld_fd() {
        Ok(fd) => fd,
        Err(e) => fatal(&format!("cannot watch its children: {e}")),
    };
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
