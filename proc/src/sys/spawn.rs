//! `posix_spawn` of this very executable, for the spawn start method and the
//! helper processes, and the spawned side's checks of what its parent placed
//! at the descriptor numbers its environment names.

use std::ffi::{CStr, CString, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::{FcntlArg, SealFlag};

/// What a spawned copy of this executable gets.
pub(crate) struct SpawnPlan<'a> {
    /// Descriptors placed at 3, 4, 5, ... in the child, in this order. Every
    /// other descriptor above 2 is closed in the child. They must stay open
    /// during the call (a closed number is an `EBADF` error).
    pub(crate) fds: &'a [RawFd],
    /// The environment variable that tells the child what to do.
    pub(crate) env: (&'a str, String),
    /// Variables removed from the child's environment.
    pub(crate) env_remove: &'a [&'a str],
    /// An argument after `argv[0]` that names the child's role in `ps`.
    pub(crate) marker: &'a str,
    /// Whether the child's stdout and stderr are `/dev/null` too (helper
    /// processes, which must not hold the program's output open). Its stdin
    /// is always `/dev/null`.
    pub(crate) null_output: bool,
}

/// Runs `/proc/self/exe` with the plan's descriptors and environment.
/// Returns the child's pid once the new image is executing (posix_spawn
/// reports a failed exec as an error).
pub(crate) fn spawn_self(plan: &SpawnPlan<'_>) -> io::Result<u32> {
    let first = 3 as RawFd;
    let n = plan.fds.len() as RawFd;
    // Move every source above the target range, so that placing one never
    // overwrites another.
    let staged: Vec<OwnedFd> = plan
        .fds
        .iter()
        .map(|fd| super::fd::dup_at_least(*fd, first + n))
        .collect::<io::Result<_>>()?;

    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("mp-proc-child"));
    let argv0 = cstring(argv0)?;
    let marker = cstring(OsString::from(plan.marker))?;
    let argv: [*const libc::c_char; 3] = [argv0.as_ptr(), marker.as_ptr(), std::ptr::null()];

    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != plan.env.0 && !plan.env_remove.iter().any(|r| k == r))
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(&v.into_vec());
            cstring(OsString::from_vec(kv))
        })
        .collect::<io::Result<_>>()?;
    env.push(cstring(OsString::from(format!(
        "{}={}",
        plan.env.0, plan.env.1
    )))?);
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    let null = c"/dev/null";
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions and attributes are initialised before use and
    // destroyed after; every pointer passed (path, argv, envp, /dev/null) points
    // to a NUL-terminated string or array that outlives the posix_spawn call.
    let rc = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let mut rc = 0;
        for (i, fd) in staged.iter().enumerate() {
            if rc == 0 {
                rc = libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    fd.as_raw_fd(),
                    first + i as RawFd,
                );
            }
        }
        if rc == 0 {
            rc = libc::posix_spawn_file_actions_addclosefrom_np(&mut actions, first + n);
        }
        if rc == 0 {
            rc = libc::posix_spawn_file_actions_addopen(
                &mut actions,
                0,
                null.as_ptr(),
                libc::O_RDONLY,
                0,
            );
        }
        if rc == 0 && plan.null_output {
            rc = libc::posix_spawn_file_actions_addopen(
                &mut actions,
                1,
                null.as_ptr(),
                libc::O_WRONLY,
                0,
            );
            if rc == 0 {
                rc = libc::posix_spawn_file_actions_addopen(
                    &mut actions,
                    2,
                    null.as_ptr(),
                    libc::O_WRONLY,
                    0,
                );
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if rc == 0 {
            rc = libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        }
        if rc == 0 {
            rc = libc::posix_spawnattr_setflags(
                &mut attr,
                libc::POSIX_SPAWN_SETSIGMASK as libc::c_short,
            );
        }
        if rc == 0 {
            rc = libc::posix_spawn(
                &mut pid,
                c"/proc/self/exe".as_ptr(),
                &actions,
                &attr,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    drop(staged);
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(pid as u32)
}

fn cstring(s: OsString) -> io::Result<CString> {
    CString::new(s.into_vec()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// The seals of a bootstrap memory file: nothing can change it any more.
fn bootstrap_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// An anonymous memory file holding `bytes`, sealed (no write, no resize,
/// no more seals): the kind of descriptor [`Channel::SealedMemfd`] accepts.
pub(crate) fn sealed_memfd(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    super::fd::write_all(fd.as_fd(), bytes, false)?;
    nix::fcntl::fcntl(&fd, FcntlArg::F_ADD_SEALS(bootstrap_seals()))?;
    Ok(fd)
}

/// The kind of descriptor a parent places for its spawned child.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    /// A memory file made by [`sealed_memfd`] (a child's bootstrap).
    SealedMemfd,
    /// The read end of a pipe (the resource tracker's, a child's alive pipe).
    PipeReadEnd,
    /// A seqpacket socket (the fork server's control socket).
    Seqpacket,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::SealedMemfd => "the sealed memfd",
            Channel::PipeReadEnd => "the read end of a pipe",
            Channel::Seqpacket => "the seqpacket socket",
        }
    }
}

/// A descriptor that is not what the parent places there.
#[derive(Debug)]
pub(crate) enum BadChannel {
    /// Nothing is open at that number.
    NotOpen(RawFd),
    /// Something else is: `found` says what.
    WrongKind {
        fd: RawFd,
        expected: Channel,
        found: String,
    },
    /// It could not be examined.
    Os(RawFd, io::Error),
}

impl fmt::Display for BadChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadChannel::NotOpen(fd) => write!(f, "fd {fd} is not open"),
            BadChannel::WrongKind {
                fd,
                expected,
                found,
            } => write!(
                f,
                "fd {fd} is {found}, not {} its parent makes",
                expected.name()
            ),
            BadChannel::Os(fd, e) => write!(f, "fd {fd} cannot be examined: {e}"),
        }
    }
}

/// What `mode` (from `fstat`) is, in words.
fn file_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a pipe",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        _ => "a descriptor of unknown kind",
    }
}

/// Checks that `fd` is the kind of descriptor the parent places: by `fstat`,
/// and the seals, access mode or socket type that kind has.
pub(crate) fn check_channel(fd: BorrowedFd<'_>, expected: Channel) -> Result<(), BadChannel> {
    let raw = fd.as_raw_fd();
    let os = |e: nix::errno::Errno| BadChannel::Os(raw, e.into());
    let wrong = |found: String| BadChannel::WrongKind {
        fd: raw,
        expected,
        found,
    };
    let mode = nix::sys::stat::fstat(fd).map_err(os)?.st_mode;
    let kind = file_kind(mode);
    match expected {
        Channel::SealedMemfd => {
            if mode & libc::S_IFMT != libc::S_IFREG {
                return Err(wrong(kind.to_owned()));
            }
            // Only a memory file made with sealing allowed can carry these
            // seals; any other file answers EINVAL or F_SEAL_SEAL alone.
            match nix::fcntl::fcntl(fd, FcntlArg::F_GET_SEALS) {
                Ok(seals) if SealFlag::from_bits_truncate(seals).contains(bootstrap_seals()) => {}
                _ => return Err(wrong("a regular file without its seals".to_owned())),
            }
        }
        Channel::PipeReadEnd => {
            if mode & libc::S_IFMT != libc::S_IFIFO {
                return Err(wrong(kind.to_owned()));
            }
            let flags = nix::fcntl::fcntl(fd, FcntlArg::F_GETFL).map_err(os)?;
            if flags & libc::O_ACCMODE != libc::O_RDONLY {
                return Err(wrong("a pipe open for writing".to_owned()));
            }
        }
        Channel::Seqpacket => {
            if mode & libc::S_IFMT != libc::S_IFSOCK {
                return Err(wrong(kind.to_owned()));
            }
            let ty = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType)
                .map_err(os)?;
            if ty != nix::sys::socket::SockType::SeqPacket {
                return Err(wrong(format!("a socket of type {ty:?}")));
            }
        }
    }
    Ok(())
}

/// Takes ownership of descriptors a parent placed in this process at known
/// numbers. Fails if one is not open.
///
/// # Safety
///
/// Nothing else in this process owns these numbers or will use or close
/// them: they were placed for this process alone (by the parent that spawned
/// it and named them, or kept across `fork` while every object of the parent
/// that owned them is never used or dropped, see [`fork`](super::process::fork)),
/// and the caller takes each number once.
pub(crate) unsafe fn take_placed(
    raws: impl IntoIterator<Item = RawFd>,
) -> io::Result<Vec<OwnedFd>> {
    // SAFETY: the contract above is take_inherited's.
    unsafe { super::fd::take_inherited(raws) }
}

/// Takes ownership of the descriptor a parent placed at `raw`, after
/// checking that it is the kind of descriptor the parent makes there.
///
/// # Safety
///
/// As [`take_placed`], for the number `raw`.
pub(crate) unsafe fn take_channel(raw: RawFd, expected: Channel) -> Result<OwnedFd, BadChannel> {
    if !super::fd::is_open(raw) {
        return Err(BadChannel::NotOpen(raw));
    }
    // SAFETY: `raw` is open (checked above) and, by the caller's contract,
    // stays open and owned by nobody else while it is borrowed here.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    check_channel(fd, expected)?;
    // SAFETY: the caller's contract is take_placed's.
    let mut fds = unsafe { take_placed([raw]) }.map_err(|e| BadChannel::Os(raw, e))?;
    fds.pop().ok_or(BadChannel::NotOpen(raw))
}
