//! Fuzzes the listening side of the handshake, checking a peer's bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::deliver_challenge(data));
