//! mp-pool's benchmarks: `map` (default chunksize and chunksize 1),
//! `apply`'s round trip, `imap_unordered`, pool start + close + join, and the
//! peak memory of an `imap` over 10 million items; each beside CPython's
//! `Pool(2)` (python3, same run), procspawn's pool, and a raw pipe round
//! trip in this very binary. The default `map` and `apply` run again with a
//! `task_timeout` that is never reached (the cost of watching for it,
//! beside CPython's plain figures: it has no task timeout), the `map` with
//! a `max_memory_per_child` never reached (the cost of measuring), and 100 tasks
//! that hang past a short `task_timeout` measure how soon their errors
//! reach the caller.

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use criterion::Criterion;
use mp_pool::{Pool, PoolBuilder};
use mp_proc::{RawArray, StartMethod};
use support::{Kind, Row, Table, Target, median_per_iter, ms, pin, placements, py, timed, us};

/// Set in the environment of the child that measures `imap`'s memory.
const RSS_CHILD: &str = "MP_POOL_BENCH_RSS";
/// Items of the memory benchmark.
const RSS_ITEMS: u64 = 10_000_000;
/// Tasks of a `map` (CPython's side uses the same).
const MAP_TASKS: u64 = 100_000;
/// The `task_timeout` of the cost rows: never reached by a trivial task.
const NEVER_TIMEOUT: Duration = Duration::from_secs(10);
/// The `max_memory_per_child` of the cost row: never reached (1 TiB).
const NEVER_BYTES: u64 = 1 << 40;
/// The `task_timeout` that the hanging tasks of the latency rows run past.
const HANG_LIMIT: Duration = Duration::from_millis(50);
/// Timed-out tasks behind the latency rows.
const TIMEOUTS: usize = 100;
/// Hanging tasks submitted at a time (two per worker: the second waits for
/// a replaced worker).
const HANGING_AT_ONCE: usize = 4;

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
    figures.timeout_latency_ms = timeout_latencies();
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
    /// How long after its limit each timed-out task's error reached `get`, sorted.
    timeout_latency_ms: Vec<f64>,
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn fork_pool() -> Pool {
    fork_pool_with(|b| b)
}

/// A fork pool of 2, with `setup`'s options.
fn fork_pool_with(setup: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Pool {
    setup(
        Pool::builder()
            .processes(2)
            .context(mp_proc::get_context(StartMethod::Fork)),
    )
    .build()
    .unwrap()
}

// ---------------------------------------------------------------- map, imap

/// One call of a benchmark over `n` tasks.
type Run = Box<dyn Fn(&Pool, u64)>;
/// Options set on a pool's builder.
type Setup = fn(PoolBuilder) -> PoolBuilder;

fn maps(c: &mut Criterion, _figures: &mut Figures) {
    let mut g = c.benchmark_group("pool");
    let pool = fork_pool();
    pool.map(square, 0..1000).unwrap(); // warm-up
    let map_default: Run = Box::new(|p: &Pool, n| {
        let r = p.map(square, 0..n).unwrap();
        assert_eq!(r.len() as u64, n);
    });
    let runs: [(&str, u64, Run); 3] = [
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
    per_task(&mut g, &pool, "map_default", MAP_TASKS, &map_default);
    drop(pool);
    // The same map with a watch set that never fires: its cost when set.
    // Run right after the plain one, so that both see the same machine.
    let watched: [(&str, Setup); 2] = [
        ("map_default_task_timeout", |b| {
            b.task_timeout(NEVER_TIMEOUT)
        }),
        ("map_default_max_memory", |b| {
            b.max_memory_per_child(NEVER_BYTES)
        }),
    ];
    for (name, setup) in watched {
        let pool = fork_pool_with(setup);
        pool.map(square, 0..1000).unwrap();
        per_task(&mut g, &pool, name, MAP_TASKS, &map_default);
        drop(pool);
    }
    let pool = fork_pool();
    pool.map(square, 0..1000).unwrap();
    for (name, tasks, run) in &runs {
        per_task(&mut g, &pool, name, *tasks, run);
    }
    drop(pool);
    g.finish();
}

/// Benchmarks `run` over `tasks` tasks as `pool/{name}`, recorded per task
/// (the table's unit); criterion's own iteration is one call.
fn per_task(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    pool: &Pool,
    name: &str,
    tasks: u64,
    run: &Run,
) {
    let id = format!("pool/{name}");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed(&id, iters * tasks, |_| {
                for _ in 0..iters {
                    run(pool, tasks);
                }
            })
        })
    });
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
            drop(pool);
            // The same with a task timeout that never fires.
            let pool = fork_pool_with(|b| b.task_timeout(NEVER_TIMEOUT));
            pool.apply(square, 3).unwrap();
            support::measure(&mut g, "apply", &format!("mp_task_timeout{sfx}"), |n| {
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

// ---------------------------------------------------------------- timeouts

/// CLOCK_MONOTONIC in nanoseconds: one clock for the worker that records a
/// task's start and the caller that sees its error.
fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    let ns = i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec());
    u64::try_from(ns).expect("CLOCK_MONOTONIC is not negative")
}

/// Records when this call began in `starts[i]`, then never returns (it
/// sleeps until its worker is killed).
fn hang((starts, i): (RawArray<u64>, usize)) -> u64 {
    if let Err(e) = starts.set(i, monotonic_ns()) {
        eprintln!("hanging task {i}: its start was not recorded ({e})");
    }
    loop {
        std::thread::park();
    }
}

/// `TIMEOUTS` tasks that hang past a `HANG_LIMIT` task timeout, on a fork
/// pool of 2, `HANGING_AT_ONCE` at a time: how long after its limit (the
/// task's own recorded start + the limit) each one's `TaskTimeout` reached
/// a thread waiting in `get`, in ms, sorted. A thread per task waits, so
/// that no error waits for another's.
fn timeout_latencies() -> Vec<f64> {
    eprintln!("\n{TIMEOUTS} tasks past a task_timeout of {HANG_LIMIT:?}: error latency");
    let pool = fork_pool_with(|b| b.task_timeout(HANG_LIMIT));
    pool.map(square, 0..1000).unwrap(); // warm-up
    let starts = RawArray::<u64>::new(TIMEOUTS).unwrap();
    let limit_ns = i128::try_from(HANG_LIMIT.as_nanos()).unwrap();
    // Only a bug waits this long: then the benchmark fails instead of hanging.
    let bug = HANG_LIMIT + Duration::from_secs(30);
    let mut late = Vec::with_capacity(TIMEOUTS);
    let ids: Vec<usize> = (0..TIMEOUTS).collect();
    for batch in ids.chunks(HANGING_AT_ONCE) {
        let pending: Vec<_> = batch
            .iter()
            .map(|&i| (i, pool.apply_async(hang, (starts.clone(), i))))
            .collect();
        let ended: Vec<(usize, u64)> = std::thread::scope(|s| {
            let waiters: Vec<_> = pending
                .into_iter()
                .map(|(i, r)| {
                    s.spawn(move || {
                        let got = r.get_timeout(bug);
                        let now = monotonic_ns();
                        match got {
                            Err(mp_pool::Error::TaskTimeout { .. }) => (i, now),
                            other => panic!("hanging task {i}: {other:?}, not a TaskTimeout"),
                        }
                    })
                })
                .collect();
            waiters.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for (i, now) in ended {
            let start = starts.get(i).unwrap();
            assert_ne!(start, 0, "hanging task {i} never recorded its start");
            let ns = i128::from(now) - (i128::from(start) + limit_ns);
            late.push(ns as f64 / 1e6);
        }
    }
    drop(pool);
    late.sort_by(|a, b| a.total_cmp(b));
    late
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
        "map of 100k trivial tasks, default chunksize, task_timeout(10 s)",
        "tasks/s",
        Kind::Rate,
        rate("pool/map_default_task_timeout"),
        py(python, "pool_map_tput", "default_chunksize"),
        None,
        None,
        "",
        Some(Target::cpython(3.0)),
    ));
    t.rows.push(row(
        "map of 100k trivial tasks, default chunksize, max_memory_per_child(1 TiB)",
        "tasks/s",
        Kind::Rate,
        rate("pool/map_default_max_memory"),
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
        let mp = us(median_per_iter(&format!("apply/mp_task_timeout{sfx}")));
        if mp.is_some() {
            t.rows.push(row(
                &format!("apply round trip{sfx}, task_timeout(10 s)"),
                "us",
                Kind::Latency,
                mp,
                cpython,
                None,
                us(median_per_iter(&format!("apply/raw_pipe{sfx}"))),
                &format!("1 B pipe round trip{sfx}"),
                Some(Target::raw(3.0)),
            ));
        }
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
    // No CPython column: its pool cannot time out a task.
    let late = &f.timeout_latency_ms;
    let n = late.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(late[n / 2]),
        _ => Some((late[n / 2 - 1] + late[n / 2]) / 2.0),
    };
    let p90 = (n * 9).div_ceil(10).checked_sub(1).map(|i| late[i]);
    for (what, figure) in [
        ("median", median),
        ("p90", p90),
        ("worst", late.last().copied()),
    ] {
        t.rows.push(row(
            &format!("task_timeout(50 ms): its error reaches get() after the limit, {what} of {n}"),
            "ms",
            Kind::Latency,
            figure,
            None,
            None,
            None,
            "",
            None,
        ));
    }
    t
}
