#![doc = include_str!("../README.md")]
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod level;
mod logger;
mod sys;

pub use level::{Level, ParseLevelError};
pub use logger::{
    Logger, TARGET, get_logger, log_to_stderr, process_name, root_level, set_process_name,
    set_root_level,
};
