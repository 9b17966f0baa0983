//! Shared memory: an anonymous memory file mapped shared, or a named POSIX
//! segment. The descriptor travels to children like any handle's.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// A shared mapping of a memory file, and the file's descriptor.
pub(crate) struct Region {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
    /// Its words as the model's atomics (`--cfg loom` only).
    #[cfg(loom)]
    pub(super) model: super::atomics::model::Words,
}

// SAFETY: the mapping is plain shared memory; every access to it goes
// through atomics, the pthread objects placed in it, or raw copies whose
// races are the documented business of the handle types above.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// A new zero-filled anonymous region of `len` bytes (at least one).
    pub(crate) fn anonymous(len: usize) -> io::Result<Region> {
        let fd = super::fd::memfd(c"mp-proc-shared")?;
        let len = len.max(1);
        nix::unistd::ftruncate(&fd, len as libc::off_t)?;
        Region::map(fd, len)
    }

    /// Maps the whole of an existing memory file (received by a child).
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Region> {
        let len = nix::sys::stat::fstat(fd.as_fd())?.st_size as usize;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "empty shared memory file",
            ));
        }
        Region::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Region> {
        // SAFETY: a fresh shared mapping of `len` bytes of `fd`, which is at
        // least that long; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region {
            fd,
            ptr,
            len,
            #[cfg(loom)]
            model: super::atomics::model::Words::new(len),
        })
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address of byte `offset`, which must leave room for `size` bytes.
    pub(crate) fn at(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "shared memory access out of bounds"
        );
        // SAFETY: in bounds of the mapping (checked above).
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The bytes, for reading.
    ///
    /// # Safety
    /// No process (this one through another mapping or handle, or any other)
    /// may write the region while the slice lives.
    pub(crate) unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for the life of self;
        // no writer meanwhile (the caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, for writing.
    ///
    /// # Safety
    /// No process (this one through another mapping or handle, or any other)
    /// may read or write the region while the slice lives.
    pub(crate) unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above; `&mut self` makes this the only borrow of this
        // mapping, and the caller rules out every other access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes `offset..offset + len` (panics when out of bounds).
    ///
    /// # Safety
    /// No process may write that range while the slice lives (e.g. a queue
    /// record that this process has claimed and not yet released).
    pub(crate) unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        let p = self.at(offset, len);
        // SAFETY: in bounds of a live mapping (checked by `at`); no writer of
        // this range while the borrow lives (the caller's contract).
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// Copies `bytes` to `offset` (a plain memcpy; panics when out of bounds).
    ///
    /// # Safety
    /// No process may read or write that range during the copy (e.g. a
    /// queue slot that this process has claimed and not yet published).
    pub(crate) unsafe fn copy_in(&self, offset: usize, bytes: &[u8]) {
        let dst = self.at(offset, bytes.len());
        // SAFETY: in bounds (checked by `at`); source and destination cannot
        // overlap (one is ours, the other shared memory); no concurrent
        // access (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
    }

    /// Gives the pages of `offset..offset + len` back to the system (they read
    /// as zeros afterwards). Only whole pages inside the range are freed.
    pub(crate) fn punch(&self, offset: usize, len: usize) {
        let page = 4096;
        let start = offset.div_ceil(page) * page;
        let end = (offset + len) / page * page;
        if end > start {
            // SAFETY: fallocate on our descriptor; it changes no memory we
            // hold references to (the caller punches consumed ranges only).
            unsafe {
                libc::fallocate(
                    self.fd.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    start as libc::off_t,
                    (end - start) as libc::off_t,
                )
            };
        }
    }

    /// Copies `len` bytes out of byte `offset` (volatile: another process
    /// may be writing them).
    pub(crate) fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let src = self.at(offset, out.len());
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: in bounds (checked by `at`); a volatile byte read of
            // shared memory.
            *b = unsafe { std::ptr::read_volatile(src.add(i)) };
        }
    }

    /// Copies `bytes` into byte `offset` (volatile).
    pub(crate) fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        let dst = self.at(offset, bytes.len());
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (checked by `at`); a volatile byte write of
            // shared memory.
            unsafe { std::ptr::write_volatile(dst.add(i), *b) };
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this address and length
        // and nothing refers to it once the Region is dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn shm_name(name: &str) -> io::Result<CString> {
    let name = if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    };
    if name.len() > 255 || name[1..].contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad shared memory name",
        ));
    }
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

/// Creates the named segment `name` of `len` bytes; fails if it exists.
pub(crate) fn shm_create(name: &str, len: usize) -> io::Result<Region> {
    let c = shm_name(name)?;
    // SAFETY: a NUL-terminated name; O_EXCL refuses an existing segment.
    let fd = unsafe {
        libc::shm_open(
            c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Err(e) = nix::unistd::ftruncate(&fd, len.max(1) as libc::off_t) {
        let _ = shm_unlink(name);
        return Err(e.into());
    }
    Region::map(fd, len.max(1))
}

/// Opens the existing named segment `name`.
pub(crate) fn shm_attach(name: &str) -> io::Result<Region> {
    let c = shm_name(name)?;
    // SAFETY: a NUL-terminated name.
    let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    Region::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name `name` (the memory lives on while mapped).
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let c = shm_name(name)?;
    // SAFETY: a NUL-terminated name.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads item `i` of the `T`s at `base` (volatile: another process may write
/// it), after `repair` has made its bytes a valid `T` (a `bool` that is
/// neither 0 nor 1 becomes `true`).
///
/// # Safety
/// `base` is aligned for `T` and items `0..=i` lie in a live mapping;
/// `repair` turns any bytes found there into the bytes of a valid `T`.
pub(crate) unsafe fn read_volatile<T: Copy>(
    base: *mut T,
    i: usize,
    repair: impl FnOnce(&mut [u8]),
) -> T {
    // SAFETY: in bounds and aligned (the caller's contract); a MaybeUninit
    // has no validity invariant, whatever the bytes.
    let mut v = unsafe { std::ptr::read_volatile(base.add(i).cast::<MaybeUninit<T>>()) };
    // SAFETY: the size_of::<T>() bytes of `v`, copied from the mapping,
    // which holds initialised memory (a memory file, zero-filled at first).
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), size_of::<T>()) };
    repair(bytes);
    // SAFETY: `repair` made the bytes a valid T (the caller's contract).
    unsafe { v.assume_init() }
}

/// Writes item `i` of the `T`s at `base` (volatile).
///
/// # Safety
/// As for [`read_volatile`]: `base` aligned, items `0..=i` in a live mapping.
pub(crate) unsafe fn write_volatile<T: Copy>(base: *mut T, i: usize, v: T) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::write_volatile(base.add(i), v) }
}

/// Repairs in place the `len` items of `T` at `base` (see [`read_volatile`]).
///
/// # Safety
/// As for [`read_volatile`], for items `0..len`, and no other access to
/// them meanwhile (the caller holds their lock).
pub(crate) unsafe fn repair_in_place<T: Copy>(
    base: *mut T,
    len: usize,
    repair: impl Fn(&mut [u8]),
) {
    for i in 0..len {
        // SAFETY: the caller's contract; `read_volatile` repairs the copy,
        // which goes back to the same slot.
        unsafe { write_volatile(base, i, read_volatile(base, i, &repair)) };
    }
}
