//! Who this process is and what it knows of others: `current_process()`,
//! `parent_process()`, `active_children()` ([`ProcessInfo`]), its authkey,
//! and `init()`.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, OsContext, Result};
use crate::rt::bootstrap;
use crate::rt::runtime::{self, Child};
use crate::sys;

/// What is known of a process: Python's `current_process()`,
/// `parent_process()` and the entries of `active_children()`.
///
/// It can be watched: [`is_alive`](ProcessInfo::is_alive),
/// [`join`](ProcessInfo::join) and [`join_timeout`](ProcessInfo::join_timeout)
/// mean, for each kind of info:
///
/// - `parent_process()`: the parent's end, seen through a sentinel the
///   parent gave this child at start (the read end of a pipe whose write end
///   only the parent holds: it reaches end of file when the parent dies,
///   however it dies, under every start method). No pid is polled, so a
///   reused pid is never mistaken for the parent.
/// - `active_children()`: the child's end, as [`Process::join`] sees it (the
///   child is reaped when it has ended).
/// - `current_process()`: always alive; joining it is an error, as CPython's
///   `AssertionError: can only join a child process`.
///
/// Its `Debug` output never shows the authentication key.
///
/// ```
/// let me = mp_proc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// assert_eq!(me.authkey().len(), 32);
/// assert!(!format!("{me:?}").contains(&format!("{:?}", me.authkey())));
/// assert!(mp_proc::parent_process().is_none());
/// assert!(me.is_alive());
/// assert!(me.join().is_err());
/// ```
#[derive(Clone)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
    authkey: Arc<[u8]>,
    watched: Watched,
}

/// How a [`ProcessInfo`]'s process is watched.
#[derive(Clone)]
enum Watched {
    /// This very process.
    Current,
    /// The parent, through its alive pipe's read end.
    Parent(Arc<OwnedFd>),
    /// A child of this process.
    Child(Arc<Child>),
}

impl ProcessInfo {
    /// The process's name (`MainProcess`, `Process-1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The authentication key: 32 random bytes made by the main process and
    /// inherited by every child (Python's `authkey`).
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// Whether the process still runs (Python's `is_alive()`): always true
    /// for [`current_process`]; for [`parent_process`], false once the
    /// parent has died; for an [`active_children`] entry, false once the
    /// child has ended.
    ///
    /// ```
    /// fn report(conn: mp_proc::Connection) {
    ///     let parent = mp_proc::parent_process().unwrap();
    ///     conn.send(&parent.is_alive()).unwrap();
    /// }
    /// let (here, there) = mp_proc::pipe(false)?;
    /// let mut p = mp_proc::Process::new(report, there);
    /// p.start()?;
    /// assert!(here.recv::<bool>()?, "the parent is alive while it reads");
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        match &self.watched {
            Watched::Current => true,
            Watched::Parent(_) | Watched::Child(_) => {
                matches!(self.ended(Duration::ZERO), Ok(false))
            }
        }
    }

    /// Waits at most `timeout` for the process to end: `true` once it has,
    /// `false` if it still runs (Python's `join(timeout)`, then
    /// `is_alive()`).
    ///
    /// Errors: [`Error::Invalid`] on [`current_process`] (a process cannot
    /// wait for its own end); the OS's failures to wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn wait_for_parent(conn: mp_proc::Connection) {
    ///     let parent = mp_proc::parent_process().unwrap();
    ///     let ended = parent.join_timeout(Duration::from_millis(1)).unwrap();
    ///     conn.send(&ended).unwrap();
    /// }
    /// let (here, there) = mp_proc::pipe(false)?;
    /// let mut p = mp_proc::Process::new(wait_for_parent, there);
    /// p.start()?;
    /// assert!(!here.recv::<bool>()?);
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.ended(timeout)
    }

    /// Waits for the process to end (Python's `join()`); see
    /// [`join_timeout`](ProcessInfo::join_timeout) for the errors.
    pub fn join(&self) -> Result<()> {
        while !self.ended(Duration::MAX)? {}
        Ok(())
    }

    /// A descriptor that becomes readable when the process ends (Python's
    /// `sentinel`, which `parent_process()` has too): `None` for
    /// [`current_process`].
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        match &self.watched {
            Watched::Current => None,
            Watched::Parent(alive) => Some(alive.as_fd()),
            Watched::Child(child) => Some(child.sentinel()),
        }
    }

    fn ended(&self, timeout: Duration) -> Result<bool> {
        match &self.watched {
            Watched::Current => Err(Error::Invalid {
                what: "join the current process",
                reason: "a process cannot wait for its own end (only a child or the parent \
                         can be joined)"
                    .to_owned(),
            }),
            Watched::Parent(alive) => {
                sys::fd::readable(alive.as_fd(), Some(timeout)).os("wait for the parent process")
            }
            Watched::Child(child) => Ok(child.wait(Some(timeout))?.is_some()),
        }
    }
}

impl fmt::Debug for ProcessInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessInfo")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("daemon", &self.daemon)
            .field("authkey", &"<hidden>")
            .finish()
    }
}

/// This process (Python's `current_process()`).
pub fn current_process() -> ProcessInfo {
    let me = runtime::me();
    ProcessInfo {
        name: me.name.clone(),
        pid: std::process::id(),
        daemon: me.daemon,
        authkey: me.authkey.clone(),
        watched: Watched::Current,
    }
}

/// Sets this process's authentication key (Python's
/// `current_process().authkey = key`): the key of the handshakes and
/// handles of the processes it starts from now on (a fork server already
/// running keeps the old one). For copies of a program that must share
/// one key (see [`connection::read_authkey_file`](crate::connection::read_authkey_file)).
/// An empty key is [`Error::Invalid`](crate::Error::Invalid).
///
/// ```
/// mp_proc::set_authkey(b"the job's key")?;
/// assert_eq!(mp_proc::current_process().authkey(), b"the job's key");
/// assert!(mp_proc::set_authkey(b"").is_err());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn set_authkey(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(crate::Error::Invalid {
            what: "set_authkey",
            reason: "an authkey cannot be empty".into(),
        });
    }
    let mut state = runtime::state();
    let mut me = (*state.me).clone();
    me.authkey = std::sync::Arc::from(key);
    state.me = std::sync::Arc::new(me);
    Ok(())
}

/// The process that created this one, `None` in the main process (Python's
/// `parent_process()`). Under forkserver it is the process that asked for the
/// child, not the fork server. It can be watched: see [`ProcessInfo`].
pub fn parent_process() -> Option<ProcessInfo> {
    let (me, alive) = {
        let state = runtime::state();
        (state.me.clone(), state.parent_alive.clone())
    };
    let ((name, pid), alive) = me.parent.as_ref().zip(alive)?;
    Some(ProcessInfo {
        name: name.clone(),
        pid: *pid,
        daemon: false,
        authkey: me.authkey.clone(),
        watched: Watched::Parent(alive),
    })
}

/// The children of this process that are still running; finished ones are
/// reaped on the way (Python's `active_children()`). Each can be watched
/// and joined: see [`ProcessInfo`].
pub fn active_children() -> Vec<ProcessInfo> {
    let authkey = runtime::me().authkey.clone();
    runtime::live_children()
        .into_iter()
        .map(|c| ProcessInfo {
            name: c.name.clone(),
            pid: c.pid,
            daemon: c.daemon,
            authkey: authkey.clone(),
            watched: Watched::Child(c),
        })
        .collect()
}

/// Runs the bootstrap of a spawn or forkserver child, if this process is one
/// (it then never returns); otherwise does nothing.
///
/// The bootstrap normally runs on its own, from a constructor that the C
/// runtime calls before `main`, so plain binaries, examples, unit and
/// integration tests and doctests need nothing. `init()` is the documented
/// line for the rare build where constructors do not run: call it first thing
/// in `main`. Without either, a spawned child would run `main` itself, so
/// `start()` refuses to start anything there ([`Error::NotBootstrapped`]).
///
/// ```
/// fn main() {
///     mp_proc::init();
///     // ...
/// }
/// # main();
/// ```
pub fn init() {
    bootstrap::run_if_child();
}

#[cfg(test)]
mod tests {
    use crate::{StartMethod, get_context};

    fn add((a, b): (u32, u32)) -> u32 {
        a + b
    }

    /// Spawn and forkserver children find their target in a unit-test binary
    /// too, with no line of set-up.
    #[test]
    fn every_start_method_works_in_a_unit_test_binary() {
        for method in StartMethod::ALL {
            let handle = get_context(method).spawn(add, (2, 3)).unwrap();
            assert_eq!(handle.join().unwrap(), 5, "{method}");
        }
    }
}
