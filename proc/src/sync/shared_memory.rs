//! `SharedMemory`: named blocks of shared memory, Python's
//! `multiprocessing.shared_memory.SharedMemory`.

use std::fmt;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::handle::handle_type;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, OsContext, Result};
use crate::sys::shm::{self, Region};

/// A named block of shared memory, Python's `SharedMemory`.
///
/// - [`create`](SharedMemory::create) makes a new segment (a name is made up
///   when none is given) and registers it with this process's resource
///   tracker: if the creator has not called [`unlink`](SharedMemory::unlink)
///   by the time it ends, however it ends (normal exit, panic, `SIGKILL`), the
///   tracker removes the name. Nothing is left in `/dev/shm`.
/// - [`attach`](SharedMemory::attach) opens an existing segment by name; an
///   attacher never unlinks.
/// - Dropping unmaps and never unlinks.
///
/// [`read_at`](SharedMemory::read_at) and [`write_at`](SharedMemory::write_at)
/// copy with volatile accesses and are always sound: the safe way in.
/// [`as_slice`](SharedMemory::as_slice) and [`as_mut_slice`](SharedMemory::as_mut_slice)
/// expose the bytes directly, as Python's `buf` does; other processes, and
/// clones of this handle, may write them at any time, so they are `unsafe`:
/// use them only where the program rules that out (a [`Lock`](crate::Lock),
/// an [`Event`](crate::Event) hand-off).
///
/// ```
/// use mp_proc::SharedMemory;
/// let block = SharedMemory::create(None, 16)?;
/// block.write_at(0, b"hello")?;
/// let other = SharedMemory::attach(block.name())?;
/// let mut five = [0u8; 5];
/// other.read_at(0, &mut five)?;
/// assert_eq!(&five, b"hello");
/// assert_eq!(other.size(), 16);
/// block.unlink()?;
/// assert!(SharedMemory::attach(block.name()).is_err());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct SharedMemory {
    name: String,
    region: Region,
}

static NAMES: AtomicU64 = AtomicU64::new(0);

fn made_up_name() -> String {
    let mut random = [0u8; 6];
    let _ = getrandom::fill(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "psm_{}_{}_{hex}",
        std::process::id(),
        NAMES.fetch_add(1, Ordering::Relaxed)
    )
}

fn valid(name: &str) -> Result<()> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.len() > 250 || bare.contains(['/', '\0', '\n']) {
        return Err(Error::Invalid {
            what: "shared memory name",
            reason: format!("invalid name {name:?}"),
        });
    }
    Ok(())
}

/// How to create a [`SharedMemory`] (Python's `SharedMemory(..., track=...)`,
/// 3.13): made by [`SharedMemory::options`].
///
/// ```
/// use mp_proc::SharedMemory;
/// // Not registered with the resource tracker: it outlives this process
/// // unless someone unlinks it (here, at once).
/// let block = SharedMemory::options().track(false).create(None, 64)?;
/// block.unlink()?;
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SharedMemoryOptions {
    track: bool,
}

impl SharedMemoryOptions {
    /// Whether the resource tracker unlinks the segment once its creator has
    /// ended without unlinking it (default `true`). With `false`, the segment
    /// stays until someone calls [`unlink`](SharedMemory::unlink) (another
    /// program may own its lifetime).
    pub fn track(self, track: bool) -> SharedMemoryOptions {
        SharedMemoryOptions { track }
    }

    /// Creates a segment of `size` bytes named `name` (or a made-up name),
    /// zero-filled, with these options. An existing name is an error.
    pub fn create(self, name: Option<&str>, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::Invalid {
                what: "SharedMemory::create",
                reason: "'size' must be a positive number".into(),
            });
        }
        let name = match name {
            Some(n) => {
                valid(n)?;
                n.trim_start_matches('/').to_owned()
            }
            None => made_up_name(),
        };
        if !self.track {
            let region = shm::shm_create(&name, size).os("shm_open")?;
            return Ok(SharedMemory { name, region });
        }
        // Register first: a death between create and register cannot leak.
        crate::rt::tracker::register(&name)?;
        match shm::shm_create(&name, size) {
            Ok(region) => Ok(SharedMemory { name, region }),
            Err(e) => {
                let _ = crate::rt::tracker::unregister(&name);
                Err(Error::os("shm_open", e))
            }
        }
    }
}

impl SharedMemory {
    /// Options for [`create`](SharedMemoryOptions::create): whether to
    /// track the segment.
    pub fn options() -> SharedMemoryOptions {
        SharedMemoryOptions { track: true }
    }

    /// Creates a segment of `size` bytes named `name` (or a made-up name),
    /// zero-filled. An existing name is an error.
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        SharedMemory::options().create(name, size)
    }

    /// Opens the existing segment `name`, whatever its size. A name that does
    /// not exist is an error.
    pub fn attach(name: &str) -> Result<SharedMemory> {
        valid(name)?;
        let region = shm::shm_attach(name).os("shm_open")?;
        Ok(SharedMemory {
            name: name.trim_start_matches('/').to_owned(),
            region,
        })
    }

    /// Opens the existing segment `name`, which must be `size` bytes long
    /// ([`Error::WrongSize`] otherwise).
    pub fn attach_sized(name: &str, size: usize) -> Result<SharedMemory> {
        let shm = SharedMemory::attach(name)?;
        if shm.size() != size {
            return Err(Error::WrongSize {
                name: shm.name,
                size: shm.region.len(),
                wanted: size,
            });
        }
        Ok(shm)
    }

    /// The segment's name (without a leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.region.len()
    }

    /// The bytes (Python's `buf`, read-only).
    ///
    /// # Safety
    /// Nothing may write the block while the slice lives: no other process,
    /// and no other handle or clone of it in this process (the program rules
    /// that out, e.g. with a [`Lock`](crate::Lock) every writer takes).
    ///
    /// ```
    /// let block = mp_proc::SharedMemory::create(None, 4)?;
    /// block.write_at(0, b"abcd")?;
    /// // SAFETY: no other handle to this new block exists.
    /// assert_eq!(unsafe { block.as_slice() }, b"abcd");
    /// # block.unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the caller's contract is the region's.
        unsafe { self.region.as_slice() }
    }

    /// The bytes, writable (Python's `buf`).
    ///
    /// # Safety
    /// Nothing else may read or write the block while the slice lives: no
    /// other process, and no other handle or clone of it in this process.
    ///
    /// ```
    /// let mut block = mp_proc::SharedMemory::create(None, 4)?;
    /// // SAFETY: no other handle to this new block exists.
    /// unsafe { block.as_mut_slice() }.copy_from_slice(b"wxyz");
    /// let mut out = [0; 4];
    /// block.read_at(0, &mut out)?;
    /// assert_eq!(&out, b"wxyz");
    /// # block.unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the caller's contract is the region's.
        unsafe { self.region.as_mut_slice() }
    }

    fn bounds(&self, offset: usize, len: usize) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size()) {
            return Err(Error::Invalid {
                what: "SharedMemory",
                reason: format!(
                    "bytes {offset}..+{len} are outside the block of {} bytes",
                    self.size()
                ),
            });
        }
        Ok(())
    }

    /// Copies `out.len()` bytes from `offset`.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.bounds(offset, out.len())?;
        self.region.read_bytes(offset, out);
        Ok(())
    }

    /// Copies `bytes` to `offset`.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.bounds(offset, bytes.len())?;
        self.region.write_bytes(offset, bytes);
        Ok(())
    }

    /// Unmaps this process's view (Python's `close()`); the name stays.
    pub fn close(self) -> Result<()> {
        drop(self);
        Ok(())
    }

    /// Removes the name (the memory lives on while mapped). A second unlink
    /// is an error, as in Python.
    pub fn unlink(&self) -> Result<()> {
        shm::shm_unlink(&self.name).os("shm_unlink")?;
        let _ = crate::rt::tracker::unregister(&self.name);
        Ok(())
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .finish()
    }
}

impl Clone for SharedMemory {
    /// Another view of the same block (a new mapping of the same memory).
    fn clone(&self) -> SharedMemory {
        let fd = self
            .region
            .fd()
            .try_clone()
            .expect("dup of a shared memory descriptor");
        let region = Region::from_fd(fd).expect("a second mapping of a mapped block");
        SharedMemory {
            name: self.name.clone(),
            region,
        }
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let ty = handle_type("SharedMemory", 0);
        let fd = crate::rt::handles::push(
            self.region.fd().as_fd(),
            "SharedMemory",
            ty,
            self.name.as_bytes(),
        )?;
        (fd, ty, &self.name).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (fd, ty, name) = <(crate::rt::handles::FdRef, u64, String)>::deserialize(d)?;
        if ty != handle_type("SharedMemory", 0) {
            return Err(crate::wire::payload::retyped("SharedMemory"));
        }
        let fd = crate::rt::handles::take(fd, "SharedMemory", ty, name.as_bytes())?;
        let region = Region::from_fd(fd).map_err(|e| {
            crate::wire::payload::decode_failure(format!("a shared memory block: {e}"))
        })?;
        Ok(SharedMemory { name, region })
    }
}
