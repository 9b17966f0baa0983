//! Fuzzes the frame reader: a byte stream from a peer, read frame by frame.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::frames(data));
