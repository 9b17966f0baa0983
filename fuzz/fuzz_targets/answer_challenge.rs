//! Fuzzes the connecting side of the handshake, answering a peer's bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::answer_challenge(data));
