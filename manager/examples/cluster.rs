//! The same program on one machine and across hosts: a generic body (a
//! queue of tasks, worker processes, a queue of results) and a pool's
//! `map`, first with this machine's processes, then over a
//! `ClusterContext` whose hosts are reached by ssh.
//!
//! ```sh
//! cargo run -q -p mp-manager --example cluster
//! cargo run -q -p mp-manager --example cluster -- node1 user@node2
//! ```
//!
//! With no argument, the "hosts" are this machine reached through the
//! remote path (`Launcher::command([])`: the same agent that ssh would
//! start). With arguments, they are ssh hosts. Each needs this executable
//! at the same path (a shared file system, or a copy) and ssh that logs in
//! without a password; nothing else: the processes there reach the
//! cluster's manager (on this machine's loopback) through their ssh link.

use mp_manager::ClusterContext;
use mp_pool::Pool;
use mp_proc::{Context, Launcher, ProcessLike, QueueLike, StartMethod};

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

/// A worker's queues: numbers to take (`None`: stop), `(n, steps(n))` to put.
type Queues<C> = (
    <C as Context>::Queue<Option<u64>>,
    <C as Context>::Queue<(u64, u64)>,
);

/// A worker: takes numbers until `None`, puts `(n, steps(n))`.
fn worker<C: Context>((tasks, results): Queues<C>) {
    while let Ok(Some(n)) = tasks.get() {
        results.put((n, steps(n))).unwrap();
    }
}

/// The generic body: runs on any context, this machine's or a cluster's.
/// Returns the number below `limit` with the longest sequence.
fn longest<C: Context>(ctx: &C, workers: usize, limit: u64) -> mp_proc::Result<(u64, u64)> {
    let tasks = ctx.queue::<Option<u64>>()?;
    let results = ctx.queue::<(u64, u64)>()?;
    let mut processes: Vec<C::Process> = (0..workers)
        .map(|_| ctx.process(worker::<C>, (tasks.clone(), results.clone())))
        .collect();
    for p in &mut processes {
        p.start()?;
    }
    for n in 1..limit {
        tasks.put(Some(n))?;
    }
    for _ in 0..workers {
        tasks.put(None)?;
    }
    let mut best = (0, 0);
    for _ in 1..limit {
        let (n, s) = results.get()?;
        if s > best.1 {
            best = (n, s);
        }
    }
    for p in &mut processes {
        p.join()?;
    }
    Ok(best)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();

    // One machine: processes of a start method, and a local pool.
    let here = mp_proc::get_context(StartMethod::Spawn);
    let (n, s) = longest(&here, 2, 2000)?;
    println!("on this machine: {n} takes {s} steps");
    let pool = Pool::builder().processes(2).build()?;
    let total: u64 = pool.map(steps, 1..20_000)?.iter().sum();
    println!("on this machine: {total} steps below 20000");

    // Across hosts: what changes is the context (and the pool's context).
    let mut builder = ClusterContext::builder();
    if args.is_empty() {
        builder = builder.host(Launcher::command(Vec::<&str>::new()), 2);
    }
    for host in &args {
        builder = builder.host(Launcher::ssh(host), 2);
    }
    let cluster = builder.build()?;
    let (n, s) = longest(&cluster, cluster.cpu_count(), 2000)?;
    println!("across hosts: {n} takes {s} steps");
    let pool = Pool::builder().context(cluster).build()?;
    let across: u64 = pool.map(steps, 1..20_000)?.iter().sum();
    println!("across hosts: {across} steps below 20000");
    assert_eq!(across, total);
    Ok(())
}
