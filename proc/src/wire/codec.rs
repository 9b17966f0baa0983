//! The encoding of typed values between processes (postcard), for crates that
//! carry values of their own (a pool's arguments and results, a manager's
//! requests). Handles (`Connection`, queues, ...) cannot be encoded by
//! [`encode`]: they travel inside a child's `args`, or packed with their
//! descriptors in a [`Packed`] that itself goes into a child's `args`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::wire::handle::type_tag;

/// Encodes `value`.
///
/// ```
/// let bytes = mp_proc::codec::encode(&("a", 1u8))?;
/// assert_eq!(mp_proc::codec::decode::<(String, u8)>(&bytes)?, ("a".to_string(), 1));
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    crate::wire::payload::encode(value)
}

/// Decodes a value of type `T`; the bytes must be exactly one value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    crate::wire::payload::decode(bytes)
}

/// Appends the encoding of `value` to `out` and returns it.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Result<Vec<u8>> {
    crate::wire::payload::encode_into(value, out)
}

/// An error for a `Deserialize` implementation to return whose message
/// reaches the caller's [`Error::Decode`](crate::Error::Decode) (postcard
/// itself keeps only the fact that a custom error happened).
///
/// ```
/// use serde::{Deserialize, Deserializer};
/// #[derive(Debug)]
/// struct Even(u8);
/// impl<'de> Deserialize<'de> for Even {
///     fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Even, D::Error> {
///         let n = u8::deserialize(d)?;
///         if n % 2 == 1 {
///             return Err(mp_proc::plumbing::decode_failure(format!("{n} is odd")));
///         }
///         Ok(Even(n))
///     }
/// }
/// let e = mp_proc::codec::decode::<Even>(&[3]).unwrap_err();
/// assert!(e.to_string().contains("3 is odd"), "{e}");
/// ```
pub fn decode_failure<E: serde::de::Error>(message: String) -> E {
    crate::wire::payload::decode_failure(message)
}

/// Whether the value being serialized on this thread goes to a child process
/// being started (in its `args`, or in a [`Packed`]): CPython's
/// `get_spawning_popen() is not None`. A type may then include what only
/// its own children should get (a manager proxy includes its authkey).
///
/// ```
/// assert!(!mp_proc::plumbing::is_spawning());
/// ```
pub fn is_spawning() -> bool {
    crate::wire::payload::encoding_for_child()
}

/// The decoding side of [`is_spawning`]: whether the value being decoded on
/// this thread is one that this process tree made for this process (a
/// child's `args`, a [`Packed`] value), not bytes from a peer. A type may
/// then trust what only a parent puts there (a manager proxy's authkey).
///
/// ```
/// assert!(!mp_proc::plumbing::is_receiving_from_parent());
/// ```
pub fn is_receiving_from_parent() -> bool {
    crate::wire::payload::from_parent()
}

/// A value encoded once together with the descriptors of its handles, to be
/// given to many children: serializing a `Packed` into a child's `args`
/// moves its descriptors there, and [`unpack`](Packed::unpack) in the child
/// rebuilds the value, handles included. (A pool sends its initializer's
/// arguments to each worker this way.)
///
/// ```
/// let q = mp_proc::Queue::<u8>::new()?;
/// let packed = mp_proc::plumbing::Packed::pack(&(q.clone(), 7u8))?;
/// let (q2, n): (mp_proc::Queue<u8>, u8) = packed.unpack()?;
/// q2.put(n)?;
/// assert_eq!(q.get()?, 7);
/// # Ok::<(), mp_proc::Error>(())
/// ```
///
/// A `Packed` is unpacked only as the type it was packed as: another type is
/// an error, not a value built from bytes made for another type.
///
/// ```
/// let packed = mp_proc::plumbing::Packed::pack(&7u8)?;
/// assert!(packed.unpack::<bool>().is_err());
/// assert_eq!(packed.unpack::<u8>()?, 7);
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Packed {
    bytes: Vec<u8>,
    /// Each descriptor with the type of the handle that brought it.
    fds: Vec<(Arc<OwnedFd>, u64)>,
    /// The [`type_tag`] of the packed type.
    ty: u64,
}

impl Packed {
    /// Encodes `value`, keeping a duplicate of each handle's descriptor.
    pub fn pack<T: Serialize + ?Sized + 'static>(value: &T) -> Result<Packed> {
        let (bytes, raw) = crate::wire::payload::encode_with_fds(value)?;
        let fds = raw
            .into_iter()
            .map(|(fd, ty)| crate::sys::fd::dup_at_least(fd, 0).map(|fd| (Arc::new(fd), ty)))
            .collect::<std::io::Result<_>>()
            .map_err(|e| crate::Error::os("dup", e))?;
        Ok(Packed {
            bytes,
            fds,
            ty: type_tag::<T>(),
        })
    }

    /// Decodes the value, with fresh duplicates of its descriptors. `T` must
    /// be the type it was packed as.
    pub fn unpack<T: DeserializeOwned + 'static>(&self) -> Result<T> {
        if self.ty != type_tag::<T>() {
            return Err(crate::Error::Decode(
                format!(
                    "a value packed as another type cannot be unpacked as {}",
                    std::any::type_name::<T>()
                )
                .into(),
            ));
        }
        let fds = self.dup_fds()?;
        crate::wire::payload::decode_with_fds(&self.bytes, fds)
    }

    fn dup_fds(&self) -> Result<Vec<(OwnedFd, u64)>> {
        self.fds
            .iter()
            .map(|(fd, ty)| fd.try_clone().map(|fd| (fd, *ty)))
            .collect::<std::io::Result<_>>()
            .map_err(|e| crate::Error::os("dup", e))
    }

    /// The encoded bytes (without the descriptors).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Runs `f` with this value's descriptors available to the handles that
    /// code inside it decodes (e.g. a function's runner decoding its argument).
    pub fn with_handles<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let fds = self.dup_fds()?;
        Ok(crate::wire::payload::with_fds(fds, || {
            crate::wire::payload::trusting(true, || f(&self.bytes))
        }))
    }
}

impl Serialize for Packed {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let indices = self
            .fds
            .iter()
            .map(|(fd, ty)| crate::wire::payload::push_fd(fd.as_fd(), "packed value", *ty))
            .collect::<std::result::Result<Vec<u32>, S::Error>>()?;
        (&self.bytes, indices, self.ty).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if !crate::wire::payload::from_parent() {
            return Err(crate::wire::payload::decode_failure(
                "a packed value can be received only inside a child's args".to_owned(),
            ));
        }
        let (bytes, indices, ty) = <(Vec<u8>, Vec<u32>, u64)>::deserialize(d)?;
        let fds = indices
            .into_iter()
            .map(|i| {
                crate::wire::payload::take_typed_fd(i, "packed value")
                    .map(|(fd, ty)| (Arc::new(fd), ty))
            })
            .collect::<std::result::Result<_, D::Error>>()?;
        Ok(Packed { bytes, fds, ty })
    }
}
