//! A fork server whose channel broke while it has not exited: the next
//! forkserver start replaces it, and the old one is ended and reaped for
//! sure (a non-blocking reap left it running, or a zombie when it had not
//! exited yet).

use std::os::fd::{FromRawFd, OwnedFd};

use mp_proc::{Process, StartMethod};
use mp_testkit::{exists, guard, zombies};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::scenarios::forkserver_pid;

fn nothing(_: ()) {}

/// A copy of descriptor `fd` of process `pid` (our child: ptrace may).
fn steal_fd(pid: u32, fd: i32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags; its result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd is a descriptor just opened here, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&pidfd);
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags; its
    // result is checked.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, raw, fd, 0u32) };
    assert!(
        copy >= 0,
        "pidfd_getfd: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor of this process, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(copy as i32) }
}

#[test]
fn a_fork_server_whose_channel_broke_is_killed_and_reaped_on_restart() {
    let _g = guard();
    let server = forkserver_pid().expect("the guard started the fork server");
    let pid = Pid::from_raw(server as i32);
    // Stopped, it cannot end by itself at the end of file on its channel:
    // alive while its channel is broken, as a server that has not exited
    // yet is.
    kill(pid, Signal::SIGSTOP).unwrap();
    assert!(matches!(
        waitpid(pid, Some(WaitPidFlag::WUNTRACED)),
        Ok(WaitStatus::Stopped(..))
    ));
    // The server's channel is its fd 3: shut down, our requests fail.
    let channel = steal_fd(server, 3);
    nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(&channel),
        nix::sys::socket::Shutdown::Both,
    )
    .unwrap();
    drop(channel);
    // The next start finds the server dead and starts another.
    let mut p = Process::new(nothing, ()).start_method(StartMethod::Forkserver);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let (alive, zombie) = (exists(server), zombies().contains(&server));
    if alive || zombie {
        // Not left behind for the next tests.
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    assert!(!alive, "the old fork server {server} still runs");
    assert!(!zombie, "the old fork server {server} is a zombie");
}
