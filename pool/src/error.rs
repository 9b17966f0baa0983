//! The one error type of mp-pool.

/// What can go wrong with a pool or one of its tasks. Each variant names the
/// Python exception it stands for.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task's function panicked; `message` is the panic's message (the
    /// exception a task raised, re-raised by `get`).
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },

    /// The call's input iterator panicked while the pool pulled an item from
    /// it (Python's `imap` raising the input's exception from `next()`):
    /// `message` is the panic's message. An `imap` yields it in place of
    /// the items from the start of the task being pulled (CPython's
    /// position), then ends; a `map` or `starmap` fails with it.
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = mp_pool::Pool::new(Some(2))?;
    /// let input = (0..10).map(|i| if i == 3 { panic!("no item {i}") } else { i });
    /// let mut it = pool.imap(square, input);
    /// for i in 0..3 {
    ///     assert_eq!(it.next().unwrap()?, i * i);
    /// }
    /// assert!(matches!(it.next(), Some(Err(mp_pool::Error::InputPanicked { .. }))));
    /// assert!(it.next().is_none());
    /// # Ok::<(), mp_pool::Error>(())
    /// ```
    #[error("the input iterator panicked: {message}")]
    InputPanicked {
        /// The panic message.
        message: String,
    },

    /// The worker running the task died (killed, aborted, or `mp_proc::exit`
    /// inside the task). Only the tasks that worker held fail; it is replaced.
    /// CPython's pool waits forever here (bpo-22393).
    #[error("worker {worker} (pid {pid}) died with exit code {exitcode} while running the task")]
    WorkerDied {
        /// The worker's name (`ForkPoolWorker-3`).
        worker: String,
        /// Its process id.
        pid: u32,
        /// Its exit code (`-N` for signal N).
        exitcode: i32,
    },

    /// A call of the task's function ran longer than the pool's
    /// [`task_timeout`](crate::PoolBuilder::task_timeout): its worker was
    /// killed (`SIGKILL`) and replaced. `item` is the index of the item in
    /// its call's input. CPython's pool has no such limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = mp_pool::Error::TaskTimeout {
    ///     worker: "ForkPoolWorker-3".into(),
    ///     pid: 123,
    ///     item: 7,
    ///     limit: Duration::from_secs(2),
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     "item 7 ran past the task timeout of 2s in worker ForkPoolWorker-3 (pid 123); \
    ///      the worker was killed"
    /// );
    /// ```
    #[error(
        "item {item} ran past the task timeout of {limit:?} in worker {worker} (pid {pid}); \
         the worker was killed"
    )]
    TaskTimeout {
        /// The worker's name (`ForkPoolWorker-3`).
        worker: String,
        /// Its process id.
        pid: u32,
        /// The index of the item in its call's input.
        item: usize,
        /// The pool's task timeout.
        limit: std::time::Duration,
    },

    /// The task's argument or result could not be encoded or decoded
    /// (`MaybeEncodingError`).
    #[error("could not encode or decode the task's value: {message}")]
    Encoding {
        /// What the codec said.
        message: String,
    },

    /// The pool is closed or terminated and takes no more work
    /// (`ValueError('Pool not running')`).
    #[error("the pool is not running")]
    NotRunning,

    /// `join()` before `close()` or `terminate()` (`ValueError('Pool is still running')`).
    #[error("the pool is still running: close() or terminate() it before join()")]
    StillRunning,

    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,

    /// `SIGINT` (Ctrl-C) arrived while a call waited: the pool was terminated
    /// (`KeyboardInterrupt`).
    #[error("interrupted (SIGINT): the pool was terminated")]
    Interrupted,

    /// The result was not ready in time (`multiprocessing.TimeoutError`).
    /// `get_timeout` may be called again.
    #[error("timed out waiting for the result")]
    Timeout,

    /// The call was cancelled by [`AsyncResult::cancel`](crate::AsyncResult::cancel)
    /// before any of its tasks started (`concurrent.futures.CancelledError`).
    #[error("the call was cancelled before it started")]
    Cancelled,

    /// `successful()` on a result that is not ready (`ValueError`).
    #[error("the result is not ready")]
    NotReady,

    /// The worker initializer panicked: the pool is broken and runs nothing
    /// (instead of CPython's spin of workers that start and die).
    #[error("the pool's initializer panicked: {message}")]
    InitializerFailed {
        /// The panic message.
        message: String,
    },

    /// A bad argument to the pool itself (`processes(0)`, `chunksize(0)`, ...).
    #[error("invalid pool setting: {what}")]
    InvalidArgument {
        /// Which setting, and why.
        what: String,
    },

    /// The process layer failed (starting a worker, a connection).
    #[error(transparent)]
    Proc(#[from] ProcError),
}

/// An `mp_proc::Error`, shared (mp-proc's error is not `Clone`; a pool hands
/// one failure to every task it affects).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProcError(pub std::sync::Arc<mp_proc::Error>);

impl From<mp_proc::Error> for Error {
    fn from(e: mp_proc::Error) -> Error {
        match e {
            mp_proc::Error::Encode(m) | mp_proc::Error::Decode(m) => Error::Encoding {
                message: m.to_string(),
            },
            e => Error::Proc(ProcError(std::sync::Arc::new(e))),
        }
    }
}

impl Error {
    /// What an encoding error's record carries: its message without the
    /// prefix (it becomes an [`Error::Encoding`] again where it is read).
    pub(crate) fn encoding_message(&self) -> String {
        match self {
            Error::Encoding { message } => message.clone(),
            e => e.to_string(),
        }
    }
}

/// `Result<T, mp_pool::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
