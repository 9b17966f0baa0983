//! A real Open MPI mpirun placing its copies in the hosts' network
//! namespaces, and nothing of the run left behind. Each test skips
//! (printing why) when not root or when mpirun is missing.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use mp_testkit::mpi::{self, Mpirun};
use mp_testkit::netns::{self, Hosts};

mod common;
use common::*;

/// Host `i`'s network namespace as `readlink /proc/self/ns/net` prints it.
fn netns_id(hosts: &Hosts, i: usize) -> String {
    let ino = std::fs::metadata(format!("/run/netns/{}", hosts.name(i)))
        .unwrap()
        .ino();
    format!("net:[{ino}]")
}

/// Runs `sh -c script` under `mpirun` and returns what it printed.
fn run_script(mpirun: &Mpirun, script: &str) -> Output {
    let mut command = mpirun.command("sh", ["-c", script]);
    let out = mpi::output(&mut command, LIMIT).unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

/// The lines of the copies, by rank (the first word): each rank once.
fn by_rank(out: &Output, copies: usize) -> BTreeMap<usize, Vec<String>> {
    let mut ranks = BTreeMap::new();
    for line in stdout(out).lines() {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let rank: usize = words[0].parse().unwrap();
        assert!(
            ranks.insert(rank, words).is_none(),
            "rank {rank} printed twice: {out:?}"
        );
    }
    assert_eq!(
        ranks.keys().copied().collect::<Vec<_>>(),
        (0..copies).collect::<Vec<_>>(),
        "{out:?}"
    );
    ranks
}

/// The processes of the run: any in the hosts' namespaces, and any on the
/// machine whose command line names the run's agent (an orted).
fn run_processes(hosts: &Hosts, mpirun: &Mpirun) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..hosts.len() {
        out.extend(
            hosts
                .pids(i)
                .unwrap()
                .into_iter()
                .map(|p| format!("{p} in {}", hosts.name(i))),
        );
    }
    let agent = mpirun.agent().display().to_string();
    for (pid, _, state) in mp_testkit::processes() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if state != 'Z' && String::from_utf8_lossy(&cmdline).contains(&agent) {
            out.push(format!("{pid}: {}", String::from_utf8_lossy(&cmdline)));
        }
    }
    out
}

#[test]
fn each_rank_runs_once_in_the_namespace_it_was_placed_in_and_nothing_is_left() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(3) else {
        return;
    };
    let Some(mpirun) = mpi::mpirun_or_skip(&hosts, 1) else {
        return;
    };
    assert_eq!(mpirun.copies(), 3);
    let out = run_script(
        &mpirun,
        "echo $OMPI_COMM_WORLD_RANK $OMPI_COMM_WORLD_SIZE $(readlink /proc/self/ns/net) $(hostname)",
    );
    let root = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    for (rank, words) in by_rank(&out, 3) {
        let host = mpirun.host_of(rank);
        assert_eq!(host, rank);
        assert_eq!(words[1], "3", "{out:?}");
        assert_eq!(words[2], netns_id(&hosts, host), "rank {rank}: {out:?}");
        assert_ne!(words[2], root);
        assert_eq!(words[3], hosts.name(host), "rank {rank}: {out:?}");
    }
    assert!(
        mp_testkit::wait_until(LIMIT, || run_processes(&hosts, &mpirun).is_empty()),
        "left: {:?}",
        run_processes(&hosts, &mpirun)
    );
}

#[test]
fn two_copies_per_host_get_the_env_and_the_working_directory() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    let Some(mut mpirun) = mpi::mpirun_or_skip(&hosts, 2) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("mp-test-mpi-wd{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let value = "a,b;c d=e";
    mpirun
        .env("MP_TEST_VALUE", value)
        .env("MP_TEST_OTHER", "2")
        .current_dir(&dir);
    let script = "echo $OMPI_COMM_WORLD_RANK $(readlink /proc/self/ns/net) $MP_TEST_OTHER \
                  $(pwd) \"[$MP_TEST_NOT_PASSED]\" \"<$MP_TEST_VALUE>\"";
    let mut command = mpirun.command("sh", ["-c", script]);
    // In mpirun's environment only: as over ssh, no copy sees it.
    command.env("MP_TEST_NOT_PASSED", "1");
    let out = mpi::output(&mut command, LIMIT).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    assert!(out.status.success(), "{out:?}");
    for (rank, words) in by_rank(&out, 4) {
        assert_eq!(mpirun.host_of(rank), rank / 2);
        assert_eq!(words[1], netns_id(&hosts, rank / 2), "rank {rank}: {out:?}");
        assert_eq!(words[2], "2");
        assert_eq!(Path::new(&words[3]), dir);
        assert_eq!(words[4], "[]", "{out:?}");
        assert_eq!(words[5..].join(" "), format!("<{value}>"), "{out:?}");
    }
}

#[test]
fn a_run_past_its_limit_is_stopped_and_leaves_nothing() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    let Some(mpirun) = mpi::mpirun_or_skip(&hosts, 1) else {
        return;
    };
    // Copies that never end: the limit is certain to pass.
    let mut command = mpirun.command("sleep", ["1000000"]);
    let err = mpi::output(&mut command, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("sent SIGTERM"), "{err}");
    assert!(
        mp_testkit::wait_until(LIMIT, || run_processes(&hosts, &mpirun).is_empty()),
        "left: {:?}",
        run_processes(&hosts, &mpirun)
    );
}

#[test]
fn the_agent_refuses_a_host_that_is_not_of_the_run() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(1) else {
        return;
    };
    let Some(mpirun) = mpi::mpirun_or_skip(&hosts, 1) else {
        return;
    };
    let agent = mpirun.agent().display().to_string();
    let out = run(&agent, &["-x", "192.0.2.77", "true"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("192.0.2.77 is not a host of this run"),
        "{out:?}"
    );
    // Its own host: options skipped, the command run in the namespace.
    let host = hosts.addr(0).to_string();
    let out = run(
        &agent,
        &["-x", &host, "readlink", "/proc/self/ns/net;", "hostname"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("{}\n{}\n", netns_id(&hosts, 0), hosts.name(0))
    );
}

#[test]
fn dropping_the_mpirun_removes_its_agent() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(1) else {
        return;
    };
    let Some(mpirun) = mpi::mpirun_or_skip(&hosts, 1) else {
        return;
    };
    let agent = mpirun.agent();
    assert!(agent.is_file());
    drop(mpirun);
    assert!(!agent.exists());
    assert!(!agent.parent().unwrap().exists());
}

#[test]
fn a_running_job_is_seen_in_each_namespace_and_sigterm_to_mpirun_ends_it_all() {
    let _g = mp_testkit::guard();
    let Some(hosts) = netns::hosts_or_skip(2) else {
        return;
    };
    let Some(mpirun) = mpi::mpirun_or_skip(&hosts, 1) else {
        return;
    };
    let mut child = mpirun
        .command("sleep", ["1000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // An orted and a copy in each namespace, the orteds named by the agent.
    let running = || {
        let all = run_processes(&hosts, &mpirun);
        (0..hosts.len()).all(|i| {
            let here = format!(" in {}", hosts.name(i));
            all.iter().filter(|p| p.ends_with(&here)).count() >= 2
        }) && all.iter().filter(|p| p.contains("orted")).count() == hosts.len()
    };
    assert!(
        mp_testkit::wait_until(LIMIT, running),
        "{:?}",
        run_processes(&hosts, &mpirun)
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");
    assert!(
        mp_testkit::wait_until(LIMIT, || run_processes(&hosts, &mpirun).is_empty()),
        "left: {:?}",
        run_processes(&hosts, &mpirun)
    );
}
