//! The fuzz targets' committed corpus (`fuzz/corpus/<target>/`), for the
//! tests that replay it and the ones that write its seeds.

use std::path::{Path, PathBuf};

/// The corpus directory of fuzz target `target`.
pub fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The files of `target`'s corpus, sorted; panics if there are none.
pub fn files(target: &str) -> Vec<PathBuf> {
    let dir = dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus of {target} is empty");
    files
}

/// Replaces `target`'s `seed-*` files with `seeds` (other files, inputs the
/// fuzzer found, stay).
pub fn write_seeds(target: &str, seeds: &[Vec<u8>]) {
    let dir = dir(target);
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
