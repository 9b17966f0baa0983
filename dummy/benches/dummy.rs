//! mp-dummy's benchmarks: `ThreadPool(2).map` of 100k trivial tasks beside
//! CPython's `multiprocessing.dummy.Pool(2)` (python3, same run) and
//! rayon's `par_iter` on two threads; a `Queue` ping-pong between two
//! threads beside `std::sync::mpsc`.

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use criterion::Criterion;
use rayon::prelude::*;
use support::{Kind, Row, Table, Target, median_per_iter, py, us};

/// Tasks of a `map` (CPython's side uses the same).
const MAP_TASKS: u64 = 100_000;
/// Tasks of a `map` with chunksize 1.
const ONE_BY_ONE: u64 = 20_000;
/// Paired runs (ours, then rayon's) for the row against rayon.
const PAIRS: usize = 21;

fn main() {
    mp_proc::init();
    let mut c = support::criterion();
    let paired = maps(&mut c);
    ping_pong(&mut c);
    c.final_summary();
    let python = support::cpython("dummy_pool");
    table(&python, paired).publish("5-dummy");
}

/// The same map on our pool and on rayon, one after the other, in pairs:
/// the median of our speed over rayon's, and the median of rayon's rate.
/// (Separate runs of each drift apart with the machine's state; a pair
/// sees the same state.)
#[derive(Clone, Copy)]
struct Paired {
    ratio: f64,
    rayon: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ours(pool: &mp_dummy::ThreadPool) -> std::time::Duration {
    let start = std::time::Instant::now();
    let r = pool.map(|x: u64| x.wrapping_mul(x), 0..MAP_TASKS).unwrap();
    let took = start.elapsed();
    assert_eq!(r.len() as u64, MAP_TASKS);
    took
}

fn theirs(rayon: &rayon::ThreadPool) -> std::time::Duration {
    let start = std::time::Instant::now();
    let r: Vec<u64> = rayon.install(|| {
        (0..MAP_TASKS)
            .into_par_iter()
            .map(|x| x.wrapping_mul(x))
            .collect()
    });
    let took = start.elapsed();
    assert_eq!(r.len() as u64, MAP_TASKS);
    took
}

fn paired(pool: &mp_dummy::ThreadPool, rayon: &rayon::ThreadPool) -> Paired {
    for _ in 0..3 {
        ours(pool);
        theirs(rayon);
    }
    let (mut ratios, mut rates) = (Vec::new(), Vec::new());
    for _ in 0..PAIRS {
        let (a, b) = (ours(pool), theirs(rayon));
        ratios.push(b.as_secs_f64() / a.as_secs_f64());
        rates.push(MAP_TASKS as f64 / b.as_secs_f64());
    }
    let p = Paired {
        ratio: median(ratios),
        rayon: median(rates),
    };
    eprintln!(
        "ThreadPool(2).map against rayon: {:.2}x (median of {PAIRS} paired runs)",
        p.ratio
    );
    p
}

fn maps(c: &mut Criterion) -> Paired {
    let mut g = c.benchmark_group("map");
    let pool = mp_dummy::ThreadPool::new(Some(2)).unwrap();
    pool.map(|x: u64| x * x, 0..1000).unwrap(); // warm-up
    support::measure(&mut g, "map", "threadpool_default", |n| {
        for _ in 0..n {
            let r = pool.map(|x: u64| x.wrapping_mul(x), 0..MAP_TASKS).unwrap();
            assert_eq!(r.len() as u64, MAP_TASKS);
        }
    });
    support::measure(&mut g, "map", "threadpool_chunksize1", |n| {
        for _ in 0..n {
            let r = pool
                .map_chunked(|x: u64| x.wrapping_mul(x), 0..ONE_BY_ONE, 1)
                .unwrap();
            assert_eq!(r.len() as u64, ONE_BY_ONE);
        }
    });
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let paired = paired(&pool, &rayon);
    drop(pool);
    support::measure(&mut g, "map", "rayon", |n| {
        for _ in 0..n {
            let r: Vec<u64> = rayon.install(|| {
                (0..MAP_TASKS)
                    .into_par_iter()
                    .map(|x| x.wrapping_mul(x))
                    .collect()
            });
            assert_eq!(r.len() as u64, MAP_TASKS);
        }
    });
    g.finish();
    paired
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");
    {
        let (to, back) = (
            mp_dummy::Queue::<u64>::new().unwrap(),
            mp_dummy::Queue::<u64>::new().unwrap(),
        );
        let (t, b) = (to.clone(), back.clone());
        let echo = std::thread::spawn(move || {
            while let Ok(v) = t.get() {
                b.put(v).unwrap();
            }
        });
        support::measure(&mut g, "pingpong", "queue", |n| {
            for i in 0..n {
                to.put(i).unwrap();
                std::hint::black_box(back.get().unwrap());
            }
        });
        to.close();
        echo.join().unwrap();
    }
    {
        let (to, t) = std::sync::mpsc::channel::<u64>();
        let (b, back) = std::sync::mpsc::channel::<u64>();
        let echo = std::thread::spawn(move || {
            while let Ok(v) = t.recv() {
                b.send(v).unwrap();
            }
        });
        support::measure(&mut g, "pingpong", "mpsc", |n| {
            for i in 0..n {
                to.send(i).unwrap();
                std::hint::black_box(back.recv().unwrap());
            }
        });
        drop(to);
        echo.join().unwrap();
    }
    g.finish();
}

/// Tasks per second, from the median time of a call of `tasks` tasks.
fn rate(id: &str, tasks: u64) -> Option<f64> {
    median_per_iter(id).map(|d| tasks as f64 / d.as_secs_f64())
}

fn table(python: &support::Python, paired: Paired) -> Table {
    let mut t = Table::new(
        "mp-dummy: ThreadPool(2) and the thread Queue (medians; CPython's multiprocessing.dummy.Pool(2) via python3 in the same run)",
    );
    let default = rate("map/threadpool_default", MAP_TASKS);
    t.rows.push(Row::new(
        "ThreadPool(2).map of 100k trivial tasks, default chunksize",
        "tasks/s",
        Kind::Rate,
        default,
        py(python, "dummy_pool_map_tput", "default_chunksize"),
        None,
        "",
        Some(Target::cpython(5.0)),
    ));
    // mp / raw is the median of the paired ratios: raw is rayon's median
    // rate over the pairs, mp that times the median ratio.
    t.rows.push(Row::new(
        "the same map, against rayon",
        "tasks/s",
        Kind::Rate,
        Some(paired.rayon * paired.ratio),
        None,
        Some(paired.rayon),
        format!("rayon par_iter on 2 threads (median of {PAIRS} paired runs)"),
        Some(Target::raw(0.5)),
    ));
    t.rows.push(Row::new(
        "ThreadPool(2).map, chunksize 1",
        "tasks/s",
        Kind::Rate,
        rate("map/threadpool_chunksize1", ONE_BY_ONE),
        py(python, "dummy_pool_map_tput", "chunksize=1"),
        None,
        "",
        None,
    ));
    t.rows.push(Row::new(
        "Queue ping-pong between two threads (round trip)",
        "us",
        Kind::Latency,
        us(median_per_iter("pingpong/queue")),
        None,
        us(median_per_iter("pingpong/mpsc")),
        "std::sync::mpsc round trip",
        None,
    ));
    t
}
