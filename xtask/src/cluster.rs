//! What the cluster tests need on the machine: `ip` (iproute2) for the
//! network namespaces, and OpenSSH (sshd, ssh, ssh-keygen) for a real sshd
//! in each (mp-testkit's `netns` and `sshd`), and Open MPI's `mpirun`
//! (openmpi-bin) for the runs that place copies in those namespaces
//! (mp-testkit's `mpi`). As root, `cargo xtask test`
//! installs what is missing with apt-get; without root, or when the install
//! fails, those tests skip with their reason.

use std::path::Path;
use std::process::{Command, Stdio};

/// Debian's policy-rc.d: 101 tells invoke-rc.d not to start a service, so
/// installing openssh-server starts no system sshd.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Debian's switch that keeps the system sshd from starting (its init
/// script and systemd unit both check it): set when the install is ours, so
/// that no sshd appears on port 22 of the machine at the next boot either.
const SSHD_NOT_TO_BE_RUN: &str = "/etc/ssh/sshd_not_to_be_run";

/// `(package, program, what for)`: a package is installed when its program
/// is not found.
const NEEDED: [(&str, &str, &str); 5] = [
    (
        "iproute2",
        "ip",
        "the cluster tests make a network namespace per host",
    ),
    (
        "openssh-server",
        "sshd",
        "the cluster tests run a real sshd per network namespace",
    ),
    (
        "openssh-client",
        "ssh",
        "the cluster tests start processes over ssh",
    ),
    (
        "openssh-client",
        "ssh-keygen",
        "the cluster tests make their own ssh keys",
    ),
    (
        "openmpi-bin",
        "mpirun",
        "the cluster tests run copies under Open MPI's mpirun in the namespaces",
    ),
];

/// Installs what the cluster tests need, if missing and if root. Never
/// fails: it says what it did, and the tests skip with their reason when a
/// program is still missing.
pub(crate) fn ensure_tools() {
    let mut packages: Vec<(&str, &str)> = Vec::new();
    for (package, program, why) in NEEDED {
        if !found(program) && !packages.iter().any(|(p, _)| *p == package) {
            packages.push((package, why));
        }
    }
    let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
    if !is_root() {
        let also = if names.is_empty() {
            String::new()
        } else {
            format!(" (and {} are not installed)", names.join(", "))
        };
        eprintln!(
            "xtask: not root: the cluster tests (network namespaces, a real sshd in each, \
             mpirun) will skip{also}"
        );
        return;
    }
    if names.is_empty() {
        eprintln!(
            "xtask: the cluster tests' tools are installed (ip, sshd, ssh, ssh-keygen, mpirun)"
        );
        return;
    }
    for (package, why) in &packages {
        eprintln!("xtask: installing {package} ({why})");
    }
    match install(&names) {
        Ok(()) => eprintln!("xtask: installed {}", names.join(", ")),
        Err(e) => eprintln!(
            "xtask: could not install {}: {e}; the cluster tests will skip",
            names.join(", ")
        ),
    }
}

/// `program` on PATH, or in /usr/sbin or /sbin (sshd lives there and root's
/// PATH may miss them).
fn found(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(program).is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}

fn install(packages: &[&str]) -> Result<(), String> {
    let sshd_before = root_sshd_pids();
    // No service starts during the install: a policy-rc.d of ours while it
    // runs, unless the machine has one already (then it is the machine's
    // choice, and the check below stops an sshd that started anyway).
    let ours = !Path::new(POLICY_RC_D).exists();
    if ours {
        write_policy()?;
    }
    let result = apt_install(packages);
    if ours {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    if result.is_ok() && packages.contains(&"openssh-server") {
        match std::fs::write(
            SSHD_NOT_TO_BE_RUN,
            "mp's xtask installed openssh-server for its tests only\n",
        ) {
            Ok(()) => eprintln!(
                "xtask: the system sshd stays off ({SSHD_NOT_TO_BE_RUN}; remove it to run one)"
            ),
            Err(e) => eprintln!("xtask: cannot write {SSHD_NOT_TO_BE_RUN}: {e}"),
        }
    }
    for pid in root_sshd_pids() {
        if !sshd_before.contains(&pid) {
            eprintln!("xtask: stopping the system sshd (pid {pid}) the install started");
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
    result
}

fn write_policy() -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(
        POLICY_RC_D,
        "#!/bin/sh\n# mp's xtask: no service starts during its install\nexit 101\n",
    )
    .and_then(|()| std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755)))
    .map_err(|e| format!("cannot write {POLICY_RC_D}: {e}"))
}

/// `apt-get install`, after `apt-get update` when there are no package
/// lists, or once more after it when the install fails (stale lists).
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let mut updated = false;
    if !has_lists() {
        apt(&["update"])?;
        updated = true;
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    match apt(&args) {
        Ok(()) => Ok(()),
        Err(_) if !updated => {
            eprintln!("xtask: the install failed; apt-get update, then once more");
            apt(&["update"])?;
            apt(&args)
        }
        Err(e) => Err(e),
    }
}

fn apt(args: &[&str]) -> Result<(), String> {
    eprintln!("\n==> apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("apt-get cannot run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("apt-get {} exited with {status}", args.join(" ")))
    }
}

/// Whether apt has package lists (`*_Packages*` in /var/lib/apt/lists).
fn has_lists() -> bool {
    std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

/// The sshd processes in the root network namespace (that of pid 1): a
/// system sshd, not one of the tests' (those run in namespaces of their own).
fn root_sshd_pids() -> Vec<u32> {
    let root_ns = std::fs::read_link("/proc/1/ns/net").ok();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "sshd"
            && std::fs::read_link(entry.path().join("ns/net")).ok() == root_ns
        {
            out.push(pid);
        }
    }
    out
}
