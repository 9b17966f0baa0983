//! A function run in a manager's server process before it serves (Python's
//! `BaseManager.start(initializer, initargs)`), and [`SyncManagerBuilder`],
//! the options of a `SyncManager` that has one.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use mp_proc::plumbing::{ErasedFunction, Packed, is_exit_request, panic_message};
use mp_proc::{Function, Payload, StartMethod};
use serde::{Deserialize, Serialize};

use crate::{Core, Error, Result, SyncManager, server};

/// An initializer as a builder holds it: the function, and its arguments
/// packed (or why they could not be), reported at `start`.
#[derive(Debug)]
pub(crate) struct Initializer(ErasedFunction, Result<Packed>);

impl Initializer {
    pub(crate) fn new<A: Payload>(f: fn(A), args: A) -> Initializer {
        Initializer(Function::new(f).erased(), Packed::pack(&args))
    }

    /// What the server process gets, once `f` is known to be callable
    /// there (under spawn and forkserver it must be in the main executable).
    pub(crate) fn resolve(self, method: StartMethod) -> Result<Init> {
        self.0.check(method, "the manager's initializer")?;
        Ok(Init(self.0, self.1?))
    }
}

/// The initializer a server process runs.
#[derive(Serialize, Deserialize)]
pub(crate) struct Init(ErasedFunction, Packed);

/// What a server process tells its owner first when it has an initializer.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Initialized {
    /// It returned: the server goes on to listen.
    Ran,
    /// It panicked, with this message.
    Panicked(String),
    /// It could not be called (its arguments did not decode).
    Failed(String),
}

/// The target of a manager process with an initializer: runs it, tells the
/// owner how that went, then serves, as `server::run_server` does, unless it
/// failed. `mp_proc::exit` in it ends the process, as asked.
pub(crate) fn run_server_initialized((Init(f, args), server): (Init, server::ServerArgs)) {
    let ran = catch_unwind(AssertUnwindSafe(|| {
        args.with_handles(|bytes| f.call_encoded(bytes))
    }));
    let outcome = match ran {
        Ok(Ok(Ok(_))) => Initialized::Ran,
        Ok(Ok(Err(e)) | Err(e)) => Initialized::Failed(e.to_string()),
        Err(payload) if is_exit_request(&*payload) => resume_unwind(payload),
        Err(payload) => Initialized::Panicked(panic_message(&*payload)),
    };
    let ran = matches!(outcome, Initialized::Ran);
    if server.owner.send(&outcome).is_ok() && ran {
        server::run_server(server);
    }
}

/// How the owner reads [`Initialized`]: `Ok` if it ran, else the error
/// `start` returns (after the server process, which ends, is reaped).
pub(crate) fn started(
    name: &str,
    report: Result<Initialized>,
    process: &mut mp_proc::Process,
) -> Result<()> {
    let error = match report {
        Ok(Initialized::Ran) => return Ok(()),
        Ok(Initialized::Panicked(message)) => Error::Panicked {
            name: name.to_owned(),
            message,
        },
        Ok(Initialized::Failed(reason)) => Error::Invalid {
            what: "the manager's initializer",
            reason: format!("its arguments could not be passed: {reason}"),
        },
        // Its end of the connection closed: the process ended in the
        // initializer (`mp_proc::exit`, a signal, an abort).
        Err(Error::Eof) => match process.join() {
            Ok(exitcode) => Error::NoResult {
                name: name.to_owned(),
                exitcode,
            },
            Err(e) => e,
        },
        Err(e) => e,
    };
    let _ = process.kill();
    let _ = process.join();
    Err(error)
}

/// The options of a [`SyncManager`]: how its server process starts, and a
/// function it runs before it serves (Python's `SyncManager().start(
/// initializer, initargs)`).
///
/// ```
/// use mp_manager::{NamespaceProxy, SyncManager};
///
/// fn init(ns: NamespaceProxy) {
///     ns.set("ready", &true).unwrap();
/// }
///
/// let outer = SyncManager::start()?;
/// let ns = outer.namespace()?;
/// let m = SyncManager::builder().initializer(init, ns.clone()).start()?;
/// assert_eq!(ns.get::<bool>("ready")?, true);
/// m.shutdown()?;
/// # Ok::<(), mp_manager::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct SyncManagerBuilder {
    method: Option<StartMethod>,
    initializer: Option<Initializer>,
}

impl SyncManagerBuilder {
    /// How [`start`](Self::start) starts the server process (default:
    /// `mp_proc::get_start_method()`).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` in the server process before it serves (Python's
    /// `initializer`, `initargs`). The arguments may hold handles and
    /// proxies. If `f` panics, [`start`](Self::start) fails with
    /// [`Error::Panicked`] and no server is left running.
    pub fn initializer<A: Payload>(mut self, f: fn(A), args: A) -> Self {
        self.initializer = Some(Initializer::new(f, args));
        self
    }

    /// Starts the manager process (named `SyncManager-N`) and connects to
    /// it, with `current_process().authkey()` as the key.
    pub fn start(self) -> Result<SyncManager> {
        let method = self.method.unwrap_or_else(mp_proc::get_start_method);
        let init = self.initializer.map(|i| i.resolve(method)).transpose()?;
        let authkey = mp_proc::current_process().authkey().to_vec();
        Core::start("SyncManager", method, None, &authkey, Vec::new(), init)
            .map(|core| SyncManager { core })
    }
}
