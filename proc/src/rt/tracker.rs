//! The resource tracker: a helper process that unlinks the named shared
//! memory a process created and did not unlink, once that process is gone,
//! however it ended (CPython's `resource_tracker`, which leaks nothing itself).
//!
//! The program writes `R<name>` / `U<name>` lines to a pipe whose only
//! writer it is (its children start their own trackers). End of file on the
//! pipe is the program's death; the tracker then unlinks what is left and
//! exits. It ignores SIGINT and SIGTERM so that Ctrl-C cannot stop the
//! clean-up, and holds no stdio of the program's.
//!
//! A tracker that dies anyway (SIGKILL, the OOM killer) is noticed at the
//! program's next register or unregister (its pipe has no reader) and
//! replaced, as CPython does; the program keeps its registered names, and the
//! new tracker gets them all, so a crash after the restart still cleans what
//! was created before it. Each process has its own tracker (a child starts
//! one on first use), so a tracker's death concerns its program alone.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, OsContext, Result};
use crate::mutex::lock;
use crate::rt::helper::{self, Helper, Role};
use crate::rt::runtime::{self, State};
use crate::sys;

/// The names this process has registered and not unregistered, kept here
/// too so that a tracker started after one has died gets them all (CPython's
/// new tracker knows only what is registered after it starts). `pid` is the
/// process they belong to: a forked child starts with its parent's copy,
/// which is not its own (the parent's tracker cleans those), and drops it.
/// Taken only with the runtime state locked (which fork holds), after it.
struct Tracked {
    pid: u32,
    names: BTreeSet<String>,
}

static TRACKED: Mutex<Tracked> = Mutex::new(Tracked {
    pid: 0,
    names: BTreeSet::new(),
});

/// This process's registered names (see [`Tracked`]).
fn tracked() -> MutexGuard<'static, Tracked> {
    let mut t = lock(&TRACKED);
    let me = std::process::id();
    if t.pid != me {
        t.pid = me;
        t.names.clear();
    }
    t
}

/// Starts a tracker and hands it every name in `names`.
fn start(names: &BTreeSet<String>) -> Result<Helper> {
    let (r, w) = sys::fd::pipe().os("pipe")?;
    let tracker = Helper::start(
        Role::Tracker,
        r.as_raw_fd(),
        w,
        "--multiprocessing-resource-tracker",
        (
            "the resource tracker",
            "SharedMemory is not available in such a process",
        ),
    )?;
    drop(r);
    let mut lines = Vec::new();
    for name in names {
        lines.push(b'R');
        lines.extend_from_slice(name.as_bytes());
        lines.push(b'\n');
    }
    // The tracker reads as it goes: a set larger than the pipe only waits.
    if let Err(e) = sys::fd::write_all(tracker.channel().as_fd(), &lines, false) {
        // Killed, not closed: end of file would make it unlink the names it
        // has read, which are in use.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(tracker.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        end(tracker);
        return Err(Error::os("write to the resource tracker", e));
    }
    Ok(tracker)
}

/// Closes this process's end of a dead tracker's pipe and reaps it (one
/// whose pipe has no reader has exited or is exiting: it holds its end until
/// it exits).
fn end(tracker: Helper) {
    let pid = tracker.pid();
    drop(tracker);
    let _ = sys::process::reap(pid);
}

/// Sends `line` (`op`, `name`, newline) to this process's tracker, starting
/// one if there is none or it has died (SIGKILL, OOM killer): the new one
/// gets every name still registered, this one included.
fn send(op: u8, name: &str) -> Result<()> {
    let mut state = runtime::state();
    let mut tracked = tracked();
    let before = match op {
        b'R' => !tracked.names.insert(name.to_owned()),
        _ => tracked.names.remove(name),
    };
    let sent = send_locked(&mut state, &tracked.names, op, name);
    if sent.is_err() {
        // Not registered (or not unregistered) after all.
        match op {
            b'R' if !before => tracked.names.remove(name),
            b'U' if before => tracked.names.insert(name.to_owned()),
            _ => false,
        };
    }
    sent
}

fn send_locked(state: &mut State, names: &BTreeSet<String>, op: u8, name: &str) -> Result<()> {
    let mut line = Vec::with_capacity(name.len() + 2);
    line.push(op);
    line.extend_from_slice(name.as_bytes());
    line.push(b'\n');
    // A dead tracker is noticed before writing (its pipe has no reader),
    // so that a program that does not ignore SIGPIPE is not killed by it, and
    // by EPIPE if it dies between the check and the write.
    if let Some(t) = &state.tracker
        && sys::fd::reader_gone(t.channel().as_fd())
    {
        end(state.tracker.take().expect("just seen"));
    }
    if let Some(t) = &state.tracker {
        match sys::fd::write_all(t.channel().as_fd(), &line, false) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                end(state.tracker.take().expect("just used"));
            }
            Err(e) => return Err(Error::os("write to the resource tracker", e)),
        }
    }
    if names.is_empty() && op == b'U' {
        // Nothing left to track: the next register starts a tracker.
        return Ok(());
    }
    // The new tracker gets every name, this one's line included (or, for an
    // unregister, left out).
    state.tracker = Some(start(names)?);
    Ok(())
}

/// Asks the tracker to unlink `name` when this process is gone.
pub(crate) fn register(name: &str) -> Result<()> {
    send(b'R', name)
}

/// Tells the tracker that `name` was unlinked.
pub(crate) fn unregister(name: &str) -> Result<()> {
    send(b'U', name)
}

/// The longest line the program writes: the op, a name of at most
/// [`MAX_NAME`] bytes, the newline.
const MAX_LINE: usize = MAX_NAME + 2;
/// The longest shared memory name `SharedMemory` accepts.
const MAX_NAME: usize = 250;

/// One line from the pipe: `R<name>` or `U<name>` with a name that
/// `SharedMemory` could have made (no `/`, no NUL, UTF-8, at most
/// [`MAX_NAME`] bytes).
fn parse_line(line: &[u8]) -> Option<(u8, &str)> {
    let (&op, name) = line.split_first()?;
    let name = std::str::from_utf8(name).ok()?;
    let valid = !name.is_empty() && name.len() <= MAX_NAME && !name.contains(['/', '\0']);
    (matches!(op, b'R' | b'U') && valid).then_some((op, name))
}

/// The tracker's loop. Never returns. End of file on the pipe is its
/// program's death: it then unlinks what is left and exits. Anything its
/// program does not write (a failed read, a line that is not `R<name>` or
/// `U<name>`) ends it at once with a message, unlinking nothing.
pub(crate) fn serve(pipe: OwnedFd) -> ! {
    fn fatal(what: &str) -> ! {
        helper::fatal(Role::Tracker, what)
    }
    sys::process::ignore_sigint();
    sys::process::ignore_sigterm();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sys::fd::read(pipe.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => fatal(&format!("cannot read its pipe: {e}")),
        }
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + end];
            match parse_line(line) {
                Some((b'R', name)) => {
                    names.insert(name.to_owned());
                }
                Some((_, name)) => {
                    names.remove(name);
                }
                None => fatal(&format!(
                    "a line its program does not write: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)])
                )),
            }
            start += end + 1;
        }
        pending.drain(..start);
        if pending.len() >= MAX_LINE {
            fatal(&format!(
                "a line longer than its program writes ({} bytes and no end)",
                pending.len()
            ));
        }
    }
    if !pending.is_empty() {
        fatal("an unfinished line before the end of its pipe");
    }
    for name in names {
        let _ = sys::shm::shm_unlink(&name);
    }
    std::process::exit(0)
}
