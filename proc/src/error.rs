//! The one error type of mp-proc.

use std::io;

/// A boxed error from a codec, kept out of the public signatures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in mp-proc. Each variant names the Python
/// exception it stands for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OS refused an operation (`OSError`). `op` says which.
    #[error("{op}: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The connection handshake failed (`AuthenticationError`): a wrong key
    /// on either side, or a peer that does not speak the handshake.
    #[error("authentication failed: {0}")]
    Authentication(String),

    /// The peer closed the connection and no message was pending (`EOFError`).
    #[error("end of file: the peer closed the connection")]
    Eof,

    /// The peer closed the connection in the middle of a message
    /// (`OSError('got end of file during message')`). The connection cannot be
    /// read any more.
    #[error("got end of file during message: {got} of {expected} bytes arrived")]
    TruncatedFrame {
        /// The length the frame announced (header included for a partial header).
        expected: u64,
        /// How many bytes arrived before the end of file.
        got: u64,
    },

    /// A frame announced a length over the connection's limit
    /// (`OSError('bad message length')`). Nothing was allocated; the rest of
    /// the stream cannot be trusted, so the connection cannot be read any more.
    #[error("bad message length: {len} bytes is over the limit of {max}")]
    FrameTooLong {
        /// The announced length.
        len: u64,
        /// The connection's limit ([`Connection::set_max_frame_len`](crate::Connection::set_max_frame_len)).
        max: u64,
    },

    /// A frame announced a negative length other than CPython's `-1` escape.
    /// CPython reads such a frame as empty and loses its place in the stream;
    /// mp refuses it and the connection cannot be read any more.
    #[error("bad message length: {len} is negative")]
    NegativeFrameLength {
        /// The announced length.
        len: i32,
    },

    /// An earlier error lost the frame boundary, so reading is refused.
    #[error("the connection lost its frame boundary after an earlier error and cannot be read")]
    Desynchronized,

    /// The message did not fit the buffer given to `recv_bytes_into`
    /// (`BufferTooShort`). The message was consumed and is returned whole.
    #[error("buffer too short: the message has {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),

    /// `recv` or `poll` on the write end of a one-way pipe (`OSError('connection is write-only')`).
    #[error("connection is write-only")]
    WriteOnly,

    /// `send` on the read end of a one-way pipe (`OSError('connection is read-only')`).
    #[error("connection is read-only")]
    ReadOnly,

    /// A value could not be serialized (`PicklingError`).
    #[error("could not serialize the value: {0}")]
    Encode(#[source] BoxError),

    /// Bytes did not deserialize as the asked type (`UnpicklingError`). For a
    /// received frame, the frame was consumed and the connection stays usable.
    #[error("could not deserialize the value: {0}")]
    Decode(#[source] BoxError),

    /// A value that can travel only into a child being started (a
    /// `plumbing::Packed`) was serialized elsewhere. (Handles themselves
    /// travel anywhere: see [`reduction`](crate::reduction).)
    #[error("a {kind} can be passed to a child process only inside its args")]
    HandleNotTransferable {
        /// The kind of handle.
        kind: &'static str,
    },

    /// `start()` on a process that was already started (`AssertionError('cannot start a process twice')`).
    #[error("cannot start a process twice")]
    AlreadyStarted,

    /// An operation that needs a started process (`AssertionError('can only join a started process')`).
    #[error("process {name} has not been started")]
    NotStarted {
        /// The process's name.
        name: String,
    },

    /// `terminate()` or `kill()` on a process that has already ended.
    #[error("process {name} has already exited with exit code {exitcode}")]
    AlreadyExited {
        /// The process's name.
        name: String,
        /// Its exit code.
        exitcode: i32,
    },

    /// A daemon process tried to start a child
    /// (`AssertionError('daemonic processes are not allowed to have children')`).
    #[error("daemonic processes are not allowed to have children")]
    DaemonChildren,

    /// The target (or its argument decoder) does not live in the executable
    /// that spawn and forkserver children run, e.g. it is in a shared library
    /// loaded at run time. Use the fork start method for such targets.
    #[error(
        "the {what} of process {name} lives in {object}, not in the executable that {method} children run; \
         only functions of the main executable can be started with spawn or forkserver"
    )]
    TargetNotInImage {
        /// The process's name.
        name: String,
        /// `"target"` or `"argument decoder"`.
        what: &'static str,
        /// The shared object the function was found in.
        object: String,
        /// The start method.
        method: crate::StartMethod,
    },

    /// This process was started to run a target but its bootstrap never ran,
    /// so `main` is running in its place. Starting processes from here would
    /// fork-bomb, so it is refused. Call [`init`](crate::init) first thing in `main`.
    #[error(
        "this process was started by mp-proc to run a target, but its bootstrap did not run before main; \
         call mp_proc::init() at the top of main"
    )]
    NotBootstrapped,

    /// A setuid or setcap program (one that runs under secure execution,
    /// `getauxval(AT_SECURE) != 0`) asked for something that runs its own
    /// executable again: the spawn or forkserver start method, or the
    /// resource tracker that [`SharedMemory`](crate::SharedMemory) needs.
    /// That copy would run the program's `main` with its privileges (the
    /// bootstrap variables are ignored there, so that no one else can use
    /// them), so it is refused. The fork start method works.
    ///
    /// ```
    /// let e = mp_proc::Error::SecureExecution { what: "spawn", instead: "use fork" };
    /// assert!(e.to_string().contains("setuid/setcap process (secure execution)"));
    /// ```
    #[error(
        "{what} is refused in a setuid/setcap process (secure execution): \
         it would re-run this executable's main with its privileges; {instead}"
    )]
    SecureExecution {
        /// What was refused: `"spawn"`, `"forkserver"` or `"the resource tracker"`.
        what: &'static str,
        /// What works instead.
        instead: &'static str,
    },

    /// The target of a [`spawn`](crate::spawn)ed child panicked. `message` is the panic's message.
    #[error("process {name} panicked: {message}")]
    Panicked {
        /// The process's name.
        name: String,
        /// The panic message.
        message: String,
    },

    /// A [`spawn`](crate::spawn)ed child ended without returning a value: it
    /// called [`exit`](crate::exit), was killed by a signal, or aborted.
    #[error("process {name} ended with exit code {exitcode} before returning a value")]
    NoResult {
        /// The process's name.
        name: String,
        /// Its exit code (`-N` for signal N).
        exitcode: i32,
    },

    /// The fork server died, so the exit code of a child it forked is lost.
    #[error("the fork server died: {reason}")]
    ForkserverDied {
        /// What was seen.
        reason: &'static str,
    },

    /// The process that held a lock died holding it. The lock is free again,
    /// but what it guarded may be half-updated. CPython waits forever here.
    #[error("the owner of this {what} died while holding it; what it guarded may be inconsistent")]
    OwnerDied {
        /// The kind of lock.
        what: &'static str,
    },

    /// Releasing a lock this thread does not hold (`RuntimeError: release unlocked lock`).
    #[error("release of a {what} this thread does not hold")]
    NotHeld {
        /// The kind of lock.
        what: &'static str,
    },

    /// Acquiring a (non-reentrant) `Lock` this thread already holds, which
    /// would wait forever.
    #[error("this thread already holds the Lock: acquiring it again would wait forever")]
    WouldDeadlock,

    /// A `BoundedSemaphore` released more times than acquired
    /// (`ValueError('Semaphore released too many times')`).
    #[error("semaphore released too many times (its bound is {bound})")]
    TooManyReleases {
        /// The semaphore's initial value.
        bound: usize,
    },

    /// The barrier is broken: aborted, reset while waited on, or a waiter
    /// timed out (`threading.BrokenBarrierError`).
    #[error("the barrier is broken")]
    BrokenBarrier,

    /// The action of a barrier panicked in the party that ran it (Python:
    /// the action's exception, raised from that party's `wait`). The
    /// barrier is broken: the other parties get [`Error::BrokenBarrier`].
    #[error("the action of the {what} panicked: {message}")]
    ActionPanicked {
        /// The object whose action it was (`"Barrier"`).
        what: &'static str,
        /// The panic's message.
        message: String,
    },

    /// A wait did not finish in time (`multiprocessing.TimeoutError`).
    #[error("timed out")]
    Timeout,

    /// The queue is empty (`queue.Empty`).
    #[error("the queue is empty")]
    Empty,

    /// The queue is full (`queue.Full`).
    #[error("the queue is full")]
    Full,

    /// The queue was closed (`ValueError('Queue is closed')`).
    #[error("the queue is closed")]
    Closed,

    /// An item is larger than the queue can carry in one message.
    #[error("an item of {len} bytes is larger than the queue's limit of {max} bytes")]
    ItemTooLarge {
        /// The encoded item's size.
        len: usize,
        /// The queue's limit.
        max: usize,
    },

    /// `JoinableQueue::task_done` called more times than items were put
    /// (`ValueError('task_done() called too many times')`).
    #[error("task_done() called too many times")]
    TaskDoneTooManyTimes,

    /// A `SharedMemory` was asked for a size it does not have (`ValueError`).
    #[error("shared memory {name:?} has {size} bytes, not {wanted}")]
    WrongSize {
        /// The segment's name.
        name: String,
        /// Its real size.
        size: usize,
        /// The size asked for.
        wanted: usize,
    },

    /// The start method was already set (`RuntimeError('context has already been set')`).
    #[error("context has already been set")]
    ContextAlreadySet,

    /// An index past the end (`IndexError`).
    #[error("{what} index {index} out of range (length {len})")]
    Index {
        /// What was indexed (`"Array"`, `"list"`).
        what: &'static str,
        /// The index asked for.
        index: usize,
        /// The length at the time.
        len: usize,
    },

    /// An argument the operation cannot take (`ValueError`).
    #[error("{what}: {reason}")]
    Invalid {
        /// The operation that refused it.
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// A count or a size past what the object can hold (`OverflowError`).
    #[error("{what}: {reason}")]
    Overflow {
        /// The operation that overflowed.
        what: &'static str,
        /// What went past its limit.
        reason: String,
    },

    /// The operation is not available on this backend (`NotImplementedError`),
    /// e.g. killing a thread of mp-dummy.
    #[error("{what} is not supported: {reason}")]
    NotImplemented {
        /// The operation.
        what: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },

    /// An object has no attribute of that name, or of that type
    /// (`AttributeError`), e.g. a namespace.
    #[error("'{object}' object has no attribute '{name}' of that type")]
    Attribute {
        /// The kind of object (`"Namespace"`).
        object: &'static str,
        /// The attribute asked for.
        name: String,
    },

    /// A received message claims descriptors that did not come with it
    /// (CPython's `RuntimeError('received 0 items of ancdata')`). The message
    /// was consumed (whatever descriptors did come were closed) and the
    /// connection stays usable.
    #[error(
        "the message claims {claimed} descriptor(s) but {arrived} came with it: \
         it was not sent with them, or they were lost on the way"
    )]
    DescriptorsMissing {
        /// How many descriptors the message's handles refer to.
        claimed: usize,
        /// How many came with it.
        arrived: usize,
    },

    /// A handle that travelled as a ticket (through a `Queue`, a one-way
    /// pipe, a manager: anywhere its descriptor cannot go along) could not
    /// be redeemed from the process that sent it.
    #[error("a {kind} sent as a ticket by process {pid} cannot be redeemed: {reason}")]
    TicketUnavailable {
        /// The kind of handle (`"Connection"`, `"Lock"`).
        kind: &'static str,
        /// The process that issued the ticket.
        pid: u32,
        /// Why.
        reason: TicketFailure,
    },

    /// A process could not be started on its host (`OSError`): the
    /// launcher failed or timed out, the copy there is not this build, or it
    /// broke the start's exchange.
    #[error("cannot start {name} on {host}: {reason}")]
    RemoteStart {
        /// The process's name.
        name: String,
        /// The launcher's host.
        host: String,
        /// What went wrong.
        reason: String,
    },

    /// An argument of a process started on another host holds a handle
    /// that cannot cross hosts (shared memory, a lock, a queue of this
    /// machine): pass a manager's proxy or a connection instead.
    #[error(
        "a {kind} cannot be passed to a process on another host ({host}); use a manager's proxy"
    )]
    NotAcrossHosts {
        /// The kind of handle.
        kind: String,
        /// The launcher's host.
        host: String,
    },

    /// A process on another host could not connect to an address its
    /// parent forwards over the launcher's link
    /// ([`Launcher::forward`](crate::Launcher::forward)): the parent could
    /// not connect to it (`reason` says why), or the link has ended.
    #[error("cannot connect to {address} through the launcher's link: {reason}")]
    Forwarded {
        /// The forwarded address.
        address: String,
        /// What went wrong.
        reason: String,
    },

    /// The other side of a call (a manager's server) reported an error
    /// (`RemoteError`); `message` is its text.
    #[error("remote error: {message}")]
    Remote {
        /// The error as the remote side reported it.
        message: String,
    },
}

/// Why a handle's ticket could not be redeemed ([`Error::TicketUnavailable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketFailure {
    /// It was redeemed before: a ticket is good for one receiver.
    AlreadyRedeemed,
    /// Its lifetime ([`reduction::ticket_lifetime`](crate::reduction::ticket_lifetime))
    /// passed before it was redeemed; the sender closed its copy.
    Expired,
    /// The sending process has exited, so nothing holds the descriptor.
    SenderGone,
    /// The sender did not answer in time, or broke the exchange.
    NoAnswer,
}

impl std::fmt::Display for TicketFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TicketFailure::AlreadyRedeemed => {
                "it was already redeemed (each ticket is good for one receiver)"
            }
            TicketFailure::Expired => "it expired before it was redeemed",
            TicketFailure::SenderGone => "the sending process has exited",
            TicketFailure::NoAnswer => "the sending process did not answer in time",
        })
    }
}

/// `Result<T, mp_proc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn os(op: &'static str, source: impl Into<io::Error>) -> Error {
        Error::Os {
            op,
            source: source.into(),
        }
    }

    /// Whether the error says the peer is gone (end of file, broken pipe, reset).
    pub fn is_disconnect(&self) -> bool {
        match self {
            Error::Eof | Error::TruncatedFrame { .. } => true,
            Error::Os { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// Maps an OS error to [`Error::Os`] with the operation's name.
pub(crate) trait OsContext<T> {
    fn os(self, op: &'static str) -> Result<T>;
}

impl<T, E: Into<io::Error>> OsContext<T> for std::result::Result<T, E> {
    fn os(self, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::os(op, e))
    }
}
