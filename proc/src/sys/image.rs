//! Finding a function again in a new image of this executable.
//!
//! A spawn or forkserver child runs the same executable at another load
//! address (ASLR), so a target travels as its offset from an anchor function
//! of this crate. The parent checks that the target lives in the main
//! executable (not in a library loaded at run time, which the child would not
//! have); the child checks that it runs the same file before it turns the
//! offset back into a function pointer.

use std::ffi::{CStr, c_void};

#[inline(never)]
fn anchor() -> u32 {
    std::hint::black_box(0x6d70_0001)
}

#[inline(never)]
fn anchor2() -> u32 {
    std::hint::black_box(0x6d70_0002)
}

fn anchor_addr() -> usize {
    anchor as fn() -> u32 as usize
}

/// The shared object that contains `addr`: `(base address, file name)`.
fn object_of(addr: usize) -> Option<(usize, String)> {
    // SAFETY: dladdr only reads the dynamic linker's tables and fills `info`;
    // a zeroed Dl_info is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `addr` is only compared against loaded ranges.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 {
        return None;
    }
    let name = if info.dli_fname.is_null() {
        String::new()
    } else {
        // SAFETY: dladdr set dli_fname to a NUL-terminated string owned by the
        // dynamic linker, valid while the object stays loaded.
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned()
    };
    Some((info.dli_fbase as usize, name))
}

/// The base address of the main executable.
fn main_executable_base() -> Option<usize> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as usize;
    object_of(phdr).map(|(base, _)| base)
}

/// Where a function lives, if not in the main executable next to mp-proc:
/// `Err(object name)`.
pub(crate) fn check_in_main_image(addr: usize) -> Result<(), String> {
    let main = main_executable_base();
    let ours = object_of(anchor_addr()).map(|(b, _)| b);
    match object_of(addr) {
        Some((base, _)) if Some(base) == main && Some(base) == ours => Ok(()),
        Some((_, name)) => Err(if name.is_empty() {
            "an unnamed object".to_owned()
        } else {
            name
        }),
        None => Err("no loaded object".to_owned()),
    }
}

/// The offset of `addr` from this image's anchor.
pub(crate) fn offset_of(addr: usize) -> i64 {
    addr.wrapping_sub(anchor_addr()) as i64
}

/// The address of the function at `offset` from this image's anchor.
pub(crate) fn address_of(offset: i64) -> usize {
    anchor_addr().wrapping_add(offset as usize)
}

/// A value that differs between different builds of the executable: the file's
/// device and inode, and the distance between two anchors.
pub(crate) fn fingerprint() -> (u64, u64, i64) {
    use std::os::unix::fs::MetadataExt;
    // The running image never changes, whatever happens to its file.
    static FINGERPRINT: std::sync::OnceLock<(u64, u64, i64)> = std::sync::OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        let (dev, ino) = std::fs::metadata("/proc/self/exe")
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or((0, 0));
        let a2 = anchor2 as fn() -> u32 as usize;
        (dev, ino, offset_of(a2))
    })
}

/// The address of the function at `offset` from this image's anchor, if
/// `fingerprint` is this executable's and the address lies in the main
/// executable (not in a library that another process may not have).
pub(crate) fn function_at(offset: i64, parent_fingerprint: (u64, u64, i64)) -> Option<usize> {
    if parent_fingerprint != fingerprint() {
        return None;
    }
    let addr = address_of(offset);
    check_in_main_image(addr).ok()?;
    Some(addr)
}

/// A function pointer of type `F` from its address.
///
/// # Safety
/// `F` is a function pointer type and `addr` is the address of a function
/// of exactly that type (or `F` is an `unsafe fn` type whose callers uphold
/// what the function at `addr` needs).
pub(crate) unsafe fn fn_from_addr<F: Copy>(addr: usize) -> F {
    assert_eq!(size_of::<F>(), size_of::<usize>(), "not a function pointer");
    // SAFETY: F is a function pointer type of usize's size (the caller's
    // contract, and checked), and addr is such a function (the caller's).
    unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
}
