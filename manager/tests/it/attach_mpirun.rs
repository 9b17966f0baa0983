//! `ClusterContext::from_launcher` under a real Open MPI `mpirun` (Debian's
//! `openmpi-bin`, which `cargo xtask test` installs as root), its copies
//! placed in network namespaces of mp-testkit's harness, one each, by an
//! rsh agent that runs Open MPI's daemon there with `ip netns exec`. Rank
//! 0 finds its address itself and writes it to `MP_CLUSTER_ADDRESS_FILE`
//! (the copies share this machine's file system, as a cluster's nodes
//! share one); the others read it, attach, and serve rank 0's pool. Root
//! only: it skips, printing why, otherwise.

use mp_testkit::{guard, mpi, netns};

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;

use crate::attach::{FIXTURE, HUNG, key_file};

#[test]
fn the_copies_mpirun_started_in_three_namespaces_attach_and_serve() {
    let _g = guard();
    let Some(hosts) = netns::hosts_or_skip(3) else {
        return;
    };
    let Some(mut mpirun) = mpi::mpirun_or_skip(&hosts, 1) else {
        return;
    };
    // The copies reach rank 0's namespace through this one: forwarding on
    // the hosts' links only (they go with the namespaces).
    for i in 0..hosts.len() {
        let knob = format!("/proc/sys/net/ipv4/conf/{}/forwarding", hosts.name(i));
        std::fs::write(&knob, "1").unwrap_or_else(|e| panic!("{knob}: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", b"the job's key", 0o600);
    mpirun
        .env("MP_CLUSTER_AUTHKEY_FILE", &key)
        .env("MP_CLUSTER_ADDRESS_FILE", dir.path().join("address"))
        .env("MP_CLUSTER_TIMEOUT", "60")
        .env(FIXTURE, "map")
        .env("RUST_BACKTRACE", "0");
    let mut command = mpirun.command(
        std::env::current_exe().unwrap(),
        [
            "--exact",
            "attach::fixture",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ],
    );
    let out = mpi::output(&mut command, HUNG).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    // mpirun interleaves the copies' output, even within a line.
    assert!(!stdout.contains("refused:"), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("served").count(), 2, "{stdout}\n{stderr}");
    // Rank 0's pool ran its tasks in the other copies' namespaces only.
    let netns = |i: usize| {
        let inode = std::fs::metadata(format!("/run/netns/{}", hosts.name(i)))
            .unwrap()
            .ino();
        format!("\"net:[{inode}]\"")
    };
    let others: BTreeSet<String> = (1..3).map(|rank| netns(mpirun.host_of(rank))).collect();
    let coordinator = stdout
        .split_once("coordinator: [1, 4, 9, 16, 25, 36, 49, 64] on 2 hosts, ran at {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .unwrap_or_else(|| panic!("{stdout}\n{stderr}"))
        .0;
    let places: BTreeSet<String> = coordinator.split(", ").map(str::to_owned).collect();
    assert!(
        !places.is_empty() && places.is_subset(&others),
        "{places:?} not in {others:?}"
    );
    drop(mpirun);
}
