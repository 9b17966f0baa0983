//! A shared region as a handle: what every process-shared primitive is made of.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, OsContext, Result};
use crate::rt::handles::FdRef;
use crate::sys::shm::Region;
use crate::sys::sync::{self, Taken};
use crate::wire::handle::handle_type;

/// A region shared by every clone of a handle, in every process it reaches.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<Region>);

impl Shared {
    pub(crate) fn new(len: usize) -> Result<Shared> {
        Ok(Shared(Arc::new(
            Region::anonymous(len).os("create shared memory")?,
        )))
    }

    /// Writes where the descriptor is ([`FdRef`]) and the handle's type: a handle of
    /// kind `kind` over items of type `elem` ([`type_tag`](crate::wire::handle::type_tag),
    /// 0 for none).
    pub(crate) fn serialize<S: Serializer>(
        &self,
        kind: &'static str,
        elem: u64,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        // `()` encodes as nothing: the bytes are the pair's.
        self.serialize_with(kind, elem, &(), s)
    }

    /// As [`serialize`](Self::serialize), followed by `extra`: plain data
    /// (no handle: it is encoded twice) that the descriptor's tag covers
    /// when the handle goes to a peer, so that no relay can pair this region
    /// with the `extra` of another handle.
    pub(crate) fn serialize_with<S: Serializer, X: Serialize>(
        &self,
        kind: &'static str,
        elem: u64,
        extra: &X,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        // A child's args are trusted as they are: nothing to sign.
        let body = match crate::wire::payload::way() {
            crate::wire::payload::Way::Child => Vec::new(),
            _ => crate::wire::payload::encode(extra).map_err(S::Error::custom)?,
        };
        let ty = handle_type(kind, elem);
        let fd = crate::rt::handles::push(self.0.fd().as_fd(), kind, ty, &body)?;
        (fd, ty, extra).serialize(s)
    }

    /// Rebuilds a handle that [`serialize`](Self::serialize) wrote with the
    /// same `kind` and `elem`; a handle of another type is an error.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        kind: &'static str,
        elem: u64,
        d: D,
    ) -> std::result::Result<Shared, D::Error> {
        Ok(Self::deserialize_with::<D, ()>(kind, elem, d)?.0)
    }

    /// Rebuilds a handle that [`serialize_with`](Self::serialize_with)
    /// wrote, with its `extra`, checked with the descriptor's tag.
    pub(crate) fn deserialize_with<'de, D: Deserializer<'de>, X>(
        kind: &'static str,
        elem: u64,
        d: D,
    ) -> std::result::Result<(Shared, X), D::Error>
    where
        X: Serialize + Deserialize<'de>,
    {
        use serde::de::Error as _;
        let (fd, ty, extra) = d.deserialize_tuple(
            3,
            WireVisitor::<X> {
                kind,
                elem,
                _x: std::marker::PhantomData,
            },
        )?;
        let body = match fd {
            FdRef::Inherited(_) => Vec::new(),
            _ => crate::wire::payload::encode(&extra).map_err(D::Error::custom)?,
        };
        let fd = crate::rt::handles::take(fd, kind, ty, &body)?;
        let region = Region::from_fd(fd).map_err(|e| {
            crate::wire::payload::decode_failure(format!("a shared memory block: {e}"))
        })?;
        Ok((Shared(Arc::new(region)), extra))
    }

    /// Writes where the descriptor is, as a field of another handle (whose
    /// own tag must cover the [`RegionRef`]: see
    /// [`serialize_with`](Self::serialize_with)).
    pub(crate) fn push_ref<E: serde::ser::Error>(
        &self,
        kind: &'static str,
        elem: u64,
    ) -> std::result::Result<RegionRef, E> {
        let ty = handle_type(kind, elem);
        let fd = crate::rt::handles::push(self.0.fd().as_fd(), kind, ty, &[])?;
        Ok(RegionRef { fd, ty })
    }

    /// The region that [`push_ref`](Self::push_ref) wrote with the same
    /// `kind` and `elem`.
    pub(crate) fn take_ref<E: serde::de::Error>(
        r: RegionRef,
        kind: &'static str,
        elem: u64,
    ) -> std::result::Result<Shared, E> {
        if r.ty != handle_type(kind, elem) {
            return Err(crate::wire::payload::retyped(kind));
        }
        let fd = crate::rt::handles::take(r.fd, kind, r.ty, &[])?;
        let region = Region::from_fd(fd).map_err(|e| {
            crate::wire::payload::decode_failure(format!("a shared memory block: {e}"))
        })?;
        Ok(Shared(Arc::new(region)))
    }

    /// Another mapping of the same memory, on a descriptor of its own: a
    /// view of the region as a handle of another type, which may go in
    /// one child's args beside this one (a descriptor travels as one type).
    pub(crate) fn another_mapping(&self) -> Result<Shared> {
        let fd = self
            .0
            .fd()
            .try_clone()
            .os("dup a shared memory descriptor")?;
        Ok(Shared(Arc::new(
            Region::from_fd(fd).os("map shared memory again")?,
        )))
    }

    pub(crate) fn same(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether both are the same memory: the same mapping, or mappings of
    /// the same file (a handle that went to a child and came back).
    pub(crate) fn same_memory(&self, other: &Shared) -> bool {
        let id = |s: &Shared| crate::sys::fd::identity(s.0.fd().as_fd()).ok();
        self.same(other) || id(self).is_some_and(|a| id(other) == Some(a))
    }
}

/// A region's descriptor as a field of another handle (a `Value`'s lock).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RegionRef {
    fd: FdRef,
    ty: u64,
}

/// A robust process-shared mutex at an offset of a shared region.
#[derive(Clone)]
pub(crate) struct RawLock {
    pub(crate) shared: Shared,
    pub(crate) offset: usize,
    pub(crate) what: &'static str,
}

impl RawLock {
    pub(crate) fn init(
        shared: Shared,
        offset: usize,
        recursive: bool,
        what: &'static str,
    ) -> Result<RawLock> {
        sync::mutex_init(&shared.0, offset, recursive).os("pthread_mutex_init")?;
        Ok(RawLock {
            shared,
            offset,
            what,
        })
    }

    /// Takes the lock, waiting until `deadline` (`None`: as long as it
    /// takes); `Ok(false)` when the deadline passed. A dead owner is
    /// [`Error::OwnerDied`], with the lock released again.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<bool> {
        self.outcome(sync::mutex_lock(&self.shared.0, self.offset, deadline))
    }

    pub(crate) fn try_lock(&self) -> Result<bool> {
        self.outcome(sync::mutex_try_lock(&self.shared.0, self.offset))
    }

    fn outcome(&self, r: std::io::Result<Taken>) -> Result<bool> {
        match r {
            Ok(Taken::Yes) => Ok(true),
            Ok(Taken::No) => Ok(false),
            Ok(Taken::OwnerDied) => {
                let _ = sync::mutex_unlock(&self.shared.0, self.offset);
                Err(Error::OwnerDied { what: self.what })
            }
            Err(e) if e.raw_os_error() == Some(libc::EDEADLK) => Err(Error::WouldDeadlock),
            Err(e) => Err(Error::os("lock", e)),
        }
    }

    pub(crate) fn unlock(&self) -> Result<()> {
        match sync::mutex_unlock(&self.shared.0, self.offset).os("unlock")? {
            true => Ok(()),
            false => Err(Error::NotHeld { what: self.what }),
        }
    }
}

/// Reads a handle's `(descriptor, type, extra)` and refuses a handle of
/// another type before it reads its `extra` (whose bytes, in another type's
/// handle, mean something else).
struct WireVisitor<X> {
    kind: &'static str,
    elem: u64,
    _x: std::marker::PhantomData<X>,
}

impl<'de, X: Deserialize<'de>> serde::de::Visitor<'de> for WireVisitor<X> {
    type Value = (FdRef, u64, X);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {} handle", self.kind)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let missing = |i| A::Error::invalid_length(i, &self);
        let fd: FdRef = seq.next_element()?.ok_or_else(|| missing(0))?;
        let ty: u64 = seq.next_element()?.ok_or_else(|| missing(1))?;
        if ty != handle_type(self.kind, self.elem) {
            return Err(crate::wire::payload::retyped(self.kind));
        }
        let extra: X = seq.next_element()?.ok_or_else(|| missing(2))?;
        Ok((fd, ty, extra))
    }
}
