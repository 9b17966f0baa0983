//! Fuzzes a child's bootstrap reader.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::bootstrap(data));
