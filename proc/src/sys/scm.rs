//! Passing descriptors over AF_UNIX sockets (`SCM_RIGHTS`).

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// The most descriptors one message carries (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// Sends `data` with `fds` attached, in one `sendmsg`.
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one message: the limit is {MAX_FDS}",
                fds.len()
            ),
        ));
    }
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) if n == data.len() => return Ok(()),
            Ok(n) => {
                // A stream socket may take part of the data; the descriptors went
                // with the first part. Send the rest plainly.
                return super::fd::write_all(sock, &data[n..], true);
            }
        }
    }
}

/// What one `recvmsg` on a stream socket brought.
#[derive(Debug)]
pub(crate) struct Received {
    /// How many bytes (0: end of file).
    pub(crate) n: usize,
    /// The descriptors that came with them (close-on-exec), in order.
    pub(crate) fds: Vec<OwnedFd>,
    /// Descriptors were lost: the kernel could not install them all
    /// (`MSG_CTRUNC`: this process is out of descriptors, or the space was
    /// short). The bytes were read all the same.
    pub(crate) lost: bool,
}

/// Room for the control data of one message with [`MAX_FDS`] descriptors,
/// aligned as `cmsghdr` needs (kept by the caller, reused for every read).
pub(crate) fn control_space() -> Box<[u64]> {
    // SAFETY: CMSG_SPACE only computes a size.
    let bytes = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    vec![0u64; (bytes as usize).div_ceil(8)].into_boxed_slice()
}

/// `recvmsg` of at most `len` bytes to `ptr`, retrying `EINTR`.
///
/// # Safety
/// `ptr` is valid for writes of `len` bytes.
unsafe fn recvmsg_into(
    sock: BorrowedFd<'_>,
    ptr: *mut u8,
    len: usize,
    space: &mut [u64],
) -> io::Result<Received> {
    loop {
        let mut iov = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        };
        // SAFETY: an all-zero msghdr is a valid empty one.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(space) as _;
        // SAFETY: `msg` points at one iovec of `len` writable bytes (the
        // caller's contract) and at `space`, writable and aligned for cmsghdr.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut fds = Vec::new();
        // SAFETY: the kernel filled `msg_controllen` bytes of `space` with
        // well-formed control messages; the CMSG_* macros walk them within it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let bytes = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        // SAFETY: the kernel installed this descriptor in this
                        // process for this message; nothing else owns it.
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        return Ok(Received {
            n: n as usize,
            fds,
            lost: msg.msg_flags & libc::MSG_CTRUNC != 0,
        });
    }
}

/// Reads from a stream socket into `buf`, with the descriptors that come
/// (`space` from [`control_space`]). A read never spans two messages that
/// carry descriptors: the kernel ends it after the one that brought them.
pub(crate) fn recv_stream(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    space: &mut [u64],
) -> io::Result<Received> {
    // SAFETY: `buf` is writable for its length.
    unsafe { recvmsg_into(sock, buf.as_mut_ptr(), buf.len(), space) }
}

/// As [`recv_stream`], into at most `max` bytes of the spare capacity of
/// `vec` (appending, without zero-filling it first; see
/// [`read_append`](super::fd::read_append)).
pub(crate) fn recv_stream_append(
    sock: BorrowedFd<'_>,
    vec: &mut Vec<u8>,
    max: usize,
    space: &mut [u64],
) -> io::Result<Received> {
    let spare = vec.spare_capacity_mut();
    let room = spare.len().min(max);
    // SAFETY: the first `room` bytes of the spare capacity are writable
    // memory owned by `vec`.
    let r = unsafe { recvmsg_into(sock, spare.as_mut_ptr().cast(), room, space) }?;
    // SAFETY: recvmsg initialised the first `r.n <= room` bytes of the spare
    // capacity.
    unsafe { vec.set_len(vec.len() + r.n) };
    Ok(r)
}

/// Receives one message into `buf` with its descriptors (close-on-exec).
/// `Ok((0, []))` is end of file.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let r = recv_stream(sock, buf, &mut control_space())?;
    if r.lost {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors were lost: control data truncated",
        ));
    }
    Ok((r.n, r.fds))
}
