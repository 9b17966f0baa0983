//! The layer check on toy crates, and on the workspace.
use super::*;

/// A crate in a fresh temporary folder: (path, text) pairs.
fn tree(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-layers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const TOY: Crate = Crate {
    src: "toy/src",
    layers: &[
        Layer {
            name: "low",
            modules: &["low"],
        },
        Layer {
            name: "mid",
            modules: &["mid"],
        },
        Layer {
            name: "top",
            modules: &["*"],
        },
    ],
    exceptions: &[],
};

const LIB: &str = "mod low;\nmod mid;\npub mod api;\npub use api::Thing;\n";

#[test]
fn downward_imports_pass() {
    let dir = tree(
        "down",
        &[
            ("lib.rs", LIB),
            ("low/mod.rs", "pub(crate) mod a;\npub(crate) mod b;\n"),
            ("low/a.rs", "use super::b::X;\n"),
            ("low/b.rs", "pub struct X;\n"),
            ("mid.rs", "use crate::low::{a, b::X};\n"),
            ("api.rs", "use crate::{low::a, mid};\npub struct Thing;\n"),
        ],
    );
    assert_eq!(check(&dir, &TOY), Ok(()));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_upward_import_fails_with_its_line() {
    let dir = tree(
        "up",
        &[
            ("lib.rs", LIB),
            ("low/mod.rs", "\n\nuse crate::{\n    Thing,\n};\n"),
            ("mid.rs", "// crate::api in a comment is not an import\n"),
            ("api.rs", "pub struct Thing;\n"),
        ],
    );
    let err = check(&dir, &TOY).unwrap_err();
    assert!(
        err.contains("toy/src/low/mod.rs:3: low (low) imports api (top)"),
        "{err}"
    );
    assert!(!err.contains("mid.rs"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_loop_inside_a_folder_layer_fails_and_tests_are_ignored() {
    let dir = tree(
        "loop",
        &[
            ("lib.rs", LIB),
            ("low/mod.rs", "mod a;\nmod b;\n"),
            (
                "low/a.rs",
                "use super::b;\n#[cfg(test)]\nmod tests {\n    use crate::api;\n}\n",
            ),
            ("low/b.rs", "fn f() { crate::low::a::g() }\n"),
            ("api.rs", "pub struct Thing;\n"),
        ],
    );
    let err = check(&dir, &TOY).unwrap_err();
    assert!(
        err.contains("a loop of imports: low::a -> low::b -> low::a"),
        "{err}"
    );
    assert!(
        err.contains("toy/src/low/b.rs:1: low::b imports low::a"),
        "{err}"
    );
    assert!(!err.contains("imports api"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_exception_allows_one_edge_and_must_be_used() {
    const EXCEPT: Crate = Crate {
        exceptions: &[Exception {
            from: "low",
            to: "api",
            why: "a reason",
        }],
        ..TOY
    };
    let dir = tree(
        "except",
        &[
            ("lib.rs", LIB),
            ("low/mod.rs", "use crate::api::Thing;\n"),
            ("api.rs", "pub struct Thing;\n"),
        ],
    );
    assert_eq!(check(&dir, &EXCEPT), Ok(()));
    std::fs::write(dir.join("low/mod.rs"), "\n").unwrap();
    let err = check(&dir, &EXCEPT).unwrap_err();
    assert!(
        err.contains("the exception low -> api (a reason) is used by no import"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn what_an_exception_reaches_stays_below_its_module() {
    const EXCEPT: Crate = Crate {
        exceptions: &[Exception {
            from: "mid",
            to: "api",
            why: "a reason",
        }],
        ..TOY
    };
    let lib = "mod low;\nmod mid;\nmod other;\npub mod api;\n";
    let dir = tree(
        "reach",
        &[
            ("lib.rs", lib),
            ("low.rs", "\n"),
            ("mid.rs", "use crate::api::Thing;\n"),
            ("api.rs", "use crate::low;\npub struct Thing;\n"),
            ("other.rs", "\n"),
        ],
    );
    assert_eq!(check(&dir, &EXCEPT), Ok(()));
    std::fs::write(dir.join("api.rs"), "use crate::other;\npub struct Thing;\n").unwrap();
    let err = check(&dir, &EXCEPT).unwrap_err();
    assert!(
        err.contains("toy/src/api.rs:1: api imports other, not below mid (mid)"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The workspace as it is passes (also a step of `cargo xtask test`).
#[test]
fn the_workspace_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    if let Err(e) = check_all(root) {
        panic!("{e}");
    }
}
