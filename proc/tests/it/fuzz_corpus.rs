//! The fuzz targets' committed corpus (`fuzz/corpus/<target>/`), replayed
//! as plain tests through the same entry points the fuzz targets call, so
//! that CI needs no fuzzer: every input returns, nothing panics, nothing
//! leaks. A crash the fuzzer finds becomes a regression test by adding its
//! input to the target's corpus directory.

use std::path::{Path, PathBuf};

use mp_testkit::guard;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The files of `target`'s corpus, sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let _g = guard();
    let (_, run) = mp_proc::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of mp_proc::fuzzing");
    let files = corpus(target);
    assert!(!files.is_empty(), "the corpus of {target} is empty");
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
fn every_target_has_a_test_here() {
    let names: Vec<&str> = mp_proc::fuzzing::TARGETS.iter().map(|t| t.0).collect();
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
    for (target, _) in mp_proc::fuzzing::TARGETS {
        write_target_seeds(target, mp_proc::fuzzing::seeds(target));
    }
}

/// Replaces `target`'s `seed-*` files with `seeds`.
pub(crate) fn write_target_seeds(target: &str, seeds: Vec<Vec<u8>>) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
    }
}
