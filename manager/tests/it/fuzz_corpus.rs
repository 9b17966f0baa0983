//! The manager fuzz target's committed corpus (`fuzz/corpus/<target>/`),
//! replayed as plain tests through the entry point the fuzz target calls,
//! so that CI needs no fuzzer. A crash the fuzzer finds becomes a
//! regression test by adding its input to the target's corpus directory.

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn manager_request() {
    let dir = corpus_dir("manager_request");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus is empty");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        eprintln!("{}", file.display());
        mp_manager::fuzzing::request(&data);
    }
}

/// Writes the seed corpus from real encodings:
/// `cargo test -p mp-manager --test it fuzz_corpus::write_seeds -- --ignored`.
/// Seeds are named `seed-NNN`; other files (inputs the fuzzer found) stay.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand to refresh the seeds"]
fn write_seeds() {
    for (target, _) in mp_manager::fuzzing::TARGETS {
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
        for (i, seed) in mp_manager::fuzzing::seeds(target).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
        }
    }
}
