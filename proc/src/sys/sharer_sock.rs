//! The OS side of the sharer (`rt::sharer`): the monotonic clock in
//! nanoseconds, who this process is and who a socket's peer is, a connect to
//! an abstract Unix socket that cannot wait forever, the receive of a
//! short answer with at most one descriptor, and [`Forever`], the lock-free
//! slot that holds a process's sharer across a fork.

// Until the handles issue and redeem tickets (the lead removes this).

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, connect,
    getsockopt, recvmsg, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

/// `CLOCK_MONOTONIC` now, in nanoseconds: one clock for every process of a
/// host (it is `Instant`'s clock on Linux).
pub(crate) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given; CLOCK_MONOTONIC
    // always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// This process's effective user id (what `SO_PEERCRED` reports of it).
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// The `(pid, effective uid)` of a Unix socket's peer, as the kernel
/// recorded them when it connected (or listened).
pub(crate) fn peer(sock: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let cred = getsockopt(&sock, sockopt::PeerCredentials)?;
    Ok((cred.pid() as u32, cred.uid()))
}

/// A stream socket connected to the abstract Unix socket `name`, blocking,
/// close-on-exec, with `timeout` as its send and receive timeouts. The
/// connect itself waits at most `timeout` for room in a full backlog (Linux
/// bounds that wait by the send timeout), then fails with `EAGAIN`.
pub(crate) fn connect_abstract(name: &[u8], timeout: Duration) -> io::Result<OwnedFd> {
    let addr = UnixAddr::new_abstract(name)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // A zero timeout means "none" to the kernel: wait at least a microsecond.
    let micros = timeout.as_micros().clamp(1, i64::MAX as u128 / 2) as i64;
    let tv = TimeVal::new(micros / 1_000_000, (micros % 1_000_000) as _);
    setsockopt(&sock, sockopt::SendTimeout, &tv)?;
    setsockopt(&sock, sockopt::ReceiveTimeout, &tv)?;
    loop {
        match connect(sock.as_raw_fd(), &addr) {
            Err(Errno::EINTR) => continue,
            r => {
                r?;
                return Ok(sock);
            }
        }
    }
}

/// Receives one message of at most `buf.len()` bytes with at most one
/// descriptor (close-on-exec). Descriptors past the first are never
/// installed (the kernel drops them and the result is an `InvalidData`
/// error); `Ok((0, None))` is end of file.
pub(crate) fn recv_with_one_fd(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => msg,
        };
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                for fd in raw {
                    // SAFETY: the kernel installed these descriptors in this
                    // process for this message; nothing else owns them.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > 1 {
            // What did arrive is closed as `fds` drops.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more than one descriptor came",
            ));
        }
        return Ok((msg.bytes, fds.pop()));
    }
}

/// Becomes user `uid` (a test's hostile client, in a forked child).
#[cfg(test)]
pub(crate) fn set_uid(uid: u32) -> io::Result<()> {
    // SAFETY: setuid only changes this process's credentials.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A process-global slot for a value that lives until the process ends. A
/// value is put in by leaking a `Box` and is never dropped or freed, only
/// replaced, so every reference [`Forever::get`] gave stays valid. There is
/// no lock: a forked child (whose other threads vanished, perhaps in the
/// middle of holding one) reads and replaces it safely.
#[derive(Debug)]
pub(crate) struct Forever<T: Send + Sync + 'static> {
    ptr: std::sync::atomic::AtomicPtr<T>,
}

impl<T: Send + Sync + 'static> Forever<T> {
    /// An empty slot.
    pub(crate) const fn new() -> Forever<T> {
        Forever {
            ptr: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The value in the slot.
    pub(crate) fn get(&self) -> Option<&'static T> {
        let ptr = self.ptr.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: a non-null pointer in the slot came from `Box::into_raw` in
        // `replace` and is never freed, so it points to a live `T` forever;
        // `T: Sync` lets every thread share it.
        unsafe { ptr.as_ref() }
    }

    /// Puts `new` in the slot if it still holds `old` (what [`Forever::get`]
    /// returned), and returns it for good. `old` is not dropped (it lives on,
    /// unreachable). If another thread replaced `old` first, `new` comes back.
    pub(crate) fn replace(
        &self,
        old: Option<&'static T>,
        new: Box<T>,
    ) -> Result<&'static T, Box<T>> {
        use std::sync::atomic::Ordering;
        let old = old.map_or(std::ptr::null_mut(), |r| std::ptr::from_ref(r).cast_mut());
        let new = Box::into_raw(new);
        match self
            .ptr
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: `new` came from `Box::into_raw` just above and, now in
            // the slot, is never freed (see `get`).
            Ok(_) => Ok(unsafe { &*new }),
            // SAFETY: `new` came from `Box::into_raw` just above and was not
            // stored, so this is its only owner.
            Err(_) => Err(unsafe { Box::from_raw(new) }),
        }
    }
}
