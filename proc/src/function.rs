//! Functions as values: a `fn(A) -> R` that another process of this
//! executable can call, as a pool sends its function to its workers.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::sys::image;
use crate::wire::handle::{HandleKey, Tag, type_tag};
use crate::{Payload, StartMethod};

/// A plain function that travels to other processes of this executable (it
/// goes as its offset in the executable, as a `Process` target does).
///
/// ```
/// fn double(x: u32) -> u32 {
///     2 * x
/// }
/// let f = mp_proc::Function::new(double);
/// assert_eq!(f.call(21), 42);
/// // Erased, it takes and returns encoded values (postcard: a small u32 is one byte).
/// assert_eq!(f.erased().call_encoded(&[21])?, [42]);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Function<A, R> {
    f: fn(A) -> R,
    erased: ErasedFunction,
    _types: PhantomData<fn(A) -> R>,
}

impl<A: Payload, R: Payload> Function<A, R> {
    /// Wraps `f`.
    pub fn new(f: fn(A) -> R) -> Function<A, R> {
        let erased = ErasedFunction::of(
            crate::wire::runners::value_runner::<A, R>() as usize,
            f as usize,
        );
        Function {
            f,
            erased,
            _types: PhantomData,
        }
    }

    /// Calls it here.
    pub fn call(&self, args: A) -> R {
        (self.f)(args)
    }

    /// The function without its types, to send and call on encoded values.
    pub fn erased(&self) -> ErasedFunction {
        self.erased
    }
}

impl<A, R> Clone for Function<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Function<A, R> {}

impl<A, R> fmt::Debug for Function<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("erased", &self.erased)
            .finish()
    }
}

/// A function of several arguments, called with a tuple of them: what
/// Python's `starmap` applies.
///
/// ```
/// use mp_proc::plumbing::StarFunction;
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
/// let f = (add as fn(u32, u32) -> u32).erase();
/// assert_eq!(f.call_encoded(&[2, 3])?, [5]);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub trait StarFunction<Args, R>: Copy + Send + Sync + 'static {
    /// The function without its types, taking the encoded tuple.
    fn erase(self) -> ErasedFunction;
}

impl<A: Payload, R: Payload> StarFunction<(A,), R> for fn(A) -> R {
    fn erase(self) -> ErasedFunction {
        // postcard encodes a one-tuple exactly as its one field.
        ErasedFunction::of(
            crate::wire::runners::value_runner::<A, R>() as usize,
            self as usize,
        )
    }
}

macro_rules! star {
    ($runner:ident ($($t:ident),+)) => {
        impl<$($t: Payload,)+ R: Payload> StarFunction<($($t,)+), R> for fn($($t),+) -> R {
            fn erase(self) -> ErasedFunction {
                ErasedFunction::of(crate::wire::runners::$runner::<$($t,)+ R>() as usize, self as usize)
            }
        }
    };
}

star!(star2_runner(A, B));
star!(star3_runner(A, B, C));
star!(star4_runner(A, B, C, D));
star!(star5_runner(A, B, C, D, E));

/// A [`Function`] without its types: it takes and returns encoded values.
///
/// Its bytes carry a tag under this process tree's key (see
/// [`HandleKey`](crate::wire::handle::HandleKey)): bytes that no process of the
/// tree made, or that were changed (a runner and a target swapped, an offset
/// moved), do not decode.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErasedFunction {
    runner: i64,
    target: i64,
    fingerprint: (u64, u64, i64),
    tag: Tag,
}

/// The signed parts of a function reference.
fn function_parts(runner: i64, target: i64, fingerprint: (u64, u64, i64), ty: u64) -> [u8; 48] {
    let mut b = [0u8; 48];
    for (i, v) in [
        runner as u64,
        target as u64,
        fingerprint.0,
        fingerprint.1,
        fingerprint.2 as u64,
        ty,
    ]
    .into_iter()
    .enumerate()
    {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

const ERASED: &str = "function reference";

thread_local! {
    /// Function references this thread made or checked already (at most
    /// 16): a pool worker gets the same few again with every task, and a
    /// caller makes the same few for every call, so each is signed or
    /// checked once.
    static CHECKED: std::cell::RefCell<Vec<ErasedFunction>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Serialize for ErasedFunction {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.runner, self.target, self.fingerprint, self.tag).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ErasedFunction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (runner, target, fingerprint, tag) =
            <(i64, i64, (u64, u64, i64), Tag)>::deserialize(d)?;
        let f = ErasedFunction {
            runner,
            target,
            fingerprint,
            tag,
        };
        if CHECKED.with(|c| c.borrow().contains(&f)) {
            return Ok(f);
        }
        let parts = function_parts(runner, target, fingerprint, 0);
        if !HandleKey::process().verify(ERASED, &[&parts], &tag) {
            return Err(crate::wire::payload::forged(ERASED));
        }
        remember(f);
        Ok(f)
    }
}

/// Adds `f`, whose tag is known good, to this thread's [`CHECKED`].
fn remember(f: ErasedFunction) {
    CHECKED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() == 16 {
            c.remove(0);
        }
        c.push(f);
    });
}

impl ErasedFunction {
    fn of(runner: usize, target: usize) -> ErasedFunction {
        let (runner, target, fingerprint) = (
            image::offset_of(runner),
            image::offset_of(target),
            image::fingerprint(),
        );
        let known = CHECKED.with(|c| {
            c.borrow()
                .iter()
                .find(|f| (f.runner, f.target, f.fingerprint) == (runner, target, fingerprint))
                .copied()
        });
        if let Some(f) = known {
            return f;
        }
        let parts = function_parts(runner, target, fingerprint, 0);
        let f = ErasedFunction {
            runner,
            target,
            fingerprint,
            tag: HandleKey::process().sign(ERASED, &[&parts]),
        };
        remember(f);
        f
    }

    /// Checks that another process started with `method` can call it: under
    /// spawn and forkserver it must live in the main executable.
    pub fn check(&self, method: StartMethod, what: &str) -> Result<()> {
        if method == StartMethod::Fork {
            return Ok(());
        }
        for addr in [
            image::address_of(self.runner),
            image::address_of(self.target),
        ] {
            if let Err(object) = image::check_in_main_image(addr) {
                return Err(Error::TargetNotInImage {
                    name: what.to_owned(),
                    what: "target",
                    object,
                    method,
                });
            }
        }
        Ok(())
    }

    /// Decodes the argument from `args`, calls the function, and encodes what
    /// it returns. A panic of the function is not caught here.
    pub fn call_encoded(&self, args: &[u8]) -> Result<Vec<u8>> {
        self.bind()?.call_encoded(args)
    }

    /// Finds the function in this process, once, for many calls.
    pub fn bind(&self) -> Result<BoundFunction> {
        let (runner, target) =
            crate::wire::runners::resolve_value(self.runner, self.target, self.fingerprint)
                .ok_or_else(|| Error::TargetNotInImage {
                    name: "a function".to_owned(),
                    what: "target",
                    object: "another build of this executable".to_owned(),
                    method: StartMethod::Spawn,
                })?;
        Ok(BoundFunction { runner, target })
    }
}

/// An [`ErasedFunction`] found in this process: cheap to call many times.
#[derive(Copy, Clone)]
pub struct BoundFunction {
    runner: crate::wire::runners::ValueRunner,
    target: usize,
}

impl BoundFunction {
    /// Decodes the argument from `args`, calls the function, and encodes what
    /// it returns. A panic of the function is not caught here.
    pub fn call_encoded(&self, args: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.call_into(args, &mut out)?;
        Ok(out)
    }

    /// As [`call_encoded`](Self::call_encoded), appending the encoded result
    /// to `out` (no allocation of its own).
    pub fn call_into(&self, args: &[u8], out: &mut Vec<u8>) -> Result<()> {
        #[allow(unsafe_code)]
        // SAFETY: a BoundFunction is made only by `ErasedFunction::bind`,
        // from a runner and target that `ErasedFunction::of` paired (the
        // pair's tag checked when it was decoded), found again in this image.
        unsafe {
            (self.runner)(self.target, args, out)
        }
    }
}

impl fmt::Debug for BoundFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundFunction").finish_non_exhaustive()
    }
}

/// A plain function pointer of any of the shapes [`FnPtr`] covers, that
/// travels to other processes of this executable as its offset (as a
/// [`Function`] does for `fn(A) -> R` of payloads). A library uses it to
/// send a generic function, monomorphized, to a process it starts: a
/// manager sends the factories of its registered types this way.
///
/// ```
/// fn seven() -> Vec<u8> {
///     vec![7]
/// }
/// let p = mp_proc::FnPointer::new(seven as fn() -> Vec<u8>);
/// let bytes = mp_proc::codec::encode(&p)?;
/// let back: mp_proc::FnPointer<fn() -> Vec<u8>> = mp_proc::codec::decode(&bytes)?;
/// assert_eq!(back.get()?(), [7]);
/// # Ok::<(), mp_proc::Error>(())
/// ```
///
/// Its bytes carry the function's type and a tag under this process tree's
/// key: bytes made for another type of function, by another process tree, or
/// changed on the way, do not decode.
pub struct FnPointer<F> {
    offset: i64,
    fingerprint: (u64, u64, i64),
    tag: Tag,
    _f: PhantomData<F>,
}

const POINTER: &str = "function pointer";

impl<F: 'static> Serialize for FnPointer<F> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.offset, self.fingerprint, type_tag::<F>(), self.tag).serialize(s)
    }
}

impl<'de, F: 'static> Deserialize<'de> for FnPointer<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (offset, fingerprint, ty, tag) = <(i64, (u64, u64, i64), u64, Tag)>::deserialize(d)?;
        if ty != type_tag::<F>() {
            return Err(crate::wire::payload::retyped(POINTER));
        }
        let parts = function_parts(offset, 0, fingerprint, ty);
        if !HandleKey::process().verify(POINTER, &[&parts], &tag) {
            return Err(crate::wire::payload::forged(POINTER));
        }
        Ok(FnPointer {
            offset,
            fingerprint,
            tag,
            _f: PhantomData,
        })
    }
}

impl<F: FnPtr + 'static> FnPointer<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> FnPointer<F> {
        let (offset, fingerprint) = (image::offset_of(f.to_addr()), image::fingerprint());
        let parts = function_parts(offset, 0, fingerprint, type_tag::<F>());
        FnPointer {
            offset,
            fingerprint,
            tag: HandleKey::process().sign(POINTER, &[&parts]),
            _f: PhantomData,
        }
    }

    /// Checks that another process started with `method` can call it: under
    /// spawn and forkserver it must live in the main executable.
    pub fn check(&self, method: StartMethod, what: &str) -> Result<()> {
        if method == StartMethod::Fork {
            return Ok(());
        }
        image::check_in_main_image(image::address_of(self.offset)).map_err(|object| {
            Error::TargetNotInImage {
                name: what.to_owned(),
                what: "function",
                object,
                method,
            }
        })
    }

    /// The function, in this process (an error if this process is another
    /// build of the executable).
    pub fn get(&self) -> Result<F> {
        let not_here = |object: String| Error::TargetNotInImage {
            name: "a function".to_owned(),
            what: "function",
            object,
            method: StartMethod::Spawn,
        };
        if self.fingerprint != image::fingerprint() {
            return Err(not_here("another build of this executable".to_owned()));
        }
        let addr = image::address_of(self.offset);
        image::check_in_main_image(addr).map_err(not_here)?;
        #[allow(unsafe_code)] // a function pointer from its address
        // SAFETY: `addr` is where `new` found a function of type `F` in this
        // same executable file (same fingerprint, checked above), relative
        // to the same anchor: the offset and the type are those `new` signed
        // (a `FnPointer` is made only by `new` or from bytes whose tag
        // checks under this process tree's key, type included); `F` is a
        // function pointer type (FnPtr is sealed to those).
        Ok(unsafe { image::fn_from_addr::<F>(addr) })
    }
}

impl<F> Clone for FnPointer<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for FnPointer<F> {}

impl<F> fmt::Debug for FnPointer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnPointer")
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The function pointer types a [`FnPointer`] carries: `fn() -> R`,
/// `fn(A) -> R` and `fn(A, B) -> R`.
pub trait FnPtr: Copy + sealed::Sealed {
    #[doc(hidden)]
    fn to_addr(self) -> usize;
}

macro_rules! fn_ptr {
    ($($a:ident),*) => {
        impl<$($a,)* R> sealed::Sealed for fn($($a),*) -> R {}
        impl<$($a,)* R> FnPtr for fn($($a),*) -> R {
            fn to_addr(self) -> usize {
                self as usize
            }
        }
    };
}

fn_ptr!();
fn_ptr!(A);
fn_ptr!(A, B);
