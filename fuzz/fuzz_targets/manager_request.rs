//! Fuzzes the manager's request decoder (and a proxy's reply decoder).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_manager::plumbing::fuzzing::request(data));
