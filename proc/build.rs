//! mp-proc runs on Linux only (pidfd, eventfd, futexes, memfd, `/proc`,
//! `SCM_RIGHTS` with Linux's semantics). On any other target this stops the
//! build with one clear message, instead of a wall of unresolved items.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        eprintln!(
            "error: mp-proc (and mp-pool, mp-manager, mp-dummy on top of it) supports Linux only; \
             the target OS is {os:?}. It builds on processes, pidfds, eventfds, futexes and \
             memfds as Linux has them. Build for a *-linux-* target (a container or a VM will do)."
        );
        std::process::exit(1);
    }
}
