//! The resource tracker: a helper process that unlinks the named shared
//! memory a process created and did not unlink, once that process is gone,
//! however it ended (CPython's `resource_tracker`, which leaks nothing itself).
//!
//! The program writes `R<name>` / `U<name>` lines (one `write` each, under
//! `PIPE_BUF`, so atomic) to a pipe whose only writer it is. End of file on the
//! pipe is the program's death; the tracker then unlinks what is left and
//! exits. It ignores SIGINT and SIGTERM so that Ctrl-C cannot stop the
//! clean-up, and holds no stdio of the program's.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::error::{OsContext, Result};
use crate::rt::helper::{self, Helper, Role};
use crate::rt::runtime::{self, State};
use crate::sys;

/// This process's tracker (its pid and the write end of its pipe), started
/// on first use.
fn tracker(state: &mut State) -> Result<&Helper> {
    if state.tracker.is_none() {
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
        state.tracker = Some(tracker);
    }
    Ok(state.tracker.as_ref().expect("just set"))
}

fn send(op: u8, name: &str) -> Result<()> {
    let mut line = Vec::with_capacity(name.len() + 2);
    line.push(op);
    line.extend_from_slice(name.as_bytes());
    line.push(b'\n');
    let mut state = runtime::state();
    let t = tracker(&mut state)?;
    sys::fd::write_all(t.channel().as_fd(), &line, false).os("write to the resource tracker")
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
