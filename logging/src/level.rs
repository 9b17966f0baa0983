//! The seven levels of Python's `multiprocessing` logger.

use std::fmt;
use std::str::FromStr;

/// A logging level, with the names and numbers of Python's `logging` and
/// `multiprocessing.util` (`SUBDEBUG` = 5, `SUBWARNING` = 25).
///
/// Levels are ordered by their number, so `Level::Info < Level::Warning`.
///
/// ```
/// use mp_logging::Level;
/// assert_eq!(Level::SubWarning as u8, 25);
/// assert_eq!(Level::SubDebug.name(), "SUBDEBUG");
/// assert_eq!("INFO".parse::<Level>(), Ok(Level::Info));
/// assert!(Level::Debug < Level::Info);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// `logging.NOTSET` (0): on the library's logger, "not set here": its
    /// [effective level](crate::Logger::effective_level) is then the root
    /// level ([`set_root_level`](crate::set_root_level)). Not a level records
    /// are written at, so not in [`Level::ALL`].
    NotSet = 0,
    /// `multiprocessing.SUBDEBUG` (5): the finest library detail.
    SubDebug = 5,
    /// `logging.DEBUG` (10).
    Debug = 10,
    /// `logging.INFO` (20): the process lifecycle lines.
    Info = 20,
    /// `multiprocessing.SUBWARNING` (25).
    SubWarning = 25,
    /// `logging.WARNING` (30): the default level.
    Warning = 30,
    /// `logging.ERROR` (40).
    Error = 40,
    /// `logging.CRITICAL` (50).
    Critical = 50,
}

impl Level {
    /// Every level records are written at, from the lowest to the highest
    /// ([`Level::NotSet`] is not one).
    pub const ALL: [Level; 7] = [
        Level::SubDebug,
        Level::Debug,
        Level::Info,
        Level::SubWarning,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];

    /// The word printed in a record: `SUBDEBUG DEBUG INFO SUBWARNING WARNING ERROR CRITICAL`.
    ///
    /// ```
    /// assert_eq!(mp_logging::Level::Warning.name(), "WARNING");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Level::NotSet => "NOTSET",
            Level::SubDebug => "SUBDEBUG",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::SubWarning => "SUBWARNING",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// The level with this number, if it is one of the seven or `NOTSET` (0).
    ///
    /// ```
    /// assert_eq!(mp_logging::Level::from_number(0), Some(mp_logging::Level::NotSet));
    /// assert_eq!(mp_logging::Level::from_number(25), Some(mp_logging::Level::SubWarning));
    /// assert_eq!(mp_logging::Level::from_number(26), None);
    /// ```
    pub fn from_number(number: u8) -> Option<Level> {
        std::iter::once(Level::NotSet)
            .chain(Level::ALL)
            .find(|l| *l as u8 == number)
    }

    /// The closest level of the `log` facade (used when records are propagated).
    pub fn to_log(self) -> log::Level {
        match self {
            Level::NotSet | Level::SubDebug => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::SubWarning | Level::Warning => log::Level::Warn,
            Level::Error | Level::Critical => log::Level::Error,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Level`] from a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLevelError {
    input: String,
}

impl fmt::Display for ParseLevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown logging level {:?}", self.input)
    }
}

impl std::error::Error for ParseLevelError {}

impl FromStr for Level {
    type Err = ParseLevelError;

    /// Parses a level name (any case) or its number.
    fn from_str(s: &str) -> Result<Level, ParseLevelError> {
        let t = s.trim();
        std::iter::once(Level::NotSet)
            .chain(Level::ALL)
            .find(|l| l.name().eq_ignore_ascii_case(t))
            .or_else(|| t.parse::<u8>().ok().and_then(Level::from_number))
            .ok_or_else(|| ParseLevelError {
                input: s.to_owned(),
            })
    }
}
