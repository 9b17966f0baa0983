//! The cost of crossing hosts, in one run: a pool's `map` of 100k trivial
//! tasks and its `apply` round trip over a `ClusterContext` (workers
//! started through their launcher, everything over its link) on loopback
//! (`Launcher::command([])`: the agent path on this machine) and across
//! network namespaces (`ip netns exec`, the hosts of mp-testkit's harness;
//! root only), beside the local fork pool and CPython's `Pool(2)`; and the
//! start + join of one process on a host against the raw launcher running
//! the same binary (`ip netns exec`, `ssh` to a real sshd in the namespace).
//!
//! Medians of repeated runs (no criterion: every figure is a whole
//! operation of milliseconds). Without root the namespace and ssh rows
//! stay empty, with the reason printed.

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mp_manager::ClusterContext;
use mp_pool::Pool;
use mp_proc::{Launcher, Process, StartMethod};
use mp_testkit::bench::{self as support, Kind, Row, Table, Target, py};
use mp_testkit::netns::Hosts;
use mp_testkit::sshd::Sshd;

/// The argument that makes this binary exit at once: what the raw
/// launcher rows run.
const NOOP: &str = "--mp-bench-noop";
/// Tasks of a `map` (CPython's side uses the same).
const MAP_TASKS: u64 = 100_000;

fn main() {
    if std::env::args().any(|a| a == NOOP) {
        return;
    }
    let quick = support::quick();
    let reps = if quick { 3 } else { 11 };
    let mut rows = Vec::new();
    let hosts = Hosts::new(2)
        .map_err(|skip| eprintln!("namespace rows skipped: {skip}"))
        .ok();
    let sshd = hosts.as_ref().and_then(|h| {
        Sshd::start(h, 1)
            .map_err(|skip| eprintln!("ssh rows skipped: {skip}"))
            .ok()
    });

    // Pools: local, over a cluster on loopback, across namespaces.
    let local = || {
        Pool::builder()
            .processes(2)
            .context(mp_proc::get_context(StartMethod::Fork))
    };
    let loopback = || {
        let cluster = ClusterContext::builder()
            .host(Launcher::command(Vec::<&str>::new()), 2)
            .build()
            .unwrap();
        Pool::builder().processes(2).context(cluster)
    };
    let across = |hosts: &Hosts| {
        let cluster = ClusterContext::builder()
            .listen(SocketAddr::new(hosts.parent_addr(0), 0))
            .host(hosts.launcher(0), 1)
            .host(hosts.launcher(1), 1)
            .build()
            .unwrap();
        Pool::builder().processes(2).context(cluster)
    };
    let mut figures = vec![(
        "local fork Pool(2)",
        pool_figures(local().build().unwrap(), reps),
    )];
    figures.push((
        "cluster Pool(2), loopback (2 agents on this host)",
        pool_figures(loopback().build().unwrap(), reps),
    ));
    if let Some(hosts) = &hosts {
        figures.push((
            "cluster Pool(2), 2 namespaces by ip netns exec",
            pool_figures(across(hosts).build().unwrap(), reps),
        ));
    }

    // One process: start + join, against the raw launcher.
    let exe = std::env::current_exe().unwrap();
    let raw = |argv: &[String]| {
        median(reps * 2, || {
            let status = Command::new(&argv[0])
                .args(&argv[1..])
                .arg(&exe)
                .arg(NOOP)
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        })
    };
    let started = |launcher: Launcher| {
        median(reps * 2, || {
            let mut p = Process::new(noop, ()).launcher(launcher.clone());
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), 0);
        })
    };
    let spawn = median(reps * 2, || {
        let mut p = Process::new(noop, ()).start_method(StartMethod::Spawn);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    });
    let mut starts = vec![(
        "start + join, Launcher::command([]) (agent on this host)".to_owned(),
        started(Launcher::command(Vec::<&str>::new())),
        median(reps * 2, || {
            let status = Command::new(&exe).arg(NOOP).status().unwrap();
            assert!(status.success());
        }),
        "the binary run directly".to_owned(),
    )];
    if let Some(hosts) = &hosts {
        let prefix: Vec<String> = hosts.exec_prefix(0).into();
        starts.push((
            "start + join, ip netns exec".to_owned(),
            started(hosts.launcher(0)),
            raw(&prefix),
            "ip netns exec of the binary".to_owned(),
        ));
    }
    if let Some(sshd) = &sshd {
        let mut argv = vec!["ssh".to_owned()];
        argv.extend(sshd.options());
        argv.push(sshd.host());
        starts.push((
            "start + join, ssh to the namespace's sshd".to_owned(),
            started(sshd.launcher()),
            raw(&argv),
            "ssh running the binary".to_owned(),
        ));
    }

    // What keep-alives cost: one idle process over ssh, with a bound of
    // 1 s (pings every 250 ms) and with keep-alives off.
    let idle = if quick { 3 } else { 10 };
    let keepalive = sshd.as_ref().zip(hosts.as_ref()).map(|(sshd, hosts)| {
        let on = idle_cost(sshd, hosts, Duration::from_secs(1), idle);
        let off = idle_cost(sshd, hosts, Duration::ZERO, idle);
        // Last: the host is down afterwards until a start there succeeds.
        let detect = (0..reps.min(3))
            .map(|_| cut_off(sshd, hosts, Duration::from_secs(1)))
            .max()
            .unwrap_or_default();
        (on, off, detect)
    });

    let python = support::cpython("pool");
    let py_map = py(&python, "pool_map_tput", "default_chunksize");
    let py_apply = py(&python, "pool_apply_rtt", "Pool(2)");
    for (what, f) in &figures {
        rows.push(Row::new(
            format!("map of 100k trivial tasks, {what}"),
            "tasks/s",
            Kind::Rate,
            Some(MAP_TASKS as f64 / f.map.as_secs_f64()),
            py_map,
            None,
            "",
            Some(Target::cpython(1.0)),
        ));
    }
    for (what, f) in &figures {
        rows.push(Row::new(
            format!("apply round trip, {what}"),
            "us",
            Kind::Latency,
            Some(f.apply.as_secs_f64() * 1e6),
            py_apply,
            None,
            "",
            Some(Target::cpython(1.0)),
        ));
    }
    rows.push(Row::new(
        "start + join, local spawn (for scale)",
        "ms",
        Kind::Latency,
        Some(spawn.as_secs_f64() * 1e3),
        None,
        None,
        "",
        None,
    ));
    for (what, mp, raw, raw_what) in starts {
        rows.push(Row::new(
            what,
            "ms",
            Kind::Latency,
            Some(mp.as_secs_f64() * 1e3),
            None,
            Some(raw.as_secs_f64() * 1e3),
            raw_what,
            Some(Target::raw(3.0)),
        ));
    }
    if let Some((on, off, detect)) = keepalive {
        rows.push(Row::new(
            "a link cut (ip link set down) until its process counts as killed, bound 1 s (worst of 3)",
            "ms",
            Kind::Latency,
            Some(detect.as_secs_f64() * 1e3),
            None,
            Some(1000.0),
            "the bound",
            None,
        ));
        rows.push(Row::new(
            "keep-alive bytes on the wire, one idle process over ssh, bound 1 s (default 10 s: a tenth)",
            "B/s",
            Kind::Latency,
            Some(on.bytes),
            None,
            Some(off.bytes),
            "keep-alives off",
            None,
        ));
        rows.push(Row::new(
            "keep-alive CPU, one idle process over ssh, bound 1 s (agent, process, parent, ssh, sshd)",
            "us/s",
            Kind::Latency,
            Some(on.cpu_us),
            None,
            Some(off.cpu_us),
            "keep-alives off",
            None,
        ));
    }
    let mut t = Table::new(
        "mp-manager: pools and processes across hosts (medians; CPython's Pool(2) via python3 in the same run)",
    );
    t.rows = rows;
    drop(sshd);
    drop(hosts);
    t.publish("4-cluster");
}

fn noop(_: ()) {}

/// Says it is there, then waits for its connection to end.
fn idle(conn: mp_proc::Connection) {
    conn.send(&()).unwrap();
    let _ = conn.recv::<()>();
}

/// Bytes per second through host 1's link, and CPU microseconds per second
/// of every process of the link (this one, ssh, sshd's session, the agent,
/// the process), while one process on host 1 idles for `secs` seconds.
struct IdleCost {
    bytes: f64,
    cpu_us: f64,
}

fn idle_cost(sshd: &Sshd, hosts: &Hosts, bound: Duration, secs: u64) -> IdleCost {
    let (here, there) = mp_proc::pipe(true).unwrap();
    let mut p = Process::new(idle, there).launcher(sshd.launcher().keepalive(bound));
    p.start().unwrap();
    here.recv::<()>().unwrap();
    let link = format!("/sys/class/net/{}/statistics", hosts.name(1));
    let bytes = || -> u64 {
        ["rx_bytes", "tx_bytes"]
            .iter()
            .map(|f| {
                std::fs::read_to_string(format!("{link}/{f}"))
                    .unwrap()
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    };
    // This process and its children (ssh), sshd and its children (the
    // session, the agent, the process).
    let mine = std::process::id();
    let cpu = || -> u64 {
        let mut family = vec![mine, sshd.pid()];
        family.extend(mp_testkit::descendants(mine));
        family.extend(mp_testkit::descendants(sshd.pid()));
        family.iter().map(|&pid| runtime_ns(pid)).sum()
    };
    let (b0, c0, t0) = (bytes(), cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (b1, c1, dt) = (bytes(), cpu(), t0.elapsed().as_secs_f64());
    drop(here);
    assert_eq!(p.join().unwrap(), 0);
    IdleCost {
        bytes: (b1 - b0) as f64 / dt,
        cpu_us: (c1.saturating_sub(c0)) as f64 / 1e3 / dt,
    }
}

/// How long after host 1's link is cut its process counts as killed, with
/// keep-alives of `bound`; the link is back up afterwards.
fn cut_off(sshd: &Sshd, hosts: &Hosts, bound: Duration) -> Duration {
    // The host may be down from the last cut: a start succeeds once the
    // prober's has.
    let mut p = loop {
        let (here, there) = mp_proc::pipe(true).unwrap();
        let mut p = Process::new(idle, there).launcher(sshd.launcher().keepalive(bound));
        if p.start().is_ok() {
            here.recv::<()>().unwrap();
            std::mem::forget(here);
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    hosts.link_down(1).unwrap();
    let t0 = Instant::now();
    let code = p.join().unwrap();
    let took = t0.elapsed();
    hosts.link_up(1).unwrap();
    assert_eq!(code, -9);
    took
}

/// The CPU time of every thread of `pid` so far, in ns (schedstat).
fn runtime_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

struct PoolFigures {
    /// One `map` of [`MAP_TASKS`].
    map: Duration,
    /// One `apply`.
    apply: Duration,
}

fn pool_figures(pool: Pool, reps: usize) -> PoolFigures {
    pool.map(square, 0..1000).unwrap(); // warm-up: every worker started
    let map = median(reps, || {
        assert_eq!(
            pool.map(square, 0..MAP_TASKS).unwrap().len() as u64,
            MAP_TASKS
        );
    });
    const CALLS: u32 = 500;
    let apply = median(reps, || {
        for i in 0..u64::from(CALLS) {
            std::hint::black_box(pool.apply(square, i).unwrap());
        }
    }) / CALLS;
    pool.close();
    pool.join().unwrap();
    PoolFigures { map, apply }
}

/// The median of `reps` timed runs of `body`.
fn median(reps: usize, mut body: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            body();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
