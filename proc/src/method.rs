//! The start methods: how a child process is started (Python's `'fork'`,
//! `'spawn'`, `'forkserver'`). A plain value that every layer names: the
//! errors, a child's bootstrap, the runtime and the user API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a child process is started, Python's start methods.
///
/// - `Fork` forks the calling process: fast, and the child starts with a copy
///   of the parent's memory, but a parent that runs other threads may hand the
///   child a lock that nobody will ever release (mp logs a warning, as CPython
///   3.12 does).
/// - `Spawn` runs the executable afresh and calls the target in it.
/// - `Forkserver` (the default, as in CPython 3.14 on Linux) asks a server
///   process, started by spawn on first use, to fork the child. The server
///   never runs user code or threads, so this is fast and safe in a threaded
///   program.
///
/// ```
/// use mp_proc::StartMethod;
/// assert_eq!(StartMethod::default(), StartMethod::Forkserver);
/// assert_eq!("spawn".parse::<StartMethod>(), Ok(StartMethod::Spawn));
/// assert_eq!(StartMethod::Fork.to_string(), "fork");
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// `'fork'`.
    Fork,
    /// `'spawn'`.
    Spawn,
    /// `'forkserver'`, the default.
    #[default]
    Forkserver,
}

impl StartMethod {
    /// Every start method, the default first (Python's `get_all_start_methods()` in 3.14).
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Forkserver,
        StartMethod::Fork,
        StartMethod::Spawn,
    ];

    /// Python's name: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }

    /// The class-name prefix of processes made by this method's context
    /// (`ForkProcess`, `SpawnProcess`, `ForkServerProcess`).
    pub(crate) fn process_prefix(self) -> &'static str {
        match self {
            StartMethod::Fork => "ForkProcess",
            StartMethod::Spawn => "SpawnProcess",
            StartMethod::Forkserver => "ForkServerProcess",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`StartMethod`] (Python's `ValueError('cannot find context for %r')`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseStartMethodError(String);

impl fmt::Display for ParseStartMethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot find context for {:?}", self.0)
    }
}

impl std::error::Error for ParseStartMethodError {}

impl FromStr for StartMethod {
    type Err = ParseStartMethodError;
    fn from_str(s: &str) -> Result<StartMethod, ParseStartMethodError> {
        StartMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| ParseStartMethodError(s.to_owned()))
    }
}
