//! `Process`, `spawn` and `JoinHandle` (who this process is: `info`).

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connection::Connection;
use crate::error::{Error, OsContext, Result};
use crate::method::StartMethod;
use crate::mutex::lock;
use crate::rt::bootstrap;
use crate::rt::child::{self, ExitRequest, Outcome};
use crate::rt::helper;
use crate::rt::launcher::Launcher;
use crate::rt::runtime::{self, Child};
use crate::rt::start::{self, Launch};
use crate::wire::payload;
use crate::wire::runners::{self, Runner};
use crate::{Payload, sys};

/// Arguments encoded at `start()`, with the value kept alive (its handles'
/// descriptors open) until the child has its own copies.
struct Encoded {
    bytes: Vec<u8>,
    fds: Vec<payload::TypedFd<RawFd>>,
    _keep: Box<dyn Send>,
}

type Encoder = Box<dyn FnOnce() -> Result<Encoded> + Send>;

/// A child process, Python's `multiprocessing.Process`.
///
/// Build it with [`Process::new`] and the builder methods, [`start`] it, then
/// [`join`] it for its exit code: 0 when the target returned, 1 when it
/// panicked, `n` after [`exit(n)`](exit), `-N` when signal `N` ended it.
///
/// The target is a plain `fn` (a closure that captures nothing coerces to
/// one) and its argument a [`Payload`], so the same call works under every
/// [`StartMethod`]. Handles in `args` (a [`Connection`], ...) arrive usable in
/// the child.
///
/// [`start`]: Process::start
/// [`join`]: Process::join
///
/// ```
/// use mp_proc::{Connection, Process, pipe};
///
/// fn greet((name, conn): (String, Connection)) {
///     conn.send(&format!("hello, {name}")).unwrap();
/// }
///
/// let (here, there) = pipe(true)?;
/// let mut p = Process::new(greet, ("bob".to_string(), there)).name("greeter");
/// p.start()?;
/// assert_eq!(here.recv::<String>()?, "hello, bob");
/// assert_eq!(p.join()?, 0);
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Process {
    name: String,
    identity: Vec<u32>,
    daemon: Option<bool>,
    method: Option<StartMethod>,
    runner: Runner,
    target: usize,
    encoder: Mutex<Option<Encoder>>,
    child: Option<Arc<Child>>,
    launcher: Launcher,
    /// Counted by [`Launcher::processes`] while this process exists.
    held: crate::rt::launcher::Use,
    /// A prober's start: made even while the host is down.
    probe: bool,
}

impl Process {
    /// A process that will run `target(args)`, named `Process-N` (`N` counts
    /// the processes this process has created; a child's children are
    /// `Process-N:M`).
    pub fn new<A: Payload>(target: fn(A), args: A) -> Process {
        Process::with_prefix("Process", target, args)
    }

    pub(crate) fn with_prefix<A: Payload>(prefix: &str, target: fn(A), args: A) -> Process {
        Process::build(
            prefix,
            runners::process_runner::<A>(),
            target as usize,
            args,
        )
    }

    fn build<A: Payload>(prefix: &str, runner: Runner, target: usize, args: A) -> Process {
        let count = runtime::next_count();
        let mut identity = runtime::me().identity.clone();
        identity.push(count);
        let numbers: Vec<String> = identity.iter().map(u32::to_string).collect();
        let local = Launcher::local();
        let encoder: Encoder = Box::new(move || {
            let (bytes, fds) = payload::encode_with_fds(&args)?;
            Ok(Encoded {
                bytes,
                fds,
                _keep: Box::new(args),
            })
        });
        Process {
            name: format!("{prefix}-{}", numbers.join(":")),
            identity,
            daemon: None,
            method: None,
            runner,
            target,
            encoder: Mutex::new(Some(encoder)),
            child: None,
            held: local.hold(),
            launcher: local,
            probe: false,
        }
    }

    /// Names the process (Python's `name=`). Records it logs carry this name.
    pub fn name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Renames the process (before it starts; the child sees the new name).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// As [`daemon`](Process::daemon), on a process being set up.
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = Some(daemon);
    }

    /// Makes the process a daemon or not (Python's `daemon=`; by default, as
    /// the current process). A daemon is terminated when its parent exits,
    /// and, unlike CPython's, also when its parent is killed; it may not start
    /// children of its own.
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = Some(daemon);
        self
    }

    /// Chooses the start method of this process (by default
    /// [`get_start_method`](crate::get_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> Process {
        self.method = Some(method);
        self
    }

    /// Starts the process on a host by `launcher` (by default
    /// [`Launcher::local`]: this machine, by the start method). On another
    /// host the process runs this same executable (checked: the same
    /// build), its arguments encoded as for spawn; a handle of this
    /// machine (shared memory, a lock, a queue) cannot go there
    /// ([`Error::NotAcrossHosts`]), a [`Connection`] can (its traffic
    /// travels over the launcher's link, as do the connections the process
    /// makes to the addresses the launcher
    /// [`forward`](Launcher::forward)s). Signals, `join` and the exit code
    /// work as for a local child.
    ///
    /// ```
    /// use mp_proc::{Launcher, Process};
    /// fn hello(name: String) {
    ///     assert_eq!(name, "far");
    /// }
    /// // An empty prefix starts the copy on this machine through the same
    /// // path as `Launcher::ssh(host)` or `Launcher::command(["srun", ..])`.
    /// let mut p = Process::new(hello, "far".to_string()).launcher(Launcher::command([""; 0]));
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn launcher(mut self, launcher: Launcher) -> Process {
        self.set_launcher(launcher);
        self
    }

    /// As [`launcher`](Process::launcher), on a process being set up.
    pub fn set_launcher(&mut self, launcher: Launcher) {
        self.held = launcher.hold();
        self.launcher = launcher;
    }

    /// The launcher this process starts by.
    pub fn get_launcher(&self) -> &Launcher {
        &self.launcher
    }

    /// Starts the child (Python's `start()`).
    ///
    /// Errors: [`Error::AlreadyStarted`] the second time;
    /// [`Error::DaemonChildren`] in a daemon process; an argument that does
    /// not serialize ([`Error::Encode`]); under spawn and forkserver, a target
    /// that does not live in the main executable ([`Error::TargetNotInImage`]);
    /// and the OS's refusals.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        let encoded = self.prepare()?;
        self.launch(encoded, None)
    }

    /// The checks every start makes, then the arguments, encoded.
    fn prepare(&self) -> Result<Encoded> {
        if helper::bootstrap_pending() {
            return Err(Error::NotBootstrapped);
        }
        bootstrap::keep_constructor();
        if runtime::me().daemon {
            return Err(Error::DaemonChildren);
        }
        let encoder = lock(&self.encoder).take().ok_or(Error::AlreadyStarted)?;
        encoder()
    }

    fn launch(&mut self, encoded: Encoded, result: Option<BorrowedFd<'_>>) -> Result<()> {
        let daemon = self.daemon.unwrap_or(runtime::me().daemon);
        let method = self.method.unwrap_or_else(runtime::start_method);
        let _ = runtime::live_children(); // reap finished children first, as CPython does
        runtime::state().ensure_exit_hook();
        let launch = Launch {
            name: &self.name,
            identity: self.identity.clone(),
            daemon,
            method,
            runner: self.runner,
            target: self.target,
            args: encoded.bytes,
            fds: encoded.fds.iter().map(|(fd, _)| *fd).collect(),
            fd_types: encoded.fds.iter().map(|(_, ty)| *ty).collect(),
            result,
            stdout: None,
        };
        let child = if self.launcher.is_local() {
            start::launch(launch)?
        } else if self.probe {
            crate::hosts::launch(launch, &self.launcher, true)?
        } else {
            crate::hosts::start(launch, &self.launcher, Process::probe_once)?
        };
        let child = Arc::new(child);
        runtime::state().children.push(child.clone());
        self.daemon = Some(daemon);
        self.method = Some(method);
        self.child = Some(child);
        Ok(())
    }

    /// A prober's try (see `crate::hosts`): a process that does nothing,
    /// started even on a host known to be down, and joined.
    fn probe_once(launcher: &Launcher) -> bool {
        fn arrived(_: ()) {}
        let mut p = Process::new(arrived, ())
            .name("HostProbe")
            .launcher(launcher.clone());
        p.probe = true;
        if p.start().is_err() {
            return false;
        }
        // It ends at once where the host is up; a link lost meanwhile
        // (-9) is no success. Keep-alives off, a partition could hold it
        // forever: past the start's bound, it is killed.
        let patience = launcher.timeout().saturating_add(launcher.get_keepalive());
        match p.join_timeout(patience) {
            Ok(Some(code)) => code == 0,
            Ok(None) => {
                let _ = p.kill();
                let _ = p.join();
                false
            }
            Err(_) => false,
        }
    }

    fn started(&self) -> Result<&Arc<Child>> {
        self.child.as_ref().ok_or_else(|| Error::NotStarted {
            name: self.name.clone(),
        })
    }

    /// Waits for the process to end and returns its exit code (Python's
    /// `join()`, which returns `None`; here the code comes back directly).
    pub fn join(&mut self) -> Result<i32> {
        let child = self.started()?;
        loop {
            if let Some(code) = child.wait(None)? {
                return Ok(code);
            }
        }
    }

    /// Waits at most `timeout` for the process to end: `Some(exit code)`, or
    /// `None` if it is still running (Python's `join(timeout)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// fn sleeper(conn: mp_proc::Connection) {
    ///     let _ = conn.recv_bytes(); // until the parent lets go
    /// }
    /// let (here, there) = mp_proc::pipe(true)?;
    /// let mut p = mp_proc::Process::new(sleeper, there);
    /// p.start()?;
    /// assert_eq!(p.join_timeout(Duration::from_millis(10))?, None);
    /// assert!(p.is_alive());
    /// drop(here);
    /// assert_eq!(p.join_timeout(Duration::from_secs(60))?, Some(0));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.started()?.wait(Some(timeout))
    }

    /// Whether the process has started and not yet ended.
    pub fn is_alive(&mut self) -> bool {
        match &self.child {
            Some(child) => matches!(child.wait(Some(Duration::ZERO)), Ok(None)),
            None => false,
        }
    }

    /// The exit code, once the process has ended: 0 ok, 1 after a panic, `n`
    /// after [`exit(n)`](exit), `-N` after signal `N`. `None` before that.
    pub fn exitcode(&self) -> Option<i32> {
        self.child
            .as_ref()
            .and_then(|c| c.wait(Some(Duration::ZERO)).ok().flatten())
    }

    /// The process id, once started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// The name: `Process-1`, `Process-1:2` in a child, or the one given.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Whether the process is (or will be) a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon.unwrap_or_else(|| runtime::me().daemon)
    }

    /// Sends `SIGTERM` (Python's `terminate()`). The child runs no cleanup
    /// code unless it handles the signal. A process that has already ended is
    /// [`Error::AlreadyExited`].
    pub fn terminate(&self) -> Result<()> {
        self.started()?.signal(libc::SIGTERM)
    }

    /// Sends `SIGINT` (Python 3.14's `interrupt()`), as Ctrl-C would. A
    /// child with no handler of its own ends with exit code `-SIGINT`
    /// (Rust has no `KeyboardInterrupt`: CPython's child raises one and ends
    /// with 1); a child that handles the signal runs its handler. A process
    /// that has already ended is [`Error::AlreadyExited`].
    ///
    /// The signal is never lost, even right after `start()`, under every
    /// start method: a child that has not yet reached its target ends with
    /// `-SIGINT` (its handler, installed by the target, is not there yet).
    /// Unlike CPython's, whose forkserver children ignore `SIGINT` until
    /// their bootstrap restores it (a `SIGINT` sent meanwhile is dropped).
    ///
    /// ```
    /// use mp_proc::{Event, Process};
    /// fn wait_for_ever(never: Event) {
    ///     let _ = never.wait(None); // nobody sets it
    /// }
    /// let mut p = Process::new(wait_for_ever, Event::new()?);
    /// p.start()?;
    /// p.interrupt()?;
    /// assert_eq!(p.join()?, -libc::SIGINT);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn interrupt(&self) -> Result<()> {
        self.started()?.signal(libc::SIGINT)
    }

    /// Sends `SIGKILL` (Python's `kill()`).
    pub fn kill(&self) -> Result<()> {
        self.started()?.signal(libc::SIGKILL)
    }

    /// A descriptor that becomes readable when the process ends (Python's
    /// `sentinel`), for use with `poll`/`epoll`; `None` before `start()`.
    ///
    /// Under fork and spawn it is a pidfd; under forkserver, the pipe on
    /// which the fork server reports the child's status. Both wake `poll`,
    /// `epoll` and so an event loop's waiter (tokio's `AsyncFd`, see
    /// `examples/tokio_connection.rs`), then [`join`](Self::join) returns at
    /// once. Only wait on it: reading it or closing it is not yours to do.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_proc::{Event, Process, connection::wait_fds};
    /// fn wait_for(go: Event) {
    ///     go.wait(None).unwrap();
    /// }
    /// let go = Event::new()?;
    /// let mut p = Process::new(wait_for, go.clone());
    /// p.start()?;
    /// let sentinel = p.sentinel().unwrap();
    /// assert!(wait_fds(&[sentinel], Some(Duration::ZERO))?.is_empty()); // running
    /// go.set();
    /// assert_eq!(wait_fds(&[sentinel], None)?, [0]); // it ended
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.child.as_ref().map(|c| c.sentinel())
    }
}

impl Drop for Process {
    /// Never blocks: a child that has ended is reaped now; one that is still
    /// running is reaped as soon as it ends, by a helper thread that exists
    /// only while such children do. No zombie is left either way.
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            runtime::adopt(child);
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Process");
        d.field("name", &self.name);
        if let Some(child) = &self.child {
            d.field("pid", &child.pid);
            match child.wait(Some(Duration::ZERO)) {
                Ok(Some(code)) => d.field("exitcode", &code),
                _ => d.field("state", &"started"),
            };
        } else {
            d.field("state", &"initial");
        }
        d.field("daemon", &self.is_daemon()).finish()
    }
}

/// Ends the current process with exit code `code`, Python's `sys.exit(code)`.
///
/// Called from the target of a child, it unwinds the target's stack (running
/// destructors, as `SystemExit` runs `finally` blocks) and the child exits
/// with `code` after its usual shutdown. Anywhere else it runs the process's
/// exit function (joining children) and exits.
///
/// ```no_run
/// fn worker(fail: bool) {
///     if fail {
///         mp_proc::exit(3);
///     }
/// }
/// let mut p = mp_proc::Process::new(worker, true);
/// p.start()?;
/// assert_eq!(p.join()?, 3);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn exit(code: i32) -> ! {
    if cfg!(panic = "unwind") && child::IN_TARGET.with(|t| t.get()) {
        std::panic::resume_unwind(Box::new(ExitRequest(code)));
    }
    std::process::exit(code)
}

/// Runs `f(args)` in a new child process with the default start method and
/// returns a handle to its return value, like `std::thread::spawn` for
/// processes.
///
/// A panic in the child comes back from [`JoinHandle::join`] as
/// [`Error::Panicked`] carrying the panic's message.
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let handle = mp_proc::spawn(square, 12)?;
/// assert_eq!(handle.join()?, 144);
///
/// fn boom(_: ()) -> u8 {
///     panic!("no luck")
/// }
/// let err = mp_proc::spawn(boom, ())?.join().unwrap_err();
/// assert!(matches!(err, mp_proc::Error::Panicked { ref message, .. } if message == "no luck"));
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn spawn<A: Payload, R: Payload>(f: fn(A) -> R, args: A) -> Result<JoinHandle<R>> {
    spawn_with(None, f, args)
}

pub(crate) fn spawn_with<A: Payload, R: Payload>(
    method: Option<StartMethod>,
    f: fn(A) -> R,
    args: A,
) -> Result<JoinHandle<R>> {
    let mut process = Process::build(
        "Process",
        runners::function_runner::<A, R>(),
        f as usize,
        args,
    );
    process.method = method;
    let encoded = process.prepare()?;
    let (reader, writer) = sys::fd::pipe().os("pipe")?;
    process.launch(encoded, Some(writer.as_fd()))?;
    drop(writer);
    Ok(JoinHandle {
        process,
        result: Connection::new(reader, true, false, false),
        _r: PhantomData,
    })
}

/// A child started by [`spawn`]; [`join`](JoinHandle::join) returns its value.
pub struct JoinHandle<R> {
    process: Process,
    result: Connection,
    _r: PhantomData<fn() -> R>,
}

impl<R: Payload> JoinHandle<R> {
    /// Waits for the child and returns what its function returned.
    ///
    /// Errors: [`Error::Panicked`] with the panic's message;
    /// [`Error::NoResult`] when the child ended without returning (it called
    /// [`exit`], was killed, or aborted), with its exit code; [`Error::Decode`]
    /// when the arguments or the value did not decode.
    pub fn join(mut self) -> Result<R> {
        let outcome = self.result.recv::<Outcome>();
        let exitcode = self.process.join()?;
        let name = self.process.name.clone();
        match outcome {
            Ok(Outcome::Returned(bytes)) => payload::decode(&bytes),
            Ok(Outcome::Panicked(message)) => Err(Error::Panicked { name, message }),
            Ok(Outcome::Failed(message)) => Err(Error::Decode(message.into())),
            Err(e) if e.is_disconnect() => Err(Error::NoResult { name, exitcode }),
            Err(e) => Err(e),
        }
    }

    /// The child process.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Whether the child has ended.
    pub fn is_finished(&self) -> bool {
        self.process.exitcode().is_some()
    }
}

impl<R> fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("process", &self.process)
            .finish()
    }
}
