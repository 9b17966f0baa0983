//! mp-pool's benchmarks: `map` (default chunksize and chunksize 1),
//! `apply`'s round trip, `imap_unordered`, pool start + close + join, and the
//! peak memory of an `imap` over 10 million items; each beside CPython's
//! `Pool(2)` (python3, same run), procspawn's pool, and a raw pipe round
//! trip in this very binary.

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use std::os::fd::AsFd;
use std::time::Instant;

use criterion::Criterion;
use mp_pool::Pool;
use mp_proc::StartMethod;
use support::{Kind, Row, Table, Target, median_per_iter, ms, pin, placements, py, timed, us};

/// Set in the environment of the child that measures `imap`'s memory.
const RSS_CHILD: &str = "MP_POOL_BENCH_RSS";
/// Items of the memory benchmark.
const RSS_ITEMS: u64 = 10_000_000;
/// Tasks of a `map` (CPython's side uses the same).
const MAP_TASKS: u64 = 100_000;

fn main() {
    procspawn::init();
    if std::env::var_os(RSS_CHILD).is_some() {
        imap_rss_child();
        return;
    }
    let mut c = support::criterion();
    let mut figures = Figures::default();
    maps(&mut c, &mut figures);
    apply(&mut c);
    starts(&mut c);
    procspawn_side(&mut figures);
    figures.rss_mib = imap_rss();
    c.final_summary();
    let python = support::cpython("pool");
    table(&python, &figures).publish("3-pool");
}

#[derive(Default)]
struct Figures {
    procspawn_task_rate: Option<f64>,
    procspawn_apply_us: Option<f64>,
    procspawn_start_ms: Option<f64>,
    rss_mib: Option<f64>,
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn fork_pool() -> Pool {
    Pool::builder()
        .processes(2)
        .context(mp_proc::get_context(StartMethod::Fork))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- map, imap

/// One call of a benchmark over `n` tasks.
type Run = Box<dyn Fn(&Pool, u64)>;

fn maps(c: &mut Criterion, _figures: &mut Figures) {
    let mut g = c.benchmark_group("pool");
    let pool = fork_pool();
    pool.map(square, 0..1000).unwrap(); // warm-up
    let runs: [(&str, u64, Run); 4] = [
        (
            "map_default",
            MAP_TASKS,
            Box::new(|p: &Pool, n| {
                let r = p.map(square, 0..n).unwrap();
                assert_eq!(r.len() as u64, n);
            }),
        ),
        (
            "map_chunksize1",
            20_000,
            Box::new(|p: &Pool, n| {
                let r = p.map_chunked(square, 0..n, 1).unwrap();
                assert_eq!(r.len() as u64, n);
            }),
        ),
        (
            "imap_unordered_chunksize1",
            20_000,
            Box::new(|p: &Pool, n| {
                assert_eq!(p.imap_unordered(square, 0..n).count() as u64, n);
            }),
        ),
        (
            "imap_unordered_chunksize1000",
            MAP_TASKS,
            Box::new(|p: &Pool, n| {
                assert_eq!(
                    p.imap_unordered_chunked(square, 0..n, 1000).count() as u64,
                    n
                );
            }),
        ),
    ];
    for (name, tasks, run) in runs {
        let id = format!("pool/{name}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Recorded per task (the table's unit); criterion's own
                // iteration is one call.
                timed(&id, iters * tasks, |_| {
                    for _ in 0..iters {
                        run(&pool, tasks);
                    }
                })
            })
        });
    }
    drop(pool);
    g.finish();
}

// ---------------------------------------------------------------- apply

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    for (sfx, parent_cpu, child_cpu) in placements() {
        // The pool's scheduler thread and its forked workers inherit the
        // placement of the thread that makes it.
        pin(if sfx == "_xcpu" { None } else { parent_cpu });
        if sfx != "_xcpu" {
            let pool = fork_pool();
            pool.apply(square, 3).unwrap();
            support::measure(&mut g, "apply", &format!("mp{sfx}"), |n| {
                for i in 0..n {
                    std::hint::black_box(pool.apply(square, i).unwrap());
                }
            });
        }
        pin(parent_cpu);
        let (r1, w1) = nix::unistd::pipe().unwrap();
        let (r2, w2) = nix::unistd::pipe().unwrap();
        let pid = support::raw_echo(r1, w2, child_cpu, [&r2, &w1]);
        support::measure(&mut g, "apply", &format!("raw_pipe{sfx}"), |n| {
            support::round_trips(w1.as_fd(), r2.as_fd(), n)
        });
        drop((r2, w1));
        nix::sys::wait::waitpid(pid, None).unwrap();
        pin(None);
    }
    g.finish();
}

// ---------------------------------------------------------------- start

fn starts(c: &mut Criterion) {
    let mut g = c.benchmark_group("start");
    for method in [
        StartMethod::Fork,
        StartMethod::Forkserver,
        StartMethod::Spawn,
    ] {
        support::measure(&mut g, "start", &format!("mp_{method}"), |n| {
            for _ in 0..n {
                let pool = Pool::builder()
                    .processes(2)
                    .context(mp_proc::get_context(method))
                    .build()
                    .unwrap();
                pool.close();
                pool.join().unwrap();
            }
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- procspawn

fn procspawn_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// procspawn's pool (mitsuhiko/procspawn): one spawn per task, no chunks.
/// Timed by hand: it is slow enough that criterion's runs would dominate.
fn procspawn_side(figures: &mut Figures) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let reps = if support::quick() { 3 } else { 5 };
    let tasks = if support::quick() { 500 } else { 2000 };
    let mut start = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let pool = procspawn::Pool::new(2).unwrap();
        pool.shutdown();
        start.push(t.elapsed().as_secs_f64() * 1e3);
    }
    figures.procspawn_start_ms = Some(median(start));

    let pool = procspawn::Pool::new(2).unwrap();
    for i in 0..20 {
        pool.spawn(i, procspawn_square).join().unwrap();
    }
    let mut rate = Vec::new();
    let mut apply = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|i| pool.spawn(i, procspawn_square))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        rate.push(tasks as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for i in 0..100 {
            pool.spawn(i, procspawn_square).join().unwrap();
        }
        apply.push(t.elapsed().as_secs_f64() * 1e6 / 100.0);
    }
    pool.shutdown();
    figures.procspawn_task_rate = Some(median(rate));
    figures.procspawn_apply_us = Some(median(apply));
}

// ---------------------------------------------------------------- memory

/// In a fresh process: an `imap` over 10 million items, consumed one by one;
/// prints the peak resident memory.
fn imap_rss_child() {
    let pool = Pool::new(Some(2)).unwrap();
    let mut n = 0u64;
    for r in pool.imap_chunked(square, 0..RSS_ITEMS, 100) {
        assert_eq!(r.unwrap(), square(n));
        n += 1;
    }
    assert_eq!(n, RSS_ITEMS);
    pool.close();
    pool.join().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap();
    println!("peak-rss-kib {kib}");
}

fn imap_rss() -> Option<f64> {
    eprintln!("\nimap over {RSS_ITEMS} items in a fresh process: peak RSS");
    let out = std::process::Command::new(std::env::current_exe().ok()?)
        .env(RSS_CHILD, "1")
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let kib: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

// ---------------------------------------------------------------- table

fn rate(id: &str) -> Option<f64> {
    median_per_iter(id).map(|d| 1.0 / d.as_secs_f64())
}

fn table(python: &support::Python, f: &Figures) -> Table {
    let mut t = Table::with_other(
        "mp-pool: Pool(2) (medians; CPython's Pool(2) via python3 and procspawn's pool in the same run)",
        "procspawn",
    );
    let row = |name: &str, unit, kind, mp, cpython, other, raw, raw_what: &str, target| {
        Row::new(name, unit, kind, mp, cpython, raw, raw_what, target).other(other)
    };
    t.rows.push(row(
        "map of 100k trivial tasks, default chunksize",
        "tasks/s",
        Kind::Rate,
        rate("pool/map_default"),
        py(python, "pool_map_tput", "default_chunksize"),
        None,
        None,
        "",
        Some(Target::cpython(3.0)),
    ));
    t.rows.push(row(
        "map, chunksize 1 (procspawn: one spawn per task)",
        "tasks/s",
        Kind::Rate,
        rate("pool/map_chunksize1"),
        py(python, "pool_map_tput", "chunksize=1"),
        f.procspawn_task_rate,
        None,
        "",
        Some(Target::cpython(10.0)),
    ));
    t.rows.push(row(
        "imap_unordered, chunksize 1",
        "tasks/s",
        Kind::Rate,
        rate("pool/imap_unordered_chunksize1"),
        py(python, "pool_imap_unordered_tput", "chunksize=1(default)"),
        None,
        None,
        "",
        None,
    ));
    t.rows.push(row(
        "imap_unordered, chunksize 1000",
        "tasks/s",
        Kind::Rate,
        rate("pool/imap_unordered_chunksize1000"),
        py(python, "pool_imap_unordered_tput", "chunksize=1000"),
        None,
        None,
        "",
        None,
    ));
    for (sfx, _, _) in placements() {
        let (cpython, other) = if sfx.is_empty() {
            (
                py(python, "pool_apply_rtt", "Pool(2)"),
                f.procspawn_apply_us,
            )
        } else {
            (None, None)
        };
        let mp = us(median_per_iter(&format!("apply/mp{sfx}")));
        t.rows.push(row(
            &format!("apply round trip{sfx}"),
            "us",
            Kind::Latency,
            mp,
            cpython,
            other,
            us(median_per_iter(&format!("apply/raw_pipe{sfx}"))),
            &format!("1 B pipe round trip{sfx}"),
            mp.map(|_| Target::raw(3.0)),
        ));
    }
    for method in [
        StartMethod::Fork,
        StartMethod::Forkserver,
        StartMethod::Spawn,
    ] {
        let fork = method == StartMethod::Fork;
        t.rows.push(row(
            &format!("Pool(2) start + close + join, {method}"),
            "ms",
            Kind::Latency,
            ms(median_per_iter(&format!("start/mp_{method}"))),
            if fork {
                py(python, "pool_start_shutdown", "Pool(2)")
            } else {
                None
            },
            if fork { f.procspawn_start_ms } else { None },
            None,
            "",
            None,
        ));
    }
    t.rows.push(row(
        "peak parent RSS, imap over 10M items (chunksize 100)",
        "MiB",
        Kind::Latency,
        f.rss_mib,
        None,
        None,
        Some(64.0),
        "the issue's bound",
        Some(Target::raw(1.0)),
    ));
    t
}
