//! File descriptors: creation (always close-on-exec), reads and writes that
//! retry `EINTR`, and waiting for readiness with a deadline.

use std::ffi::CStr;
use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll, ppoll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};
use nix::sys::time::TimeSpec;

/// A one-way pipe `(read end, write end)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// A connected pair of AF_UNIX sockets, stream or seqpacket.
pub(crate) fn socket_pair(seqpacket: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let ty = if seqpacket {
        SockType::SeqPacket
    } else {
        SockType::Stream
    };
    Ok(socketpair(
        AddressFamily::Unix,
        ty,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// An anonymous memory file (gone with its last fd).
pub(crate) fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    Ok(memfd_create(name, MFdFlags::MFD_CLOEXEC)?)
}

/// `/dev/null`, opened close-on-exec.
pub(crate) fn dev_null(write: bool) -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?;
    Ok(file.into())
}

/// Reads into `buf`, retrying `EINTR`. `Ok(0)` is end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Writes some of `buf`, retrying `EINTR`. On a socket it uses `MSG_NOSIGNAL`,
/// so a closed peer is an `EPIPE` error even where `SIGPIPE` is not ignored.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8], socket: bool) -> io::Result<usize> {
    loop {
        let r = if socket {
            nix::sys::socket::send(fd.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL)
        } else {
            nix::unistd::write(fd, buf)
        };
        match r {
            Err(Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Writes what `fd` takes now without blocking: a socket is sent with
/// `MSG_DONTWAIT`; to a pipe at most `PIPE_BUF` bytes go, and only when poll
/// says there is room (so the write cannot block). Returns 0 when full.
pub(crate) fn write_nonblocking(fd: BorrowedFd<'_>, buf: &[u8], socket: bool) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    loop {
        let r = if socket {
            nix::sys::socket::send(
                fd.as_raw_fd(),
                buf,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            )
        } else {
            let mut pfd = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
            match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO) {
                Ok(0) => return Ok(0),
                Ok(_) => nix::unistd::write(fd, &buf[..buf.len().min(libc::PIPE_BUF)]),
                Err(e) => Err(e),
            }
        };
        match r {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(0),
            r => return Ok(r?),
        }
    }
}

/// Writes all of `bufs` (gathered, so one syscall in the common case).
pub(crate) fn write_all_vectored(
    fd: BorrowedFd<'_>,
    bufs: &[&[u8]],
    socket: bool,
) -> io::Result<()> {
    if let [buf] = bufs {
        return write_all(fd, buf, socket);
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut done = 0;
    while done < total {
        // Rebuild the slices past what was written.
        let mut skip = done;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(bufs.len());
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            slices.push(IoSlice::new(&b[skip..]));
            skip = 0;
        }
        let n = loop {
            let r = if socket {
                nix::sys::socket::sendmsg::<()>(
                    fd.as_raw_fd(),
                    &slices,
                    &[],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
            } else {
                nix::sys::uio::writev(fd, &slices)
            };
            match r {
                Err(Errno::EINTR) => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// Writes all of `buf`.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8], socket: bool) -> io::Result<()> {
    while !buf.is_empty() {
        match write(fd, buf, socket)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// Whether the write end `fd` of a pipe has no reader left (`POLLERR`):
/// a write would raise `SIGPIPE` or fail with `EPIPE`. A failed poll counts
/// as no (the write then says what is wrong).
pub(crate) fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = [PollFd::new(fd, PollFlags::empty())];
    loop {
        match poll(&mut pfd, PollTimeout::ZERO) {
            Err(Errno::EINTR) => continue,
            Ok(n) if n > 0 => {
                return pfd[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLERR));
            }
            _ => return false,
        }
    }
}

/// Waits until any of `fds` is readable (data, end of file, hang-up or error)
/// or the timeout passes (`None`, or one too large to represent: forever).
/// Returns which fds are ready; all false means the timeout passed. `EINTR`
/// is retried with the time left.
pub(crate) fn wait_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    wait_ready(fds, &[], timeout)
}

/// As [`wait_readable`], also waiting for any of `write` to be writable (or
/// in error); the result lists `read` then `write`.
pub(crate) fn wait_ready(
    read: &[BorrowedFd<'_>],
    write: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        // ppoll: the time left to the nanosecond (poll's milliseconds,
        // rounded up, woke a pool's scheduler up to 1 ms after a task's
        // timeout).
        let wait = deadline.map(|d| TimeSpec::from(d.saturating_duration_since(Instant::now())));
        let mut pfds: Vec<PollFd<'_>> = read
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .chain(write.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLOUT)))
            .collect();
        match ppoll(&mut pfds, wait, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(0) => {
                if deadline.is_none_or(|d| Instant::now() < d) {
                    continue; // woke before the deadline: wait the rest
                }
                return Ok(vec![false; pfds.len()]);
            }
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                    .collect());
            }
        }
    }
}

/// Whether `fd` is readable now or becomes so within `timeout`.
pub(crate) fn readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    Ok(wait_readable(&[fd], timeout)?[0])
}

/// A close-on-exec duplicate of descriptor number `fd`, numbered `min` or
/// higher. A number that is not open is an `EBADF` error.
pub(crate) fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC reads no memory; on a closed number it fails.
    let raw = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether `fd` is open in this process.
pub(crate) fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; an unknown number is EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Takes ownership of descriptors this process inherited at known numbers
/// (placed there by the parent that started it). Fails if one is not open.
///
/// # Safety
/// Nothing else in this process owns these numbers or will use or close
/// them, and the caller takes each number once (else two owners close it,
/// and the second close may hit a reused number).
pub(crate) unsafe fn take_inherited(
    raws: impl IntoIterator<Item = RawFd>,
) -> io::Result<Vec<OwnedFd>> {
    let mut out = Vec::new();
    for raw in raws {
        if !is_open(raw) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("inherited fd {raw} is not open"),
            ));
        }
        // Inherited fds must not leak further into this process's own children.
        let _ = set_cloexec_raw(raw, true);
        // SAFETY: the number is open (checked above); nothing else owns it
        // and it is taken once (the caller's contract).
        out.push(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok(out)
}

fn set_cloexec_raw(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD changes only the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is a socket (as opposed to a pipe or a file).
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK)
}

/// Whether `fd` is a Unix domain socket (one that can carry descriptors).
pub(crate) fn is_unix_socket(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
    getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .is_ok_and(|a| a.family() == Some(AddressFamily::Unix))
}

/// In a freshly forked child: closes every descriptor except `keep` (which
/// must be sorted). Async-signal-safe: only the `close_range` syscall.
///
/// # Safety
/// No object of this process that owns a closed descriptor (an `OwnedFd`, a
/// `File`, a mapping's fd) may be used or dropped afterwards: its number is
/// closed, and may be reused by a new one. (In a fork child, that is every
/// object the parent had, as `fork`'s contract says.)
pub(crate) unsafe fn close_all_except(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &k in keep {
        let k = k as u32;
        if k > from {
            // SAFETY: close_range only closes descriptors; the ones we keep are
            // outside the range, and nothing uses the others (the caller's
            // contract).
            unsafe { libc::close_range(from, k - 1, 0) };
        }
        from = k + 1;
    }
    // SAFETY: as above, for everything above the last kept descriptor.
    unsafe { libc::close_range(from, u32::MAX, 0) };
}

/// Waits until the other side of `fd` hangs up (a pipe's writers are all
/// gone; a socket's peer closed or shut down its writing), whatever data
/// is still waiting to be read. An error of the poll itself is returned.
pub(crate) fn wait_hangup(fd: BorrowedFd<'_>) -> io::Result<()> {
    let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
    let mut pfd = [PollFd::new(fd, rdhup)];
    loop {
        match poll(&mut pfd, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {
                let hung = PollFlags::POLLHUP | rdhup | PollFlags::POLLERR | PollFlags::POLLNVAL;
                if pfd[0].revents().is_some_and(|r| r.intersects(hung)) {
                    return Ok(());
                }
            }
        }
    }
}

/// Points standard descriptor `std` (0, 1 or 2) at what `to` refers to.
/// Safe: no `OwnedFd` of this process owns 0, 1 or 2 (the standard library
/// borrows them), so none is invalidated. Other numbers are refused.
pub(crate) fn redirect_stdio(std: RawFd, to: BorrowedFd<'_>) -> io::Result<()> {
    if !(0..=2).contains(&std) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    loop {
        // SAFETY: dup2 onto a standard descriptor, which nothing owns
        // (above); `to` is open for the call (borrowed).
        if unsafe { libc::dup2(to.as_raw_fd(), std) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `dup2(from, to)` for a freshly forked child (async-signal-safe); the
/// result is not close-on-exec.
///
/// # Safety
/// No object of this process owns `to` (dup2 closes what was there), or the
/// object that does is never used or dropped afterwards.
pub(crate) unsafe fn dup2_raw(from: RawFd, to: RawFd) {
    if from != to {
        // SAFETY: dup2 replaces `to`, which nothing uses (the caller's contract).
        unsafe { libc::dup2(from, to) };
    }
}

/// The identity of the file `fd` refers to: its device and inode numbers
/// (the same through every duplicate, in every process).
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Reads at most `max` bytes from `fd` into the spare capacity of `vec`
/// (without zero-filling it first), appending them. It never allocates: the
/// caller decides how much room to make, so that a peer's claimed length
/// costs no memory before its bytes arrive. `Ok(0)` is end of file (or no
/// room: `max == 0` or a full `vec`, which the caller must not ask for).
pub(crate) fn read_append(fd: BorrowedFd<'_>, vec: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    debug_assert!(
        max == 0 || vec.capacity() > vec.len(),
        "no room to read into"
    );
    let spare = vec.spare_capacity_mut();
    let room = spare.len().min(max);
    let spare = &mut spare[..room];
    loop {
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by
        // `vec`; read(2) writes at most that many bytes into it.
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        // SAFETY: read(2) initialised the first `n` bytes of the spare
        // capacity (n <= spare.len(), so within it).
        unsafe { vec.set_len(vec.len() + n) };
        return Ok(n);
    }
}

/// Reads what `fd` holds now, never waiting: `Ok(None)` when nothing is
/// there, `Ok(Some(0))` at end of file.
pub(crate) fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    if !readable(fd, Some(Duration::ZERO))? {
        return Ok(None);
    }
    read(fd, buf).map(Some)
}

/// Shuts down the writing side of a socket: its peer reads end of file.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Write);
}

/// Shuts a socket down both ways (its readers, here and in any process
/// that shares it, see end of file; nothing more is sent). Not a socket:
/// nothing.
pub(crate) fn shutdown_both(fd: BorrowedFd<'_>) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

/// Whether `fd` was opened for reading and for writing (a socket: both; a
/// pipe: one of them).
pub(crate) fn access(fd: BorrowedFd<'_>) -> io::Result<(bool, bool)> {
    let flags = OFlag::from_bits_truncate(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?);
    Ok(match flags & OFlag::O_ACCMODE {
        OFlag::O_RDONLY => (true, false),
        OFlag::O_WRONLY => (false, true),
        _ => (true, true),
    })
}
