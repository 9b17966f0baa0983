//! The fuzz targets' committed corpus (`fuzz/corpus/<target>/`), replayed
//! as plain tests through the same entry points the fuzz targets call, so
//! that CI needs no fuzzer: every input returns, nothing panics, nothing
//! leaks. A crash the fuzzer finds becomes a regression test by adding its
//! input to the target's corpus directory.

use mp_testkit::guard;

fn replay(target: &str) {
    let _g = guard();
    let (_, run) = mp_proc::plumbing::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of mp_proc::plumbing::fuzzing");
    let files = mp_testkit::corpus::files(target);
    for file in files {
        let data = std::fs::read(&file).unwrap();
        eprintln!("{}", file.display());
        run(&data);
    }
}

#[test]
fn frames() {
    replay("frames");
}

#[test]
fn answer_challenge() {
    replay("answer_challenge");
}

#[test]
fn deliver_challenge() {
    replay("deliver_challenge");
}

#[test]
fn payload() {
    replay("payload");
}

#[test]
fn handles() {
    replay("handles");
}

#[test]
fn bootstrap() {
    replay("bootstrap");
}

#[test]
fn fd_frames() {
    replay("fd_frames");
}

#[test]
fn link() {
    replay("link");
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<&str> = mp_proc::plumbing::fuzzing::TARGETS
        .iter()
        .map(|t| t.0)
        .collect();
    let this = include_str!("fuzz_corpus.rs");
    for name in names {
        assert!(
            this.contains(&format!("replay(\"{name}\")")),
            "no replay test for {name}"
        );
    }
}

/// Writes the seed corpus from real encodings:
/// `cargo test -p mp-proc --test it fuzz_corpus::write_seeds -- --ignored`.
/// Seeds are named `seed-NNN`; other files (inputs the fuzzer found) stay.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand to refresh the seeds"]
fn write_seeds() {
    for (target, _) in mp_proc::plumbing::fuzzing::TARGETS {
        mp_testkit::corpus::write_seeds(target, &mp_proc::plumbing::fuzzing::seeds(target));
    }
}
