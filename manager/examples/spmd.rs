//! One program, started in N copies by an engine: `mpirun`, `srun` or a
//! Kubernetes Indexed Job. `ClusterContext::from_launcher()` makes rank 0
//! the coordinator, whose pool's workers run on the other copies; each
//! other copy serves until rank 0 is done, then returns `None`.
//!
//! ```sh
//! cargo build --release -p mp-manager --example spmd
//! # A key of the job, readable by you alone, on every node (or a shared
//! # file system), and a file for rank 0's address on a shared one:
//! mkdir -p ~/.mp && head -c 32 /dev/urandom > ~/.mp/key && chmod 600 ~/.mp/key
//! export MP_CLUSTER_AUTHKEY_FILE=~/.mp/key MP_CLUSTER_ADDRESS_FILE=~/.mp/address
//!
//! # Open MPI (as root it needs --allow-run-as-root; more copies than
//! # cores, --oversubscribe):
//! mpirun -n 4 --allow-run-as-root -x MP_CLUSTER_AUTHKEY_FILE -x MP_CLUSTER_ADDRESS_FILE \
//!     target/release/examples/spmd
//! # Slurm (srun passes the environment on):
//! srun -n 4 target/release/examples/spmd
//! # When rank 0's node is known, an address instead of the file:
//! MP_CLUSTER_ADDRESS=node1:5555 mpirun -n 4 --host node1,node2 -x MP_CLUSTER_ADDRESS \
//!     -x MP_CLUSTER_AUTHKEY_FILE target/release/examples/spmd
//! ```
//!
//! A Kubernetes Indexed Job has no size in its environment (set
//! `MP_CLUSTER_SIZE` to its completions) and reaches rank 0 through a
//! headless service (its pods are `<job>-<index>.<service>`); the key is a
//! Secret, mounted with mode 0600 (its files belong to root: run the
//! container as root, or copy the key to a 0600 file of its user first):
//!
//! ```yaml
//! apiVersion: v1
//! kind: Service
//! metadata: {name: spmd}
//! spec: {clusterIP: None, selector: {job-name: spmd}}
//! ---
//! apiVersion: batch/v1
//! kind: Job
//! metadata: {name: spmd}
//! spec:
//!   completionMode: Indexed
//!   completions: 4
//!   parallelism: 4          # every copy at once: rank 0 waits for the others
//!   template:
//!     spec:
//!       subdomain: spmd     # the service: rank 0 is spmd-0.spmd
//!       restartPolicy: Never
//!       containers:
//!       - name: spmd
//!         image: registry.example.com/spmd:1
//!         command: ["/app/spmd"]
//!         env:
//!         - {name: MP_CLUSTER_SIZE, value: "4"}
//!         - {name: MP_CLUSTER_ADDRESS, value: "spmd-0.spmd:5555"}
//!         - {name: MP_CLUSTER_LISTEN, value: "0.0.0.0:5555"}   # rank 0, before its name resolves
//!         - {name: MP_CLUSTER_AUTHKEY_FILE, value: /etc/mp/key}
//!         volumeMounts: [{name: key, mountPath: /etc/mp, readOnly: true}]
//!       volumes:
//!       - name: key
//!         secret: {secretName: spmd-key, defaultMode: 0600}
//! ```
//!
//! With no engine (`cargo run -p mp-manager --example spmd`), the program
//! plays one: it starts 3 copies of itself on this machine, as `mpirun -n 3`
//! would (PMI's variables, a key file, an address file).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use mp_manager::ClusterContext;
use mp_pool::Pool;

/// Steps of the Collatz sequence from `n` down to 1: some work per task.
fn steps(mut n: u64) -> u64 {
    let mut count = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        count += 1;
    }
    count
}

/// The variables by which an engine gives a copy its rank.
const RANKS: [&str; 4] = [
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "SLURM_PROCID",
    "JOB_COMPLETION_INDEX",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if RANKS.iter().all(|v| std::env::var_os(v).is_none()) {
        return play_the_engine(3);
    }
    // `None`: this copy has served, and rank 0 is done.
    if let Some(cluster) = ClusterContext::from_launcher()? {
        let hosts: Vec<String> = cluster.hosts().iter().map(|(l, _)| l.host()).collect();
        let pool = Pool::builder().context(cluster.clone()).build()?;
        let counts = pool.map(steps, 1..100_000)?;
        let (n, longest) = (1..100_000u64)
            .zip(counts)
            .max_by_key(|&(_, s)| s)
            .expect("numbers");
        println!(
            "rank 0: below 100000, {n} takes the most steps ({longest}), computed on {}",
            hosts.join(", ")
        );
        // Dropping the last clone of the context ends the other copies.
    }
    Ok(())
}

/// Starts `n` copies of this program as an engine would, and waits for
/// them.
fn play_the_engine(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("key");
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random key: {e}"))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)?
        .write_all(&bytes)?;
    let exe = std::env::current_exe()?;
    let copies = (0..n)
        .map(|rank| {
            Command::new(&exe)
                .env("PMI_RANK", rank.to_string())
                .env("PMI_SIZE", n.to_string())
                .env("MP_CLUSTER_AUTHKEY_FILE", &key)
                .env("MP_CLUSTER_ADDRESS_FILE", dir.path().join("address"))
                .env("MP_CLUSTER_LISTEN", "127.0.0.1:0")
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (rank, mut copy) in copies.into_iter().enumerate() {
        let status = copy.wait()?;
        if !status.success() {
            return Err(format!("copy {rank}: {status}").into());
        }
    }
    Ok(())
}
