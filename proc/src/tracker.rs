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

use crate::bootstrap;
use crate::error::{OsContext, Result};
use crate::runtime::{self, State};
use crate::sys;

/// This process's tracker: its pid and the write end of its pipe.
pub(crate) struct Tracker {
    pid: u32,
    pipe: OwnedFd,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = sys::process::try_reap(self.pid);
    }
}

fn tracker(state: &mut State) -> Result<&Tracker> {
    if state.tracker.is_none() {
        let (r, w) = sys::fd::pipe().os("pipe")?;
        let pid = bootstrap::spawn_helper(
            r.as_raw_fd(),
            bootstrap::ENV_TRACKER,
            "--multiprocessing-resource-tracker",
        )
        .os("start the resource tracker")?;
        state.tracker = Some(Tracker { pid, pipe: w });
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
    sys::fd::write_all(t.pipe.as_fd(), &line, false).os("write to the resource tracker")
}

/// Asks the tracker to unlink `name` when this process is gone.
pub(crate) fn register(name: &str) -> Result<()> {
    send(b'R', name)
}

/// Tells the tracker that `name` was unlinked.
pub(crate) fn unregister(name: &str) -> Result<()> {
    send(b'U', name)
}

/// The tracker's loop. Never returns.
pub(crate) fn serve(pipe: OwnedFd) -> ! {
    sys::process::ignore_sigint();
    sys::process::ignore_sigterm();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sys::fd::read(pipe.as_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let name = String::from_utf8_lossy(&line[1..line.len() - 1]).into_owned();
            match line[0] {
                b'R' => {
                    names.insert(name);
                }
                b'U' => {
                    names.remove(&name);
                }
                _ => {}
            }
        }
    }
    for name in names {
        let _ = sys::shm::shm_unlink(&name);
    }
    std::process::exit(0)
}
