//! The workspace's task runner: `cargo xtask test | bench | fuzz | ci | publish-check`.
//!
//! Standard library only. Every step prints the command it runs; the first
//! failing step ends the run with a non-zero exit code.

mod cluster;
mod layers;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test           fmt check, clippy -D warnings, every test (unit, integration,
                 doc), the crate-boundary and layer checks, and every example
                 run to a zero exit. This is what CI runs.
                 As root, it first installs what the cluster tests need
                 when missing (iproute2, openssh-server, openssh-client,
                 openmpi-bin).
  ci             the same as test
  cluster-tools  that install step alone
  layers         the layer check alone: each crate's modules import only from
                 their layer and below, with no loop (see xtask/src/layers.rs)
  bench [--quick] [FILTER]
                 run the benchmarks and print one table of ratios: mp against
                 CPython (python3, same run) and against the raw OS loop
  fuzz TARGET|all [--seconds N] [-- LIBFUZZER ARGS]
                 run a fuzz target of fuzz/ (cargo fuzz, libFuzzer) for N
                 seconds (default 60) from its committed corpus
                 fuzz/corpus/TARGET; new inputs go to fuzz/corpus-work/,
                 crashes to fuzz/artifacts/. `fuzz list` lists the targets.
                 Needs cargo-fuzz (cargo install cargo-fuzz --locked).
  publish-check  package every crate as crates.io would (cargo publish --dry-run)
";

/// The arguments that select mp-pool with its optional `async` feature
/// (its `IMap` is a `Stream`), checked and tested beside the defaults.
const ASYNC_POOL: [&str; 4] = ["-p", "mp-pool", "--features", "async"];

/// A generous bound on one example's run: only a guard against a hang.
const EXAMPLE_HANG_GUARD: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("test") | Some("ci") => test(&root),
        Some("layers") => check_layers(&root),
        Some("cluster-tools") => {
            cluster::ensure_tools();
            Ok(())
        }
        Some("bench") => bench(&root, &args[1..]),
        Some("fuzz") => fuzz(&root, &args[1..]),
        Some("publish-check") => publish_check(&root),
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a command in the workspace root, streaming its output.
fn run(root: &Path, mut cmd: Command) -> Result {
    let mut shown = String::from(if cmd.get_program() == cargo().get_program() {
        "cargo"
    } else {
        ""
    });
    if shown.is_empty() {
        shown = cmd.get_program().to_string_lossy().into_owned();
    }
    for arg in cmd.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    eprintln!("\n==> {shown}");
    let start = Instant::now();
    let status = cmd
        .current_dir(root)
        .status()
        .map_err(|e| format!("{shown}: {e}"))?;
    eprintln!("    ({:.1} s)", start.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} exited with {status}"))
    }
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test(root: &Path) -> Result {
    let total = Instant::now();
    // Before any test: the cluster tests' `ip`, sshd, ssh, ssh-keygen and mpirun.
    cluster::ensure_tools();
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    run(root, c)?;

    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(root, c)?;
    // mp-pool's `async` feature (`IMap` as a `Stream`): its code and tests.
    let mut c = cargo();
    c.arg("clippy").args(ASYNC_POOL);
    c.args(["--all-targets", "--", "-D", "warnings"]);
    run(root, c)?;
    check_fuzz_targets(root)?;

    check_crate_boundaries(root)?;
    check_layers(root)?;
    let shm_before = shm_entries();
    let tmp_before = manager_dirs();

    if has_nextest() {
        // The conformance suites (mp-conformance: mp-proc's and mp-pool's
        // behaviours, written once over `Context`, instantiated in each
        // crate's tests/it/conformance.rs), one run per backend so each
        // reports alone.
        let mut failed = Vec::new();
        for backend in ["fork", "spawn", "forkserver", "threads"] {
            eprintln!("\n==> conformance suite on {backend}");
            let mut c = cargo();
            c.args(["nextest", "run", "--workspace", "--no-fail-fast", "-E"])
                .arg(format!("test(/^conformance::{backend}::/)"));
            if run(root, c).is_err() {
                failed.push(backend);
            }
        }
        // Then everything else. One process per test: the safest way to run
        // tests that fork.
        let mut c = cargo();
        c.args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "-E",
            "not test(/^conformance::/)",
        ]);
        run(root, c)?;
        // Built with mp-pool's `async` feature, its tests that need it.
        let mut c = cargo();
        c.args(["nextest", "run"]).args(ASYNC_POOL);
        c.args(["--no-fail-fast", "-E", "test(/::stream::/)"]);
        run(root, c)?;
        if !failed.is_empty() {
            return Err(format!(
                "the conformance suite failed on: {}",
                failed.join(", ")
            ));
        }
        let mut c = cargo();
        c.args(["test", "--workspace", "--doc"]);
        run(root, c)?;
    } else {
        eprintln!("\nnote: cargo-nextest not found; running the tests with cargo test");
        let mut c = cargo();
        c.args(["test", "--workspace"]);
        run(root, c)?;
        let mut c = cargo();
        c.arg("test").args(ASYNC_POOL).args(["--", "::stream::"]);
        run(root, c)?;
    }

    loom_model_check(root)?;

    // Benches are only compiled here; `cargo xtask bench` runs them.
    let mut c = cargo();
    c.args(["build", "--workspace", "--benches", "--examples"]);
    run(root, c)?;

    run_examples(root)?;
    wait_until_clean("helper processes", our_processes)?;
    wait_until_clean("shared memory in /dev/shm", || {
        shm_entries()
            .into_iter()
            .filter(|n| !shm_before.contains(n))
            .collect()
    })?;
    wait_until_clean("manager directories (pymp-*) in the temp directory", || {
        manager_dirs()
            .into_iter()
            .filter(|n| !tmp_before.contains(n))
            .collect()
    })?;
    eprintln!(
        "\nxtask test: all green in {:.0} s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The model check of the futex wait/wake protocols (mp-proc's
/// `tests/loom.rs`): mp-proc built with `--cfg loom`, in a target directory of
/// its own (other RUSTFLAGS would throw away the normal build's cache).
fn loom_model_check(root: &Path) -> Result {
    eprintln!("\n==> model check (loom) of the wait/wake protocols");
    let mut c = cargo();
    c.args(["test", "-p", "mp-proc", "--test", "loom", "--release"])
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", root.join("target").join("loom"))
        .env("LOOM_MAX_PREEMPTIONS", "3");
    run(root, c)
}

/// `(package, example)` for every `examples/*.rs` of every member.
fn examples(root: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for member in ["logging", "proc", "pool", "manager", "dummy"] {
        let dir = root.join(member);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .map_err(|e| format!("{member}: {e}"))?;
        let package = manifest
            .lines()
            .find_map(|l| {
                l.strip_prefix("name = \"")
                    .and_then(|r| r.strip_suffix('"'))
            })
            .ok_or_else(|| format!("{member}/Cargo.toml has no package name"))?
            .to_owned();
        let Ok(entries) = std::fs::read_dir(dir.join("examples")) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| (package.clone(), n)));
    }
    Ok(out)
}

fn run_examples(root: &Path) -> Result {
    for (package, example) in examples(root)? {
        let mut c = cargo();
        c.args(["run", "-q", "-p", &package, "--example", &example])
            .current_dir(root);
        // mp-pool's examples with its optional feature too (tokio_pool's
        // stream); they are built without it by `build --examples` above.
        if package == "mp-pool" {
            c.args(["--features", "async"]);
        }
        let shown = format!("cargo run -q -p {package} --example {example}");
        eprintln!("\n==> {shown}");
        let start = Instant::now();
        let mut child = c
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("{shown}: {e}"))?;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if start.elapsed() > EXAMPLE_HANG_GUARD {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} still running after {EXAMPLE_HANG_GUARD:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        eprintln!("    ({:.1} s)", start.elapsed().as_secs_f64());
        if !status.success() {
            return Err(format!("{shown} exited with {status}"));
        }
    }
    Ok(())
}

/// mp-logging stands alone: it may not depend on any other mp crate;
/// mp-proc depends on no mp crate but mp-logging; mp-pool on those two;
/// mp-manager on those three (mp-pool for `Manager().Pool()`), never the
/// other way round.
fn check_crate_boundaries(root: &Path) -> Result {
    eprintln!("\n==> crate boundaries (cargo tree)");
    for (package, allowed) in [
        ("mp-logging", &["mp-logging"][..]),
        ("mp-proc", &["mp-proc", "mp-logging"][..]),
        ("mp-pool", &["mp-pool", "mp-proc", "mp-logging"][..]),
        // mp-pool only through the `pool` feature (on by default), for
        // `SyncManager::pool`, CPython's `Manager().Pool()`.
        (
            "mp-manager",
            &["mp-manager", "mp-pool", "mp-proc", "mp-logging"][..],
        ),
        (
            "mp-dummy",
            &["mp-dummy", "mp-pool", "mp-proc", "mp-logging"][..],
        ),
    ] {
        let out = cargo()
            .args([
                "tree",
                "-q",
                "-p",
                package,
                "-e",
                "normal",
                "--prefix",
                "none",
                "--offline",
            ])
            .current_dir(root)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "cargo tree -p {package}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with("mp-") && !allowed.contains(&name) {
                return Err(format!("{package} must not depend on {name}"));
            }
        }
    }
    Ok(())
}

/// Inside each crate, modules in layers that import only downward, and no
/// loop of imports between modules (xtask/src/layers.rs has the tables).
fn check_layers(root: &Path) -> Result {
    eprintln!("\n==> module layers (xtask/src/layers.rs)");
    layers::check_all(root)
}

/// Waits (a little: exits and clean-ups are asynchronous) until `left()`
/// finds nothing, and fails with what it still finds.
fn wait_until_clean(what: &str, left: impl Fn() -> Vec<String>) -> Result {
    eprintln!("\n==> no {what} left behind");
    let start = Instant::now();
    loop {
        let found = left();
        if found.is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{what} left behind: {found:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `pymp-*` directories of managers in the temp directory.
fn manager_dirs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.starts_with("pymp-"));
    names
}

/// The entries of `/dev/shm` that look like ours (`psm_*`).
fn shm_entries() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.starts_with("psm_"));
    names
}

/// Our helper processes (fork servers, resource trackers, children): each
/// exits when its program does.
fn our_processes() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && cmdline.contains(" --multiprocessing-") {
            out.push(format!("{} {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    out
}

fn bench(root: &Path, args: &[String]) -> Result {
    let quick = args.iter().any(|a| a == "--quick");
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let table_dir = root.join("target").join("mp-bench");
    let _ = std::fs::remove_dir_all(&table_dir);
    std::fs::create_dir_all(&table_dir).map_err(|e| e.to_string())?;
    let mut c = cargo();
    c.args(["bench", "--workspace", "--bench", "*"]);
    c.env("MP_BENCH_TABLE_DIR", &table_dir);
    if quick {
        c.env("MP_BENCH_QUICK", "1");
    }
    if !filter.is_empty() {
        c.arg("--");
        c.args(filter);
    }
    run(root, c)?;
    let mut tables: Vec<PathBuf> = std::fs::read_dir(&table_dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    tables.sort();
    if tables.is_empty() {
        return Err("the benchmarks wrote no table".into());
    }
    println!();
    for t in tables {
        print!(
            "{}",
            std::fs::read_to_string(&t).map_err(|e| e.to_string())?
        );
        println!();
    }
    Ok(())
}

/// The fuzz crate (outside the workspace): formatted, and its targets
/// type-check and pass clippy without libFuzzer (no fuzzer needed; the
/// corpus itself is replayed by each crate's `fuzz_corpus` tests).
fn check_fuzz_targets(root: &Path) -> Result {
    let manifest = root.join("fuzz").join("Cargo.toml");
    let mut c = cargo();
    c.arg("fmt").arg("--manifest-path").arg(&manifest);
    c.args(["--", "--check"]);
    run(root, c)?;
    let mut c = cargo();
    c.arg("clippy").arg("--manifest-path").arg(&manifest);
    c.args(["--no-default-features", "--bins", "--", "-D", "warnings"]);
    // The workspace's target directory: mp-proc and mp-manager are built already.
    c.env("CARGO_TARGET_DIR", root.join("target"));
    run(root, c)
}

/// The fuzz targets: the `[[bin]]` names of fuzz/Cargo.toml.
fn fuzz_targets(root: &Path) -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("fuzz").join("Cargo.toml"))
        .map_err(|e| format!("fuzz/Cargo.toml: {e}"))?;
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(name) = line
                .strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
        {
            targets.push(name.to_owned());
        }
    }
    Ok(targets)
}

/// `cargo xtask fuzz TARGET|all [--seconds N] [-- ARGS]`.
fn fuzz(root: &Path, args: &[String]) -> Result {
    let (ours, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let targets = fuzz_targets(root)?;
    let mut seconds: u64 = 60;
    let mut chosen = None;
    let mut it = ours.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let n = it.next().ok_or("--seconds needs a number")?;
                seconds = n
                    .parse()
                    .map_err(|_| format!("--seconds: not a number of seconds: {n}"))?;
            }
            "list" => {
                for t in &targets {
                    println!("{t}");
                }
                return Ok(());
            }
            name if chosen.is_none() && !name.starts_with('-') => chosen = Some(name),
            other => return Err(format!("fuzz: unexpected argument {other}\n{USAGE}")),
        }
    }
    let chosen = chosen.ok_or_else(|| format!("fuzz: which target?\n{USAGE}"))?;
    let run_these: Vec<&String> = if chosen == "all" {
        targets.iter().collect()
    } else {
        let t = targets.iter().find(|t| *t == chosen).ok_or_else(|| {
            format!(
                "no fuzz target {chosen}; the targets are: {}",
                targets.join(", ")
            )
        })?;
        vec![t]
    };
    let installed = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return Err("cargo-fuzz is not installed: cargo install cargo-fuzz --locked".into());
    }
    for target in run_these {
        let work = root.join("fuzz").join("corpus-work").join(target);
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let mut c = cargo();
        // libFuzzer needs -Zsanitizer: allowed on a stable toolchain too.
        c.env("RUSTC_BOOTSTRAP", "1");
        // glibc's own allocation for a thread-local destructor is not a leak
        // of ours (fuzz/lsan.supp says why).
        if std::env::var_os("LSAN_OPTIONS").is_none() {
            c.env(
                "LSAN_OPTIONS",
                format!(
                    "suppressions={}",
                    root.join("fuzz").join("lsan.supp").display()
                ),
            );
        }
        c.args(["fuzz", "run", target])
            .arg(&work)
            .arg(root.join("fuzz").join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // A hang shows as a crash, with its input, not as a stuck run.
            .args(["-timeout=10", "-print_final_stats=1"])
            .args(extra);
        run(root, c).map_err(|e| {
            format!(
                "{e}\nthe input that failed is in fuzz/artifacts/{target}/; copy it into \
                 fuzz/corpus/{target}/ to make it a regression test of the corpus replay"
            )
        })?;
    }
    Ok(())
}

fn publish_check(root: &Path) -> Result {
    let mut c = cargo();
    c.args([
        "publish",
        "--workspace",
        "--dry-run",
        "--allow-dirty",
        "--exclude",
        "xtask",
        "--exclude",
        "mp-testkit",
        "--exclude",
        "mp-conformance",
    ]);
    run(root, c)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// mp-proc's build script stops a build for another OS with one clear
    /// message (the targets of other OSes are not installed here, so the
    /// script is built for this machine and told the target is macOS).
    #[test]
    fn a_build_for_another_os_stops_with_one_clear_message() {
        let root = super::workspace_root();
        let out = tempfile_dir();
        let exe = out.join("build-script");
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let built = Command::new(rustc)
            .args(["--edition", "2024", "-o"])
            .arg(&exe)
            .arg(root.join("proc/build.rs"))
            .status()
            .unwrap();
        assert!(built.success());
        let run = |os: &str| {
            Command::new(&exe)
                .env("CARGO_CFG_TARGET_OS", os)
                .output()
                .unwrap()
        };
        let mac = run("macos");
        assert!(!mac.status.success());
        let message = String::from_utf8_lossy(&mac.stderr);
        assert!(message.contains("supports Linux only"), "{message}");
        assert!(message.contains("\"macos\""), "{message}");
        assert!(run("linux").status.success());
        std::fs::remove_dir_all(&out).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mp-xtask-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
