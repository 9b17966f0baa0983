//! Fuzzes the frame reader with descriptors: chunks a peer sends with descriptors attached.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::fd_frames(data));
