//! The runtime: who this process is and its children, the three start
//! methods, the fork server and resource tracker helpers, and the child's
//! bootstrap. Above the wire, below the user API.
//!
//! Inside, from the bottom: `helper` (role variables, a started helper,
//! fatal ends) <- `runtime` (the process state) <- `child` (a child's life)
//! <- `tracker`, `forkserver` (the helpers' loops), `sharer` (handles
//! redeemed by ticket) <- `handles` (where a handle's descriptor goes) <- `start` (the parent's
//! side of the start methods), `bootstrap` (the constructor's entry).

pub(crate) mod agent;
pub(crate) mod bootstrap;
pub(crate) mod child;
pub(crate) mod dial;
pub(crate) mod forkserver;
pub(crate) mod handles;
pub(crate) mod health;
pub(crate) mod helper;
pub(crate) mod keyfile;
pub(crate) mod launcher;
pub(crate) mod link;
pub(crate) mod remote;
pub(crate) mod runtime;
pub(crate) mod sharer;
pub(crate) mod start;
pub(crate) mod tracker;
pub(crate) mod tunnel;
