//! mp-dummy's integration tests: the conformance suites on threads, and
//! what only threads do.

mod conformance;
mod generic;
mod pool;
mod scenarios;
mod threads;
