//! Fuzzes handles (FnPointer, ErasedFunction, Packed, a Connection) made from bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_proc::plumbing::fuzzing::handles(data));
