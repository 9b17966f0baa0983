//! Fuzzes both ends of the link to a process on another host: the agent
//! reading a parent's bootstrap and messages, the parent reading an agent's.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::link(data));
