//! The manager fuzz target's committed corpus (`fuzz/corpus/<target>/`),
//! replayed as plain tests through the entry point the fuzz target calls,
//! so that CI needs no fuzzer. A crash the fuzzer finds becomes a
//! regression test by adding its input to the target's corpus directory.

#[test]
fn manager_request() {
    // Serialized with the other tests: its open files would count as
    // descriptors leaked by a test running alongside.
    let _g = mp_testkit::guard();
    for file in mp_testkit::corpus::files("manager_request") {
        let data = std::fs::read(&file).unwrap();
        eprintln!("{}", file.display());
        mp_manager::plumbing::fuzzing::request(&data);
    }
}

/// Writes the seed corpus from real encodings:
/// `cargo test -p mp-manager --test it fuzz_corpus::write_seeds -- --ignored`.
/// Seeds are named `seed-NNN`; other files (inputs the fuzzer found) stay.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand to refresh the seeds"]
fn write_seeds() {
    for (target, _) in mp_manager::plumbing::fuzzing::TARGETS {
        mp_testkit::corpus::write_seeds(target, &mp_manager::plumbing::fuzzing::seeds(target));
    }
}
