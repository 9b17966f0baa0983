//! The runtime: who this process is and its children, the three start
//! methods, the fork server and resource tracker helpers, and the child's
//! bootstrap.

pub(crate) mod bootstrap;
pub(crate) mod child;
pub(crate) mod forkserver;
pub(crate) mod helper;
pub(crate) mod runtime;
pub(crate) mod start;
pub(crate) mod tracker;
