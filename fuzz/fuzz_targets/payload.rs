//! Fuzzes the payload decoder, over a nested value of every serde shape.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::payload(data));
