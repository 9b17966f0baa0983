//! Processes: fork, pidfds, reaping, signals.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// What a forked child gets.
pub(crate) struct ForkPlan<'a> {
    /// Descriptors the child keeps at their numbers. Must be sorted and must
    /// include 0, 1 and 2; everything else is closed in the child.
    pub(crate) keep: &'a [RawFd],
    /// Descriptors to install as the child's fd 0, 1 and 2 (`None`: keep the
    /// parent's). Each must be numbered 3 or higher.
    pub(crate) stdio: [Option<RawFd>; 3],
    /// Whether the forking thread blocks signals (the child's mask is then
    /// cleared). See [`signals_blocked`].
    pub(crate) clear_mask: bool,
}

/// Whether the calling thread blocks any signal. When it blocks none, a
/// forked child need not touch its mask (and its stack) to clear it.
pub(crate) fn signals_blocked() -> bool {
    // SAFETY: a zeroed sigset_t is a valid out-parameter; SIG_BLOCK with a
    // null set only reads the current mask.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old);
        (1..libc::SIGRTMAX()).any(|sig| libc::sigismember(&old, sig) == 1)
    }
}

/// Whether `SIGPIPE` is ignored in this process (a forked child inherits that).
pub(crate) fn sigpipe_ignored() -> bool {
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Which side of a fork this is.
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's pid.
    Parent(u32),
}

/// Forks. In the child, before this returns, only async-signal-safe calls are
/// made: `dup2` for the planned stdio, `close_range` for every descriptor not
/// in the plan, and an empty signal mask.
///
/// # Safety
///
/// In the child, every descriptor number outside `plan.keep` is closed, but
/// the objects of the parent that owned them (an `OwnedFd`, a `File`, a
/// connection, the runtime's state) are still in memory. The caller must
/// never use or drop any of them in the child: it would read, write or close
/// a number that may by then belong to a new descriptor. The child must end
/// with [`exit_immediately`] or `std::process::exit` (which run no
/// destructor of those objects), never by returning from the caller's frames.
///
/// If other threads ran in the parent, any lock one of them held (the
/// allocator's, stdio's, a mutex) stays held forever in the child; the
/// caller accepts that risk of deadlock, as the fork start method documents.
pub(crate) unsafe fn fork(plan: &ForkPlan<'_>) -> io::Result<Forked> {
    // SAFETY: the child branch below only makes async-signal-safe syscalls
    // before returning; what the caller does next is its contract (above).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw() as u32)),
        nix::unistd::ForkResult::Child => {
            // The plan's descriptors are ours to place and keep: the caller
            // treats every other number as closed (the contract above).
            for (target, source) in plan.stdio.iter().enumerate() {
                if let Some(source) = source {
                    // SAFETY: the stdio numbers are the plan's to replace; the
                    // caller uses no object of the parent's (the contract above).
                    unsafe { super::fd::dup2_raw(*source, target as RawFd) };
                }
            }
            // SAFETY: as above: the caller uses or drops no object that owned
            // a closed descriptor.
            unsafe { super::fd::close_all_except(plan.keep) };
            if plan.clear_mask {
                unblock_all_signals();
            }
            Ok(Forked::Child)
        }
    }
}

/// Whether this process runs under secure execution: the kernel set
/// `AT_SECURE` because it runs a setuid or setgid file, or a file with
/// capabilities, for a user who does not have those privileges (or a
/// security module asked for it). Such a process must not take orders from
/// its environment.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel passed.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// This process's effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid takes nothing, cannot fail and only reads.
    unsafe { libc::geteuid() }
}

/// The first IPv4 address of an interface that is up and running (a
/// carrier: not a bridge of no container, such as docker0 or virbr0) and
/// not a loopback, in the order `getifaddrs` lists them; `None` when there
/// is none.
pub(crate) fn first_up_ipv4() -> Option<std::net::Ipv4Addr> {
    use nix::net::if_::InterfaceFlags;
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        let up = ifa.flags.contains(InterfaceFlags::IFF_UP)
            && ifa.flags.contains(InterfaceFlags::IFF_RUNNING)
            && !ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        let ip = ifa.address?.as_sockaddr_in()?.ip();
        (up && !ip.is_loopback()).then_some(ip)
    })
}

/// Clears the calling thread's signal mask (async-signal-safe).
pub(crate) fn unblock_all_signals() {
    // SAFETY: sigemptyset initialises the set; pthread_sigmask only changes the
    // calling thread's mask. Both are async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// A pollable descriptor for process `pid` (readable once it has exited).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd` (no pid-reuse race).
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: the syscall takes a live pidfd, a signal number and no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Python's exit code for a wait status: the code, or `-N` for signal N.
fn exitcode(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(-(signal as i32)),
        _ => None,
    }
}

/// Reaps child `pid` if it has exited. `Ok(None)`: still running. A child
/// already reaped by someone else (`SIGCHLD` ignored) reports exit code 255.
pub(crate) fn try_reap(pid: u32) -> io::Result<Option<i32>> {
    loop {
        match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(Some(255)),
            Err(e) => return Err(e.into()),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(status) => match exitcode(status) {
                Some(code) => return Ok(Some(code)),
                None => continue, // stopped/continued: not an exit
            },
        }
    }
}

/// Waits for child `pid` to exit and reaps it (for a child known to be
/// ending). A child already reaped by someone else reports exit code 255.
pub(crate) fn reap(pid: u32) -> io::Result<i32> {
    loop {
        match waitpid(Pid::from_raw(pid as i32), None) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(255),
            Err(e) => return Err(e.into()),
            Ok(status) => match exitcode(status) {
                Some(code) => return Ok(code),
                None => continue, // stopped/continued: not an exit
            },
        }
    }
}

/// Reaps any exited child: `Some((pid, exitcode))`, or `None` if none is ready.
pub(crate) fn reap_any() -> io::Result<Option<(u32, i32)>> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(e.into()),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(status) => {
                if let (Some(pid), Some(code)) = (status.pid(), exitcode(status)) {
                    return Ok(Some((pid.as_raw() as u32, code)));
                }
            }
        }
    }
}

/// Whether this process has only ever had one thread (glibc's
/// `__libc_single_threaded`: it never goes back to true). Elsewhere: false,
/// so callers count the threads.
pub(crate) fn single_threaded() -> bool {
    #[cfg(target_env = "gnu")]
    {
        unsafe extern "C" {
            static __libc_single_threaded: libc::c_char;
        }
        // SAFETY: glibc (2.32+) defines this byte for exactly this question;
        // reading it is a plain load.
        unsafe { std::ptr::read_volatile(&raw const __libc_single_threaded) != 0 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// The number of threads in this process.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// Ignores `SIGPIPE`, as a Rust `main` does, so that writing to a closed pipe
/// is an `EPIPE` error instead of death.
pub(crate) fn ignore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_IGN runs no handler code, so it cannot break
    // async-signal safety.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

/// Sends `signal` to this process.
pub(crate) fn raise(signal: i32) {
    if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
    }
}

/// Ends this process at once: no atexit handlers, no destructors. The exit of
/// a forked child, whose memory still holds its parent's objects.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit ends the process; it is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Registers `f` to run when this process exits through `exit()` (returning
/// from `main` or `std::process::exit`). Returns false if the table is full.
pub(crate) fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: atexit stores the function pointer; `f` is a plain extern "C"
    // function that lives for the whole program.
    unsafe { libc::atexit(f) == 0 }
}

/// The signal mask and `SIGCHLD` descriptor of the fork server: `SIGCHLD` is
/// blocked and read from a signalfd.
pub(crate) fn sigchld_fd() -> io::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?)
}

/// Holds `SIGINT` pending in the fork server: blocked first (so that Ctrl-C
/// never ends the server, as CPython's ignores it), then given its default
/// action. A child forked from the server inherits that default action and
/// has its mask cleared at the fork, so a `SIGINT` sent to it as soon as it
/// exists is delivered, never dropped (an ignored `SIGINT` would be lost
/// until the child's bootstrap restored the default). Signals pending in the
/// server are not inherited by its children.
pub(crate) fn hold_sigint() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    // SAFETY: installing SIG_DFL runs no handler code.
    unsafe { signal(Signal::SIGINT, SigHandler::SigDfl) }?;
    Ok(())
}

/// Ignores `SIGINT` (the resource tracker, like CPython's, is not interrupted
/// by Ctrl-C).
pub(crate) fn ignore_sigint() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_IGN runs no handler code.
    let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
}

/// Ignores `SIGTERM` (the resource tracker must outlive a terminate of its program).
pub(crate) fn ignore_sigterm() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_IGN runs no handler code.
    let _ = unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) };
}

/// Removes an environment variable.
///
/// # Safety
///
/// No other thread may read or write the environment during the call (C
/// code reads it without Rust's lock): the process has only this thread, as
/// before `main`. See [`std::env::remove_var`].
pub(crate) unsafe fn remove_env_early(name: &str) {
    // SAFETY: the caller guarantees that no other thread uses the
    // environment (above), which is remove_var's requirement.
    unsafe { std::env::remove_var(name) };
}

/// Whether this process provably runs one thread, so that nothing else can
/// touch the environment: glibc says it never had another, or
/// `/proc/self/task` lists one (only this thread could start a second).
fn provably_one_thread() -> bool {
    single_threaded() || std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

/// Reads environment variable `name` and removes it, so that no process
/// started from here sees it. The removal is only made when this process
/// provably runs one thread (as before `main`); otherwise the variable stays.
pub(crate) fn take_env_var(name: &str) -> Option<std::ffi::OsString> {
    let value = std::env::var_os(name)?;
    if provably_one_thread() {
        // SAFETY: this process runs only this thread (checked just above;
        // only this thread could start another), so nothing else reads or
        // writes the environment during the call.
        unsafe { remove_env_early(name) };
    }
    Some(value)
}

/// Whether the calling thread may run on more than one CPU (its affinity
/// mask). A thread pinned to one CPU does not poll for a peer, which may
/// need that very CPU. Cached per thread for 50 ms (it is a heuristic).
pub(crate) fn several_cpus() -> bool {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static CACHE: Cell<Option<(bool, Instant)>> = const { Cell::new(None) };
    }
    CACHE.with(|c| match c.get() {
        Some((v, at)) if at.elapsed() < Duration::from_millis(50) => v,
        _ => {
            // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
            // fills it for the calling thread (pid 0) and CPU_COUNT only reads it.
            let v = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
                    && libc::CPU_COUNT(&set) > 1
            };
            c.set(Some((v, Instant::now())));
            v
        }
    })
}

#[cfg(test)]
mod tests {
    /// Runs `ip args` (in the calling thread's network namespace).
    fn ip(args: &str) -> bool {
        std::process::Command::new("ip")
            .args(args.split(' '))
            .status()
            .is_ok_and(|s| s.success())
    }

    /// In a network namespace of its own: an interface that is up without a
    /// carrier (a veth whose peer is down, as docker0 with no container) is
    /// not chosen; the next one, up and running, is. Root only (skips,
    /// saying why, otherwise).
    #[test]
    #[allow(clippy::print_stderr)] // a skip must be seen
    fn first_up_ipv4_skips_an_interface_without_a_carrier() {
        if super::euid() != 0 {
            eprintln!("skipped: needs root (a network namespace)");
            return;
        }
        let found = std::thread::spawn(|| {
            // This thread alone moves (its children with it).
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            let made = ip("link add mpv0 type veth peer name mpv1")
                && ip("addr add 10.9.9.1/24 dev mpv0")
                && ip("link set mpv0 up")
                && ip("link add mpw0 type veth peer name mpw1")
                && ip("addr add 10.9.8.1/24 dev mpw0")
                && ip("link set mpw0 up")
                && ip("link set mpw1 up");
            made.then(super::first_up_ipv4)
        })
        .join()
        .unwrap();
        match found {
            None => eprintln!("skipped: no network namespace or no veth here"),
            Some(ip) => assert_eq!(ip, Some(std::net::Ipv4Addr::new(10, 9, 8, 1))),
        }
    }
}
