//! What every copy of the executable that a process starts has in common:
//! the variables that tell it its role, the way it is started, how it ends
//! when its bootstrap is not what a parent sets up, and the record of a
//! running helper (the fork server, the resource tracker).

use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, OsContext, Result};
use crate::sys;

/// Tells a spawned copy of the executable that fd 3 holds its bootstrap.
pub(crate) const ENV_CHILD: &str = "__MP_PROC_CHILD";
/// Tells a spawned copy of the executable to be a fork server on fd 3.
pub(crate) const ENV_FORKSERVER: &str = "__MP_PROC_FORKSERVER";
/// Tells a spawned copy of the executable to be a resource tracker on fd 3.
pub(crate) const ENV_TRACKER: &str = "__MP_PROC_TRACKER";
/// Every variable above: none is passed on to a process's own children.
pub(crate) const ENV_ALL: &[&str] = &[ENV_CHILD, ENV_FORKSERVER, ENV_TRACKER];

/// What a spawned copy of the executable was started to be.
#[derive(Copy, Clone)]
pub(crate) enum Role {
    Child,
    Forkserver,
    Tracker,
}

impl Role {
    pub(crate) fn variable(self) -> &'static str {
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

/// A running helper process (the fork server, the resource tracker): its
/// pid and this process's end of its channel. Dropping it closes the
/// channel, which ends the helper, and reaps it if it already has.
pub(crate) struct Helper {
    pid: u32,
    channel: OwnedFd,
    /// Reaped by [`Helper::kill_and_reap`]: its pid may be another
    /// process's by now, so the drop reaps nothing.
    reaped: AtomicBool,
}

impl Helper {
    /// Starts a helper: this executable again, with `fd` as its fd 3 and
    /// the variable of `role` telling it what to be, no stdio of the
    /// program's; `ours` is this process's end of the channel. Refused
    /// under secure execution (`what` is refused, `instead` works).
    pub(crate) fn start(
        role: Role,
        fd: RawFd,
        ours: OwnedFd,
        marker: &str,
        refused: (&'static str, &'static str),
    ) -> Result<Helper> {
        refuse_if_secure(refused.0, refused.1)?;
        let pid = sys::spawn::spawn_self(&sys::spawn::SpawnPlan {
            fds: &[fd],
            env: (role.variable(), "3".to_owned()),
            env_remove: ENV_ALL,
            marker,
            null_output: true,
        })
        .os(match role {
            Role::Forkserver => "start the fork server",
            Role::Tracker => "start the resource tracker",
            Role::Child => "start a child",
        })?;
        Ok(Helper {
            pid,
            channel: ours,
            reaped: AtomicBool::new(false),
        })
    }

    /// Ends the helper for sure: killed unless it has exited, and reaped by
    /// a blocking wait (which SIGKILL bounds), never left a zombie by a
    /// non-blocking reap that ran before it ended. Once; its drop then
    /// reaps nothing.
    pub(crate) fn kill_and_reap(&self) {
        if self.reaped.swap(true, Ordering::AcqRel) {
            return;
        }
        // Our unreaped child until reaped here: its pid is not reused
        // before (one that another waiter already reaped is ECHILD here).
        if let Ok(None) = sys::process::try_reap(self.pid()) {
            let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// This process's end of the helper's channel.
    pub(crate) fn channel(&self) -> &OwnedFd {
        &self.channel
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !*self.reaped.get_mut() {
            let _ = sys::process::try_reap(self.pid);
        }
    }
}

/// `Err(Error::SecureExecution)` in a setuid or setcap process, which must
/// not run its own executable again: `what` is refused, `instead` works.
pub(crate) fn refuse_if_secure(what: &'static str, instead: &'static str) -> Result<()> {
    if sys::process::secure_execution() {
        return Err(Error::SecureExecution { what, instead });
    }
    Ok(())
}

/// Whether this process was spawned to run a target that has not run (its
/// bootstrap did not run before `main`). Never under secure execution, where
/// the variables mean nothing.
pub(crate) fn bootstrap_pending() -> bool {
    ENV_ALL.iter().any(|v| std::env::var_os(v).is_some()) && !sys::process::secure_execution()
}

/// The end of a process whose bootstrap is not what a parent sets up (a
/// wrong descriptor, a failed read, garbage): one line on stderr and exit
/// code 1, before anything else runs.
pub(crate) fn fatal(role: Role, what: &str) -> ! {
    die(&format!("{} failed: {what}", role.what()))
}

/// One line on stderr, exit code 1.
pub(crate) fn die(message: &str) -> ! {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("mp-proc: {message}\n").as_bytes(),
    );
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper whose channel broke while it still runs (or has not exited
    /// yet) is killed and reaped: no process, no zombie is left (a
    /// non-blocking reap left it running, then a zombie).
    #[test]
    fn kill_and_reap_ends_a_running_helper_for_sure() {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep");
        let (ours, _theirs) = sys::fd::socket_pair(true).unwrap();
        let helper = Helper {
            pid: child.id(),
            channel: ours,
            reaped: AtomicBool::new(false),
        };
        assert_eq!(
            sys::process::try_reap(helper.pid()).unwrap(),
            None,
            "running"
        );
        helper.kill_and_reap();
        let pid = nix::unistd::Pid::from_raw(helper.pid() as i32);
        assert_eq!(
            nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
            Err(nix::errno::Errno::ECHILD),
            "reaped"
        );
        helper.kill_and_reap(); // once: nothing more to do
        drop((helper, child));
    }
}
