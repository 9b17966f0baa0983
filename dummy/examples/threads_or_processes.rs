//! One generic workload, written once against `mp_proc::Context`, run on
//! processes (every start method) and on threads, with the time of each:
//! `cargo run -q -p mp-dummy --example threads_or_processes`.
//!
//! The workload: four workers share a queue of jobs and a queue of results;
//! each job is a small CPU-bound computation (a hash chain); an event tells
//! the workers to start, and a `None` job tells each to stop.

use std::time::Instant;

use mp_proc::{Context, EventLike, ProcessLike, QueueLike, StartMethod};

const WORKERS: u32 = 4;

/// A CPU-bound job: a chain of `rounds` multiply-xorshift rounds.
fn job((seed, rounds): (u64, u64)) -> u64 {
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    for _ in 0..rounds {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    x
}

#[allow(clippy::type_complexity)] // a worker's arguments are one tuple
fn worker<C: Context>(
    (jobs, results, go): (C::Queue<Option<(u64, u64)>>, C::Queue<u64>, C::Event),
) {
    go.wait(None).unwrap();
    while let Some(seed) = jobs.get().unwrap() {
        results.put(job(seed)).unwrap();
    }
}

/// Runs `n` jobs of `rounds` rounds on `ctx`; returns the checksum.
fn run<C: Context>(ctx: &C, n: u64, rounds: u64) -> mp_proc::Result<u64> {
    let (jobs, results, go) = (ctx.queue()?, ctx.queue()?, ctx.event()?);
    let mut workers: Vec<C::Process> = (0..WORKERS)
        .map(|_| ctx.process(worker::<C>, (jobs.clone(), results.clone(), go.clone())))
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    for seed in 0..n {
        jobs.put(Some((seed, rounds)))?;
    }
    for _ in 0..WORKERS {
        jobs.put(None)?;
    }
    go.set()?;
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(results.get()?);
    }
    for w in &mut workers {
        w.join()?;
    }
    Ok(sum)
}

fn timed<C: Context>(ctx: &C, n: u64, rounds: u64) -> mp_proc::Result<u64> {
    let t = Instant::now();
    let sum = run(ctx, n, rounds)?;
    println!(
        "  {:<11} {:>8.1} ms   (checksum {sum:016x})",
        ctx.name(),
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(sum)
}

fn main() -> mp_proc::Result<()> {
    mp_proc::init();
    println!("{WORKERS} workers on {} CPUs", mp_proc::cpu_count());
    for (what, n, rounds) in [
        ("CPU-bound: 400 jobs of 20,000 rounds", 400, 20_000),
        (
            "tiny: 20,000 jobs of 10 rounds (the queue dominates)",
            20_000,
            10,
        ),
    ] {
        println!("{what}");
        let on_threads = timed(&mp_dummy::ThreadContext::new(), n, rounds)?;
        for method in [
            StartMethod::Fork,
            StartMethod::Forkserver,
            StartMethod::Spawn,
        ] {
            let on_processes = timed(&mp_proc::get_context(method), n, rounds)?;
            assert_eq!(on_processes, on_threads, "the same result on every backend");
        }
    }
    println!("the same checksums on every backend: only the context changed.");
    Ok(())
}
