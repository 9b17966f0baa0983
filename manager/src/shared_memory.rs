//! `SharedMemoryManager`: named shared memory blocks made by a manager's
//! server, which unlinks every one of them when it stops (a shutdown, the
//! manager dropped, its owner gone however it ended).
//!
//! The server makes the blocks, not the client (CPython's client makes
//! them and registers their names). mp's resource tracker is per process:
//! a block a client made would be unlinked when that client ends, not when
//! the manager does; made by the server, a block lives until the manager
//! stops, whichever process asked for it, and the server's own tracker
//! unlinks it even if the server is killed. The server unlinks only the
//! names it made, never one a client names.

use std::collections::BTreeSet;
use std::sync::Mutex;

use mp_proc::connection::Address;
use mp_proc::{ShareableItem, ShareableList, SharedMemory};
use serde::{Deserialize, Serialize};

use crate::link::unexpected;
use crate::protocol::{Failure, Reply, Request};
use crate::{Core, Error, Result};

/// The requests about blocks (CPython's `SharedMemoryServer` methods).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Makes a block of this many bytes; the reply is its name.
    Create(u64),
    /// Unlinks a block this server made (`release_segment`).
    Release(String),
    /// The names of the blocks it made and has not unlinked (`list_segments`).
    List,
    /// Makes a `ShareableList` of these items; the reply is its block's name.
    CreateList(Vec<ShareableItem>),
}

/// The names of the blocks a server made and has not unlinked yet.
#[derive(Default)]
pub(crate) struct Segments {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    names: BTreeSet<String>,
    /// All were unlinked (the server is stopping): no new ones.
    closed: bool,
}

fn fail(e: &Error) -> Reply {
    Reply::Fail(Failure::of(e))
}

impl Segments {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        mp_proc::plumbing::lock(&self.inner)
    }

    /// Serves `op`.
    pub(crate) fn serve(&self, op: Op) -> Reply {
        match op {
            Op::Create(size) => match self.create(size) {
                Ok(name) => Reply::Name(name),
                Err(e) => fail(&e),
            },
            Op::CreateList(items) => {
                let made = self.make(|| Ok(ShareableList::create(None, &items)?.into_shm()));
                match made {
                    Ok(name) => Reply::Name(name),
                    Err(e) => fail(&e),
                }
            }
            Op::Release(name) => {
                if !self.inner().names.remove(&name) {
                    return fail(&Error::Invalid {
                        what: "SharedMemoryManager",
                        reason: format!("{name:?} is not a block this manager made"),
                    });
                }
                match unlink(&name) {
                    Ok(()) => Reply::Ok,
                    Err(e) => fail(&e),
                }
            }
            Op::List => Reply::Names(self.inner().names.iter().cloned().collect()),
        }
    }

    fn create(&self, size: u64) -> Result<String> {
        let size = usize::try_from(size).map_err(|_| Error::Overflow {
            what: "SharedMemoryManager",
            reason: format!("a block of {size} bytes does not fit in memory"),
        })?;
        self.make(|| SharedMemory::create(None, size))
    }

    /// Makes a block with `create` and tracks its name.
    fn make(&self, create: impl FnOnce() -> Result<SharedMemory>) -> Result<String> {
        let mut inner = self.inner();
        if inner.closed {
            return Err(Error::Invalid {
                what: "SharedMemoryManager",
                reason: "the manager is shutting down".into(),
            });
        }
        // Made and recorded under the lock: the stop that takes the names
        // sees this one too.
        let block = create()?;
        inner.names.insert(block.name().to_owned());
        Ok(block.name().to_owned())
    }

    /// Unlinks every block made and not yet unlinked (a name a client
    /// unlinked itself is gone already, and skipped).
    pub(crate) fn unlink_all(&self) {
        let names = {
            let mut inner = self.inner();
            inner.closed = true;
            std::mem::take(&mut inner.names)
        };
        for name in names {
            if let Err(e) = unlink(&name) {
                mp_logging::get_logger().debug(format_args!("block {name:?} not unlinked: {e}"));
            }
        }
    }
}

/// Unlinks block `name` (CPython's `destroy_segment`: open it, unlink it).
fn unlink(name: &str) -> Result<()> {
    SharedMemory::attach(name)?.unlink()
}

/// Python's `multiprocessing.managers.SharedMemoryManager`: a manager
/// process that makes named shared memory blocks for its clients and
/// unlinks them all when it stops: on [`shutdown`](Self::shutdown), when
/// the manager that started it is dropped, and when the process that
/// started it is gone, however it ended (even `SIGKILL`).
///
/// Each block is an ordinary [`mp_proc::SharedMemory`] (or
/// [`mp_proc::ShareableList`]), attached by name: use it, pass it to child
/// processes; it stays until the manager stops (or
/// [`release`](Self::release) is called).
///
/// ```
/// use mp_manager::SharedMemoryManager;
///
/// let smm = SharedMemoryManager::start()?;
/// let block = smm.shared_memory(64)?;
/// block.write_at(0, b"hello")?;
/// let name = block.name().to_owned();
/// assert_eq!(smm.segments()?, vec![name.clone()]);
/// smm.shutdown()?;
/// // Unlinked: nothing can attach to it any more.
/// assert!(mp_proc::SharedMemory::attach(&name).is_err());
/// # Ok::<(), mp_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct SharedMemoryManager {
    core: Core,
}

impl SharedMemoryManager {
    /// Starts a manager process, named `SharedMemoryManager-N`, and
    /// connects to it, with `current_process().authkey()` as the key.
    pub fn start() -> Result<SharedMemoryManager> {
        SharedMemoryManager::start_with(mp_proc::get_start_method())
    }

    /// As [`start`](Self::start), with the server process started by
    /// `method`.
    ///
    /// ```
    /// let smm = mp_manager::SharedMemoryManager::start_with(mp_proc::StartMethod::Spawn)?;
    /// smm.shutdown()?;
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn start_with(method: mp_proc::StartMethod) -> Result<SharedMemoryManager> {
        let authkey = mp_proc::current_process().authkey().to_vec();
        Core::start_serving(
            "SharedMemoryManager",
            method,
            None,
            &authkey,
            Vec::new(),
            true,
        )
        .map(|core| SharedMemoryManager { core })
    }

    /// Connects to a running `SharedMemoryManager` at `address` with
    /// `authkey`. Blocks made through it live until that manager stops;
    /// dropping this one only disconnects.
    ///
    /// ```
    /// let smm = mp_manager::SharedMemoryManager::start()?;
    /// let key = mp_proc::current_process().authkey().to_vec();
    /// let other = mp_manager::SharedMemoryManager::connect(smm.address(), &key)?;
    /// let name = other.shared_memory(8)?.name().to_owned();
    /// drop(other);
    /// assert_eq!(smm.segments()?, vec![name]);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SharedMemoryManager> {
        Core::connect(address, authkey).map(|core| SharedMemoryManager { core })
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.core.address
    }

    /// A new zero-filled block of `size` bytes (Python's
    /// `smm.SharedMemory(size)`), made and tracked by the server.
    ///
    /// ```
    /// let smm = mp_manager::SharedMemoryManager::start()?;
    /// let block = smm.shared_memory(32)?;
    /// assert_eq!(block.size(), 32);
    /// assert!(smm.shared_memory(0).is_err());
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::Invalid {
                what: "SharedMemoryManager::shared_memory",
                reason: "'size' must be a positive number".into(),
            });
        }
        let name = self.create_block(size)?;
        SharedMemory::attach_sized(&name, size).inspect_err(|_| {
            let _ = self.release(&name);
        })
    }

    fn create_block(&self, size: usize) -> Result<String> {
        let request = Request::Segment(Op::Create(size as u64));
        match self.core.link.call(&request)? {
            Reply::Name(name) => Ok(name),
            r => Err(unexpected(r)),
        }
    }

    /// A new [`ShareableList`] of `items` (Python's
    /// `smm.ShareableList(sequence)`), made and tracked by the server.
    ///
    /// ```
    /// use mp_proc::ShareableItem;
    /// let smm = mp_manager::SharedMemoryManager::start()?;
    /// let list = smm.shareable_list(&["howdy".into(), 42.into(), ShareableItem::None])?;
    /// assert_eq!(list.get(1)?, ShareableItem::Int(42));
    /// let name = list.name().to_owned();
    /// smm.shutdown()?;
    /// assert!(mp_proc::ShareableList::attach(&name).is_err());
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn shareable_list(&self, items: &[ShareableItem]) -> Result<ShareableList> {
        let request = Request::Segment(Op::CreateList(items.to_vec()));
        let name = match self.core.link.call(&request)? {
            Reply::Name(name) => name,
            r => return Err(unexpected(r)),
        };
        ShareableList::attach(&name).inspect_err(|_| {
            let _ = self.release(&name);
        })
    }

    /// The names of the blocks the server made and has not unlinked
    /// (Python's `list_segments`), in name order.
    pub fn segments(&self) -> Result<Vec<String>> {
        match self.core.link.call(&Request::Segment(Op::List))? {
            Reply::Names(names) => Ok(names),
            r => Err(unexpected(r)),
        }
    }

    /// Unlinks block `name` now and stops tracking it (Python's
    /// `release_segment`); only a block this manager made.
    ///
    /// ```
    /// let smm = mp_manager::SharedMemoryManager::start()?;
    /// let block = smm.shared_memory(8)?;
    /// smm.release(block.name())?;
    /// assert!(smm.segments()?.is_empty());
    /// assert!(mp_proc::SharedMemory::attach(block.name()).is_err());
    /// assert!(smm.release("not_one_of_ours").is_err());
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn release(&self, name: &str) -> Result<()> {
        let request = Request::Segment(Op::Release(name.to_owned()));
        match self.core.link.call(&request)? {
            Reply::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Stops the manager process (when this `SharedMemoryManager` started
    /// it), which unlinks every block first, and waits for it; a connected
    /// one only disconnects.
    pub fn shutdown(mut self) -> Result<()> {
        self.core.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(reply: Reply) -> String {
        match reply {
            Reply::Name(n) => n,
            r => panic!("{r:?}"),
        }
    }

    /// Once the blocks are unlinked (the server stopping), a create that
    /// comes after is refused: nothing is made that no stop would unlink.
    #[test]
    fn a_create_after_the_stop_is_refused_and_leaves_nothing() {
        let segments = Segments::default();
        let made = name(segments.serve(Op::Create(8)));
        segments.unlink_all();
        assert!(SharedMemory::attach(&made).is_err());
        let late = segments.serve(Op::Create(8));
        assert!(
            matches!(&late, Reply::Fail(Failure::Remote(m)) if m.contains("shutting down")),
            "{late:?}"
        );
        let late = segments.serve(Op::CreateList(vec![ShareableItem::Int(1)]));
        assert!(matches!(late, Reply::Fail(_)), "{late:?}");
        assert!(matches!(segments.serve(Op::List), Reply::Names(n) if n.is_empty()));
    }

    /// Release takes only a name this server made, once; a zero size is
    /// an error that makes nothing.
    #[test]
    fn bad_requests_are_errors_that_make_and_unlink_nothing() {
        let segments = Segments::default();
        let foreign = SharedMemory::create(None, 8).unwrap();
        let refused = segments.serve(Op::Release(foreign.name().to_owned()));
        assert!(matches!(refused, Reply::Fail(_)), "{refused:?}");
        assert!(SharedMemory::attach(foreign.name()).is_ok());
        foreign.unlink().unwrap();
        let zero = segments.serve(Op::Create(0));
        assert!(matches!(zero, Reply::Fail(_)), "{zero:?}");
        assert!(matches!(segments.serve(Op::List), Reply::Names(n) if n.is_empty()));
        let made = name(segments.serve(Op::Create(8)));
        assert!(matches!(
            segments.serve(Op::Release(made.clone())),
            Reply::Ok
        ));
        assert!(matches!(segments.serve(Op::Release(made)), Reply::Fail(_)));
    }
}
