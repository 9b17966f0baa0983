//! Runners: the monomorphized functions that call a target given as an
//! address, decoding its arguments and encoding what it returns. A runner
//! and its target travel as a pair (a child's bootstrap, a signed
//! [`ErasedFunction`](crate::ErasedFunction)); a runner is an `unsafe fn`,
//! because calling it with any other target is undefined behaviour.

use std::os::fd::OwnedFd;

use crate::Payload;
use crate::sys::image;
use crate::wire::payload::TypedFd;

/// The function a child calls: it decodes the arguments with the passed
/// descriptors, calls the target (given as an address) and returns its encoded
/// return value, if it has one.
///
/// Safety of a call: the target is the function the runner was paired with
/// where the pair was made (`Process::new::<A>` pairs `process_runner::<A>`
/// with an `fn(A)`), found again in this image.
pub(crate) type Runner =
    unsafe fn(usize, &[u8], Vec<TypedFd<OwnedFd>>) -> crate::Result<Option<Vec<u8>>>;

/// What a [`Function`](crate::Function) runs: decode the argument, call the
/// target (given as an address), append the encoded result to the buffer.
/// Calls have the contract of [`Runner`]'s.
pub(crate) type ValueRunner = unsafe fn(usize, &[u8], &mut Vec<u8>) -> crate::Result<()>;

/// Turns the offsets of a runner and its target back into the runner and the
/// target's address, after checking that this is the executable they were
/// made in and that both lie in its main image.
pub(crate) fn resolve(
    runner: i64,
    target: i64,
    fingerprint: (u64, u64, i64),
) -> Option<(Runner, usize)> {
    let runner = image::function_at(runner, fingerprint)?;
    let target = image::function_at(target, fingerprint)?;
    #[allow(unsafe_code)]
    // SAFETY: an `unsafe fn` pointer of the Runner type; calling it is
    // unsafe, and each caller argues for the pair it calls.
    let runner = unsafe { image::fn_from_addr::<Runner>(runner) };
    Some((runner, target))
}

/// As [`resolve`], for a value runner.
pub(crate) fn resolve_value(
    runner: i64,
    target: i64,
    fingerprint: (u64, u64, i64),
) -> Option<(ValueRunner, usize)> {
    let runner = image::function_at(runner, fingerprint)?;
    let target = image::function_at(target, fingerprint)?;
    #[allow(unsafe_code)]
    // SAFETY: as in `resolve`.
    let runner = unsafe { image::fn_from_addr::<ValueRunner>(runner) };
    Some((runner, target))
}

/// The runner of a [`Process`](crate::Process) whose target is `fn(A)`.
pub(crate) fn process_runner<A: Payload>() -> Runner {
    run_process::<A>
}

/// The runner of a [`spawn`](crate::spawn)ed function `fn(A) -> R`.
pub(crate) fn function_runner<A: Payload, R: Payload>() -> Runner {
    run_function::<A, R>
}

/// The value runner of a `fn(A) -> R`.
pub(crate) fn value_runner<A: Payload, R: Payload>() -> ValueRunner {
    run_value::<A, R>
}

/// # Safety
/// `target` is the address of an `fn(A)`.
#[allow(unsafe_code)]
unsafe fn run_process<A: Payload>(
    target: usize,
    args: &[u8],
    fds: Vec<TypedFd<OwnedFd>>,
) -> crate::Result<Option<Vec<u8>>> {
    // SAFETY: the caller's contract.
    let target: fn(A) = unsafe { image::fn_from_addr(target) };
    let args: A = crate::wire::payload::decode_with_fds(args, fds)?;
    crate::wire::payload::trusting(false, || target(args));
    Ok(None)
}

/// # Safety
/// `target` is the address of an `fn(A) -> R`.
#[allow(unsafe_code)]
unsafe fn run_function<A: Payload, R: Payload>(
    target: usize,
    args: &[u8],
    fds: Vec<TypedFd<OwnedFd>>,
) -> crate::Result<Option<Vec<u8>>> {
    // SAFETY: the caller's contract.
    let target: fn(A) -> R = unsafe { image::fn_from_addr(target) };
    let args: A = crate::wire::payload::decode_with_fds(args, fds)?;
    let value = crate::wire::payload::trusting(false, || target(args));
    Ok(Some(crate::wire::payload::encode(&value)?))
}

/// # Safety
/// `target` is the address of an `fn(A) -> R`.
#[allow(unsafe_code)]
unsafe fn run_value<A: Payload, R: Payload>(
    target: usize,
    args: &[u8],
    out: &mut Vec<u8>,
) -> crate::Result<()> {
    // SAFETY: the caller's contract.
    let target: fn(A) -> R = unsafe { image::fn_from_addr(target) };
    let args: A = crate::wire::payload::decode(args)?;
    let value = crate::wire::payload::trusting(false, || target(args));
    crate::wire::payload::append(&value, out)?;
    Ok(())
}

macro_rules! star_runners {
    ($($name:ident $run:ident ($($t:ident $v:ident),+);)*) => {$(
        /// The value runner of a function of several arguments, called with a tuple.
        pub(crate) fn $name<$($t: Payload,)+ R: Payload>() -> ValueRunner {
            $run::<$($t,)+ R>
        }

        /// # Safety
        /// `target` is the address of an `fn($($t),+) -> R`.
        #[allow(unsafe_code)]
        unsafe fn $run<$($t: Payload,)+ R: Payload>(
            target: usize,
            args: &[u8],
            out: &mut Vec<u8>,
        ) -> crate::Result<()> {
            // SAFETY: the caller's contract.
            let target: fn($($t),+) -> R = unsafe { image::fn_from_addr(target) };
            let ($($v,)+): ($($t,)+) = crate::wire::payload::decode(args)?;
            let value = crate::wire::payload::trusting(false, || target($($v),+));
            crate::wire::payload::append(&value, out)?;
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
