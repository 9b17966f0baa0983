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

/// What identifies this build of the executable wherever its file is (a
/// copy on another host included): the linker's GNU build ID, or, for an
/// executable linked without one, the SHA-256 of the file; and the
/// distance between two anchors. Empty when the file cannot be read.
pub(crate) fn build_identity() -> Vec<u8> {
    static BUILD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BUILD
        .get_or_init(|| {
            let Ok(file) = std::fs::read("/proc/self/exe") else {
                return Vec::new();
            };
            let mut id = match elf_build_id(&file) {
                Some(id) => [b"gnu-build-id:".as_slice(), id].concat(),
                None => {
                    use sha2::Digest;
                    [b"sha256:".as_slice(), &sha2::Sha256::digest(&file)].concat()
                }
            };
            id.extend_from_slice(&offset_of(anchor2 as fn() -> u32 as usize).to_le_bytes());
            id
        })
        .clone()
}

/// The GNU build ID in the note segments of a 64-bit little-endian ELF
/// file, if it has one. Every offset is checked: a file that is not what
/// it says gives `None`.
pub(crate) fn elf_build_id(file: &[u8]) -> Option<&[u8]> {
    let u16_at = |at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(*file.get(at..at.checked_add(2)?)?.first_chunk()?) as usize)
    };
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(*file.get(at..at.checked_add(4)?)?.first_chunk()?) as usize)
    };
    let u64_at = |at: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(
            *file.get(at..at.checked_add(8)?)?.first_chunk()?,
        ))
        .ok()
    };
    // ELF magic, 64-bit, little-endian.
    if file.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        const PT_NOTE: usize = 4;
        if u32_at(ph)? != PT_NOTE {
            continue;
        }
        let (start, size) = (u64_at(ph.checked_add(8)?)?, u64_at(ph.checked_add(32)?)?);
        let end = start.checked_add(size)?;
        let mut at = start;
        while at.checked_add(12)? <= end {
            let (namesz, descsz, kind) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
            let name = at + 12;
            let desc = name.checked_add(namesz.checked_add(3)? & !3)?;
            let next = desc.checked_add(descsz.checked_add(3)? & !3)?;
            const NT_GNU_BUILD_ID: usize = 3;
            if kind == NT_GNU_BUILD_ID && file.get(name..name.checked_add(namesz)?)? == b"GNU\0" {
                return file.get(desc..desc.checked_add(descsz)?);
            }
            if next <= at {
                return None;
            }
            at = next;
        }
    }
    None
}

#[cfg(test)]
mod build_id_tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_build_id_and_garbage_has_none() {
        let file = std::fs::read("/proc/self/exe").unwrap();
        let id = elf_build_id(&file).expect("the linker writes a GNU build ID");
        assert!(id.len() >= 8);
        assert!(build_identity().starts_with(b"gnu-build-id:"));
        assert_eq!(build_identity(), build_identity());
        for cut in [0, 6, 64, 0x40 + 56, 800] {
            let _ = elf_build_id(&file[..cut.min(file.len())]);
        }
        assert_eq!(elf_build_id(b"\x7fELF\x02\x01"), None);
        let mut hostile = file[..4096].to_vec();
        hostile[0x38] = 0xff; // phnum
        hostile[0x39] = 0xff;
        let _ = elf_build_id(&hostile);
    }
}
