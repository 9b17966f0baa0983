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
        let fd = crate::rt::handles::push(self.0.fd().as_fd(), kind, handle_type(kind, elem), &[])?;
        (fd, handle_type(kind, elem)).serialize(s)
    }

    /// Rebuilds a handle that [`serialize`](Self::serialize) wrote with the
    /// same `kind` and `elem`; a handle of another type is an error.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        kind: &'static str,
        elem: u64,
        d: D,
    ) -> std::result::Result<Shared, D::Error> {
        let (fd, ty) = <(FdRef, u64)>::deserialize(d)?;
        if ty != handle_type(kind, elem) {
            return Err(crate::wire::payload::retyped(kind));
        }
        let fd = crate::rt::handles::take(fd, kind, ty, &[])?;
        let region = Region::from_fd(fd).map_err(|e| {
            crate::wire::payload::decode_failure(format!("a shared memory block: {e}"))
        })?;
        Ok(Shared(Arc::new(region)))
    }

    pub(crate) fn same(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
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
