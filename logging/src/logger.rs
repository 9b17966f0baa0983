//! The library logger: one per process, like `logging.getLogger('multiprocessing')`.

use std::fmt::{self, Display, Write as _};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::{Level, sys};

/// The state behind every [`Logger`] handle. Atomics and a `OnceLock` only:
/// no lock that a fork could copy in its taken state.
struct Shared {
    level: AtomicU8,
    /// The root logger's level (Python's `logging.getLogger().level`): the
    /// effective level while `level` is `NOTSET`.
    root: AtomicU8,
    propagate: AtomicBool,
    /// The stderr handler, a `fern` dispatch that writes each record with one
    /// `write(2)`. Installed once; `log_to_stderr` never adds a second one.
    stderr: OnceLock<Box<dyn log::Log>>,
}

static SHARED: Shared = Shared {
    level: AtomicU8::new(Level::Warning as u8),
    root: AtomicU8::new(Level::Warning as u8),
    propagate: AtomicBool::new(false),
    stderr: OnceLock::new(),
};

/// The target of records this logger hands to `log` (its fern handler, and the
/// global logger when propagating).
pub const TARGET: &str = "multiprocessing";

/// A handle to the library's logger, Python's `multiprocessing.get_logger()`.
///
/// Every handle refers to the same per-process logger, so it is `Copy` and
/// costs nothing to obtain. Records below the logger's [`level`](Logger::level)
/// are dropped before their message is formatted; the others go to the stderr
/// handler if [`log_to_stderr`] installed it, and to the global `log` logger if
/// [`set_propagate`](Logger::set_propagate) asked for it. With neither, a
/// record goes nowhere, as in Python before `log_to_stderr()`.
///
/// ```
/// use mp_logging::{Level, get_logger};
/// let logger = get_logger();
/// logger.set_level(Level::Info);
/// assert_eq!(logger.level(), Level::Info);
/// assert!(logger.is_enabled_for(Level::Warning));
/// assert!(!logger.is_enabled_for(Level::Debug));
/// logger.info("nothing is printed: no handler is installed");
/// ```
#[derive(Copy, Clone, Debug)]
pub struct Logger {
    _private: (),
}

/// Returns the library's logger (Python's `multiprocessing.get_logger()`).
///
/// ```
/// let logger = mp_logging::get_logger();
/// logger.debug("dropped: the default level is WARNING");
/// ```
pub fn get_logger() -> Logger {
    Logger { _private: () }
}

/// Makes the library's logger write to stderr, and sets its level when `level`
/// is given; returns the logger (Python's `multiprocessing.log_to_stderr()`).
///
/// Each record is one line, `[LEVEL/ProcessName] message`, written with one
/// `write(2)`, so lines from many processes sharing a stderr never mix. Unlike
/// Python, calling it again adds no second handler: a record is printed once.
/// It never installs or replaces the global `log` logger, so a program's own
/// `env_logger` (or any other) keeps working beside it.
///
/// ```
/// use mp_logging::{Level, log_to_stderr};
/// let logger = log_to_stderr(Some(Level::Info));
/// logger.warning("doomed"); // prints "[WARNING/MainProcess] doomed" to stderr
/// log_to_stderr(None);       // still one handler; the level stays INFO
/// assert_eq!(logger.level(), Level::Info);
/// ```
pub fn log_to_stderr(level: Option<Level>) -> Logger {
    SHARED.stderr.get_or_init(|| {
        let (_, log) = fern::Dispatch::new()
            .level(log::LevelFilter::Trace)
            .chain(fern::Output::call(|record| {
                let mut line = String::with_capacity(128);
                let _ = writeln!(line, "{}", record.args());
                sys::write_stderr(line.as_bytes());
            }))
            .into_log();
        log
    });
    let logger = get_logger();
    if let Some(level) = level {
        logger.set_level(level);
    }
    logger
}

/// Sets the name that records carry (`MainProcess` until set).
///
/// The process library calls this in every child before the child's first
/// record (`Process-1`, `Process-1:2`, `SyncManager-1`, ...); a program does
/// not usually need to.
///
/// ```
/// mp_logging::set_process_name("Worker-7");
/// assert_eq!(mp_logging::process_name(), "Worker-7");
/// ```
pub fn set_process_name(name: impl Into<String>) {
    sys::set_name(name.into())
}

/// Sets the root level (Python's `logging.getLogger().setLevel`): the
/// library logger's effective level while its own is [`Level::NotSet`]. A
/// child started afterwards gets the effective level as its logger's level,
/// as in CPython. `WARNING` until set.
///
/// ```
/// use mp_logging::{Level, get_logger, set_root_level};
/// let logger = get_logger();
/// logger.set_level(Level::NotSet);
/// set_root_level(Level::Error);
/// assert_eq!(logger.effective_level(), Level::Error);
/// assert!(!logger.is_enabled_for(Level::Warning));
/// ```
pub fn set_root_level(level: Level) {
    if SHARED.root.load(Ordering::Relaxed) != level as u8 {
        SHARED.root.store(level as u8, Ordering::Relaxed);
    }
}

/// The root level set by [`set_root_level`]; `WARNING` until set.
pub fn root_level() -> Level {
    Level::from_number(SHARED.root.load(Ordering::Relaxed)).unwrap_or(Level::Warning)
}

/// The name records carry: the current process's name.
pub fn process_name() -> &'static str {
    sys::name()
}

impl Logger {
    /// Sets the lowest level that is logged (Python's `logger.setLevel`);
    /// [`Level::NotSet`] defers to the root level.
    pub fn set_level(&self, level: Level) {
        // Skipping a store that changes nothing spares a forked child a
        // copy-on-write fault.
        if SHARED.level.load(Ordering::Relaxed) != level as u8 {
            SHARED.level.store(level as u8, Ordering::Relaxed);
        }
    }

    /// The lowest level that is logged; `WARNING` until set.
    pub fn level(&self) -> Level {
        Level::from_number(SHARED.level.load(Ordering::Relaxed)).unwrap_or(Level::Warning)
    }

    /// The level that decides what is logged (Python's
    /// `getEffectiveLevel()`): [`level`](Self::level), or the
    /// [root level](root_level) when that is [`Level::NotSet`].
    ///
    /// ```
    /// use mp_logging::{Level, get_logger};
    /// let logger = get_logger();
    /// logger.set_level(Level::Info);
    /// assert_eq!(logger.effective_level(), Level::Info);
    /// ```
    pub fn effective_level(&self) -> Level {
        match self.level() {
            Level::NotSet => root_level(),
            level => level,
        }
    }

    /// Whether a record at `level` would be logged.
    pub fn is_enabled_for(&self, level: Level) -> bool {
        level >= self.effective_level()
    }

    /// Whether [`log_to_stderr`] has installed the stderr handler in this process.
    ///
    /// ```
    /// mp_logging::log_to_stderr(None);
    /// assert!(mp_logging::get_logger().has_stderr_handler());
    /// ```
    pub fn has_stderr_handler(&self) -> bool {
        SHARED.stderr.get().is_some()
    }

    /// Also hands every logged record to the global `log` logger (target
    /// `multiprocessing`), as Python's `logger.propagate = True` would. Off by
    /// default, as in Python, so the library does not write into a program's
    /// own log unless asked.
    ///
    /// ```
    /// let logger = mp_logging::get_logger();
    /// logger.set_propagate(true);
    /// assert!(logger.propagate());
    /// logger.set_propagate(false);
    /// ```
    pub fn set_propagate(&self, propagate: bool) {
        if SHARED.propagate.load(Ordering::Relaxed) != propagate {
            SHARED.propagate.store(propagate, Ordering::Relaxed);
        }
    }

    /// Whether records are handed to the global `log` logger too.
    pub fn propagate(&self) -> bool {
        SHARED.propagate.load(Ordering::Relaxed)
    }

    /// Logs `msg` at `level`. The message is formatted only if the level is enabled.
    ///
    /// ```
    /// use mp_logging::{Level, get_logger};
    /// get_logger().log(Level::Error, format_args!("{} went wrong", "something"));
    /// ```
    pub fn log(&self, level: Level, msg: impl Display) {
        if !self.is_enabled_for(level) {
            return;
        }
        let handler = SHARED.stderr.get();
        let propagate = self.propagate();
        if handler.is_none() && !propagate {
            return;
        }
        if let Some(handler) = handler {
            let line = Line { level, msg: &msg };
            handler.log(&record(level, format_args!("{line}")));
        }
        if propagate {
            log::logger().log(&record(level, format_args!("{msg}")));
        }
    }

    /// Logs at `SUBDEBUG` (5).
    pub fn sub_debug(&self, msg: impl Display) {
        self.log(Level::SubDebug, msg)
    }

    /// Logs at `DEBUG` (10).
    pub fn debug(&self, msg: impl Display) {
        self.log(Level::Debug, msg)
    }

    /// Logs at `INFO` (20).
    pub fn info(&self, msg: impl Display) {
        self.log(Level::Info, msg)
    }

    /// Logs at `SUBWARNING` (25).
    pub fn sub_warning(&self, msg: impl Display) {
        self.log(Level::SubWarning, msg)
    }

    /// Logs at `WARNING` (30).
    ///
    /// ```
    /// mp_logging::log_to_stderr(None).warning("doomed");
    /// ```
    pub fn warning(&self, msg: impl Display) {
        self.log(Level::Warning, msg)
    }

    /// Logs at `ERROR` (40).
    pub fn error(&self, msg: impl Display) {
        self.log(Level::Error, msg)
    }

    /// Logs at `CRITICAL` (50).
    pub fn critical(&self, msg: impl Display) {
        self.log(Level::Critical, msg)
    }
}

fn record<'a>(level: Level, args: fmt::Arguments<'a>) -> log::Record<'a> {
    log::Record::builder()
        .args(args)
        .level(level.to_log())
        .target(TARGET)
        .build()
}

/// `[LEVEL/ProcessName] message`, Python's `'[%(levelname)s/%(processName)s] %(message)s'`.
struct Line<'a, M: Display> {
    level: Level,
    msg: &'a M,
}

impl<M: Display> Display for Line<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}/{}] {}", self.level.name(), sys::name(), self.msg)
    }
}
