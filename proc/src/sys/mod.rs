//! Everything below safe Rust: raw fds, fork, posix_spawn, pidfds, signals,
//! fd passing, code before `main` and the location of functions in the
//! executable image.
//!
//! Every `unsafe` operation of mp-proc is in this module, each with a
//! `SAFETY:` comment. A function whose safety depends on its caller is an
//! `unsafe fn` with a `# Safety` section; the layer above only calls those,
//! each call with a `SAFETY:` comment that shows the contract is met.

#![allow(unsafe_code)]

pub(crate) mod atomics;
pub(crate) mod ctor;
pub(crate) mod fd;
pub(crate) mod image;
pub(crate) mod process;
pub(crate) mod scm;
pub(crate) mod sharer_sock;
pub(crate) mod shm;
pub(crate) mod signal_fds;
pub(crate) mod spawn;
pub(crate) mod sync;

#[cfg(test)]
mod tidy {
    /// `sys/` is a leaf: it calls the OS and nothing of this crate above it
    /// (issue 13, finding 6), so every `unsafe` contract is stated here.
    #[test]
    fn sys_calls_nothing_above_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sys");
        // Spelled in two pieces, so that this test does not find itself.
        let needle = concat!("crate", "::");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(at) = rest.find(needle) {
                    let after = &rest[at + needle.len()..];
                    assert!(
                        after.starts_with("sys::"),
                        "{}:{}: sys/ uses `{needle}{}`",
                        path.display(),
                        n + 1,
                        after
                            .split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                            .unwrap_or("")
                    );
                    rest = after;
                }
            }
        }
    }
}
