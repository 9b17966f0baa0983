//! Finding a function again in a new image of this executable.
//!
//! A spawn or forkserver child runs the same executable at another load
//! address (ASLR), so a target travels as its offset from an anchor function
//! of this crate. The parent checks that the target lives in the main
//! executable (not in a library loaded at run time, which the child would not
//! have); the child checks that it runs the same file before it turns the
//! offset back into a function pointer.

use std::ffi::{CStr, c_void};
use std::os::fd::OwnedFd;

/// The function a child calls: it decodes the arguments with the passed
/// descriptors, calls the target (given as an address) and returns its encoded
/// return value, if it has one.
pub(crate) type Runner = fn(usize, &[u8], Vec<OwnedFd>) -> crate::Result<Option<Vec<u8>>>;

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

/// Turns the offsets a parent sent back into the runner and the target's
/// address, after checking that this is the parent's executable.
pub(crate) fn resolve(
    runner: i64,
    target: i64,
    parent_fingerprint: (u64, u64, i64),
) -> Option<(Runner, usize)> {
    if parent_fingerprint != fingerprint() {
        return None;
    }
    let runner_addr = anchor_addr().wrapping_add(runner as usize);
    let target_addr = anchor_addr().wrapping_add(target as usize);
    check_in_main_image(runner_addr).ok()?;
    check_in_main_image(target_addr).ok()?;
    // SAFETY: the parent computed `runner` as the offset of a function of type
    // Runner in the same executable file (same device, inode and layout, checked
    // above), so the address is that function in this image.
    let runner: Runner = unsafe { std::mem::transmute::<usize, Runner>(runner_addr) };
    Some((runner, target_addr))
}

/// The runner of a [`Process`](crate::Process) whose target is `fn(A)`.
pub(crate) fn process_runner<A: crate::Payload>() -> Runner {
    run_process::<A>
}

/// The runner of a [`spawn`](crate::spawn)ed function `fn(A) -> R`.
pub(crate) fn function_runner<A: crate::Payload, R: crate::Payload>() -> Runner {
    run_function::<A, R>
}

fn run_process<A: crate::Payload>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> crate::Result<Option<Vec<u8>>> {
    // SAFETY: a runner is only ever called with the target it was paired with
    // in Process::new::<A>, an `fn(A)`: its own address under fork, or the
    // same function found again in the same executable (see `resolve`).
    let target: fn(A) = unsafe { std::mem::transmute::<usize, fn(A)>(target) };
    let args: A = crate::payload::decode_with_fds(args, fds)?;
    target(args);
    Ok(None)
}

/// What a [`Function`](crate::Function) runs: decode the argument, call the
/// target (given as an address), append the encoded result to the buffer.
pub(crate) type ValueRunner = fn(usize, &[u8], &mut Vec<u8>) -> crate::Result<()>;

/// The value runner of a `fn(A) -> R`.
pub(crate) fn value_runner<A: crate::Payload, R: crate::Payload>() -> ValueRunner {
    run_value::<A, R>
}

fn run_value<A: crate::Payload, R: crate::Payload>(
    target: usize,
    args: &[u8],
    out: &mut Vec<u8>,
) -> crate::Result<()> {
    // SAFETY: Function::new::<A, R> pairs this runner with an `fn(A) -> R`,
    // found again in the same executable (see `resolve_value`).
    let target: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    let args: A = crate::payload::decode(args)?;
    let value = target(args);
    crate::payload::append(&value, out)?;
    Ok(())
}

/// As [`resolve`], for a value runner.
pub(crate) fn resolve_value(
    runner: i64,
    target: i64,
    parent_fingerprint: (u64, u64, i64),
) -> Option<(ValueRunner, usize)> {
    if parent_fingerprint != fingerprint() {
        return None;
    }
    let runner_addr = anchor_addr().wrapping_add(runner as usize);
    let target_addr = anchor_addr().wrapping_add(target as usize);
    check_in_main_image(runner_addr).ok()?;
    check_in_main_image(target_addr).ok()?;
    // SAFETY: the offset came from `value_runner` or a star runner (a
    // ValueRunner) in the same executable file (checked above).
    let runner: ValueRunner = unsafe { std::mem::transmute::<usize, ValueRunner>(runner_addr) };
    Some((runner, target_addr))
}

macro_rules! star_runners {
    ($($name:ident $run:ident ($($t:ident $v:ident),+);)*) => {$(
        /// The value runner of a function of several arguments, called with a tuple.
        pub(crate) fn $name<$($t: crate::Payload,)+ R: crate::Payload>() -> ValueRunner {
            $run::<$($t,)+ R>
        }

        fn $run<$($t: crate::Payload,)+ R: crate::Payload>(
            target: usize,
            args: &[u8],
            out: &mut Vec<u8>,
        ) -> crate::Result<()> {
            // SAFETY: StarFunction::erase pairs this runner with an
            // `fn($($t),+) -> R`, found again in the same executable.
            let target: fn($($t),+) -> R = unsafe { std::mem::transmute::<usize, fn($($t),+) -> R>(target) };
            let ($($v,)+): ($($t,)+) = crate::payload::decode(args)?;
            let value = target($($v),+);
            crate::payload::append(&value, out)?;
            Ok(())
        }
    )*};
}

star_runners! {
    star2_runner run_star2 (A a, B b);
    star3_runner run_star3 (A a, B b, C c);
    star4_runner run_star4 (A a, B b, C c, D d);
    star5_runner run_star5 (A a, B b, C c, D d, E e);
}

fn run_function<A: crate::Payload, R: crate::Payload>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> crate::Result<Option<Vec<u8>>> {
    // SAFETY: as in run_process; spawn::<A, R> pairs this runner with an `fn(A) -> R`.
    let target: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    let args: A = crate::payload::decode_with_fds(args, fds)?;
    let value = target(args);
    Ok(Some(crate::payload::encode(&value)?))
}
