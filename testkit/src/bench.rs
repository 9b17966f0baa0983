//! Shared by the benchmarks: criterion set-up, a recorder that keeps the
//! samples criterion measures (so the table uses the very same numbers),
//! CPython's figures from `bench/python/mp_bench.py` run in the same
//! process tree, and the table of ratios that `cargo xtask bench` prints.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nix::unistd::{ForkResult, fork, read, write};

pub fn quick() -> bool {
    std::env::var_os("MP_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Criterion, configured from the command line, with short runs (the table
/// needs medians, not criterion's plots).
pub fn criterion() -> Criterion {
    let (warm, measure, samples) = if quick() {
        (200, 600, 10)
    } else {
        (800, 2500, 20)
    };
    Criterion::default()
        .warm_up_time(Duration::from_millis(warm))
        .measurement_time(Duration::from_millis(measure))
        .sample_size(samples)
        .without_plots()
        .configure_from_args()
}

pub fn sample_size() -> usize {
    if quick() { 10 } else { 20 }
}

/// `(iterations, elapsed)` of every call, per benchmark id.
type Samples = HashMap<String, Vec<(u64, Duration)>>;

static SAMPLES: Mutex<Option<Samples>> = Mutex::new(None);

/// Benchmarks `body(n)` (which runs `n` iterations) as `name` in the group
/// `group`, recording its samples under `group/name` for the table.
pub fn measure(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    group: &str,
    name: &str,
    mut body: impl FnMut(u64),
) {
    let id = format!("{group}/{name}");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| timed(&id, iters, &mut body))
    });
}

/// `n` one-byte round trips: write on `tx`, read the echo on `rx` (the raw
/// OS figure beside a [`raw_echo`] child).
pub fn round_trips(tx: BorrowedFd<'_>, rx: BorrowedFd<'_>, n: u64) {
    let mut byte = [7u8];
    for _ in 0..n {
        write(tx, &byte).unwrap();
        read(rx, &mut byte).unwrap();
    }
}

/// Times `routine(iters)` for criterion's `iter_custom` and records the sample under `id`.
pub fn timed(id: &str, iters: u64, routine: impl FnOnce(u64)) -> Duration {
    let start = Instant::now();
    routine(iters);
    let elapsed = start.elapsed();
    let mut all = SAMPLES.lock().unwrap();
    all.get_or_insert_with(HashMap::new)
        .entry(id.to_owned())
        .or_default()
        .push((iters, elapsed));
    elapsed
}

/// The median time per iteration of the last run of `id` (criterion's
/// measurement samples: the last `sample_size()` calls; warm-up calls come first).
pub fn median_per_iter(id: &str) -> Option<Duration> {
    let all = SAMPLES.lock().unwrap();
    let samples = all.as_ref()?.get(id)?;
    let n = sample_size().min(samples.len());
    let mut per: Vec<f64> = samples[samples.len() - n..]
        .iter()
        .map(|(iters, d)| d.as_secs_f64() / (*iters).max(1) as f64)
        .collect();
    per.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = if per.len() % 2 == 1 {
        per[per.len() / 2]
    } else {
        (per[per.len() / 2 - 1] + per[per.len() / 2]) / 2.0
    };
    Some(Duration::from_secs_f64(m))
}

/// Pins the calling thread (and the children it forks from now on) to `cpu`,
/// or to every CPU for `None`.
pub fn pin(cpu: Option<usize>) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    match cpu {
        Some(c) => set.set(c).unwrap(),
        None => {
            for c in 0..mp_proc::cpu_count().max(2).min(CpuSet::count()) {
                let _ = set.set(c);
            }
        }
    }
    let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

/// Placements of a parent and a child: (suffix, parent CPU, child CPU), as
/// mp_bench.py and limits.c name them.
pub fn placements() -> Vec<(&'static str, Option<usize>, Option<usize>)> {
    let mut out = vec![("", None, None), ("_samecpu", Some(0), Some(0))];
    if std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        >= 2
    {
        out.push(("_xcpu", Some(0), Some(1)));
    }
    out
}

/// One CPython figure: `(bench, param) -> (value, unit)`.
pub type Python = HashMap<(String, String), (f64, String)>;

/// Runs CPython's side of the benchmarks (`bench/python/mp_bench.py`, the
/// groups given) with `python3`, now, in this run. Empty without python3.
pub fn cpython(groups: &str) -> Python {
    cpython_script("mp_bench.py", groups)
}

/// Runs `bench/python/<script>` (with `MP_BENCH_ONLY=groups`) and reads its figures.
pub fn cpython_script(script: &str, groups: &str) -> Python {
    if std::env::var_os("MP_BENCH_NO_PYTHON").is_some() {
        return Python::new();
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../bench/python")
        .join(script);
    eprintln!(
        "\nrunning CPython's side: python3 {} (MP_BENCH_ONLY={groups})",
        script.display()
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script)
        .env("MP_BENCH_ONLY", groups)
        .env("MP_BENCH_CTX", "fork");
    if quick() {
        cmd.env("MP_BENCH_QUICK", "1");
    }
    let out = match cmd.output() {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
            return Python::new();
        }
        Err(e) => {
            eprintln!("python3 not available ({e}): the CPython column stays empty");
            return Python::new();
        }
    };
    let mut figures = Python::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(bench), Some(param), Some(value), Some(unit)) = (
            v["bench"].as_str(),
            v["param"].as_str(),
            v["value"].as_f64(),
            v["unit"].as_str(),
        ) else {
            continue;
        };
        figures.insert(
            (bench.to_owned(), param.to_owned()),
            (value, unit.to_owned()),
        );
    }
    figures
}

pub fn py(figures: &Python, bench: &str, param: &str) -> Option<f64> {
    figures
        .get(&(bench.to_owned(), param.to_owned()))
        .map(|(v, _)| *v)
}

/// Whether smaller (a latency) or larger (a rate) is better.
#[derive(Copy, Clone, PartialEq)]
pub enum Kind {
    Latency,
    Rate,
}

/// A target: against the raw OS figure, `mp / raw <= bound` for a latency
/// and `mp / raw >= bound` for a rate; against CPython, mp at least `bound`
/// times faster.
#[derive(Copy, Clone)]
pub struct Target {
    pub bound: f64,
    pub against: Against,
}

#[derive(Copy, Clone, PartialEq)]
pub enum Against {
    Raw,
    CPython,
}

impl Target {
    pub fn raw(bound: f64) -> Target {
        Target {
            bound,
            against: Against::Raw,
        }
    }

    pub fn cpython(bound: f64) -> Target {
        Target {
            bound,
            against: Against::CPython,
        }
    }
}

pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub kind: Kind,
    pub mp: Option<f64>,
    pub cpython: Option<f64>,
    pub raw: Option<f64>,
    pub raw_what: String,
    pub target: Option<Target>,
    /// The figure of the table's other contender, if it has one.
    pub other: Option<f64>,
}

impl Row {
    /// A row with no other contender.
    #[allow(clippy::too_many_arguments)] // one per column of the table
    pub fn new(
        name: impl Into<String>,
        unit: &'static str,
        kind: Kind,
        mp: Option<f64>,
        cpython: Option<f64>,
        raw: Option<f64>,
        raw_what: impl Into<String>,
        target: Option<Target>,
    ) -> Row {
        Row {
            name: name.into(),
            unit,
            kind,
            mp,
            cpython,
            raw,
            raw_what: raw_what.into(),
            target,
            other: None,
        }
    }

    /// The same row with the other contender's figure.
    pub fn other(self, other: Option<f64>) -> Row {
        Row { other, ..self }
    }
}

pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
    /// The name of another contender, shown in a column of its own.
    pub other: Option<String>,
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2}M", v / 1e6),
        Some(v) if v >= 1e4 => format!("{:.0}k", v / 1e3),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

impl Table {
    pub fn new(title: &str) -> Table {
        Table {
            title: title.to_owned(),
            rows: Vec::new(),
            other: None,
        }
    }

    /// A table with a column for `other` (another library).
    pub fn with_other(title: &str, other: &str) -> Table {
        Table {
            other: Some(other.to_owned()),
            ..Table::new(title)
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        let other = self
            .other
            .as_ref()
            .map(|o| format!(" {o} |"))
            .unwrap_or_default();
        s.push_str(&format!(
            "| benchmark | unit | mp | CPython |{other} raw OS | mp vs CPython | mp / raw | target | met |\n"
        ));
        s.push_str(if self.other.is_some() {
            "|---|---|---|---|---|---|---|---|---|---|\n"
        } else {
            "|---|---|---|---|---|---|---|---|---|\n"
        });
        for r in &self.rows {
            // How many times faster than CPython.
            let speedup = match (r.mp, r.cpython) {
                (Some(m), Some(p)) if m > 0.0 && p > 0.0 => Some(if r.kind == Kind::Latency {
                    p / m
                } else {
                    m / p
                }),
                _ => None,
            };
            let vs_py = match speedup {
                Some(x) => format!("{x:.1}x {}", if x >= 1.0 { "faster" } else { "slower" }),
                None => "-".into(),
            };
            let ratio = match (r.mp, r.raw) {
                (Some(m), Some(w)) if w > 0.0 => Some(m / w),
                _ => None,
            };
            let (target, met) = match r.target {
                Some(t) => {
                    let (text, ok) = match t.against {
                        Against::Raw => {
                            let op = if r.kind == Kind::Latency { "<=" } else { ">=" };
                            let ok = ratio.map(|x| {
                                if r.kind == Kind::Latency {
                                    x <= t.bound
                                } else {
                                    x >= t.bound
                                }
                            });
                            (format!("mp / raw {op} {}", t.bound), ok)
                        }
                        Against::CPython => (
                            format!(">= {}x CPython", t.bound),
                            speedup.map(|x| x >= t.bound),
                        ),
                    };
                    let met = match ok {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "-",
                    };
                    (text, met.to_owned())
                }
                None => (String::new(), String::new()),
            };
            let other = if self.other.is_some() {
                format!(" {} |", fmt(r.other))
            } else {
                String::new()
            };
            let raw = if r.raw_what.is_empty() {
                fmt(r.raw)
            } else {
                format!("{} ({})", fmt(r.raw), r.raw_what)
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} |{other} {} | {} | {} | {} | {} |\n",
                r.name,
                r.unit,
                fmt(r.mp),
                fmt(r.cpython),
                raw,
                vs_py,
                ratio
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "-".into()),
                target,
                met
            ));
        }
        s
    }

    /// Prints the table and leaves it where `cargo xtask bench` collects it.
    pub fn publish(&self, file: &str) {
        let text = self.render();
        println!("\n{text}");
        if let Some(dir) = std::env::var_os("MP_BENCH_TABLE_DIR") {
            let _ = std::fs::write(PathBuf::from(dir).join(format!("{file}.md")), &text);
        }
    }
}

/// Microseconds of a duration.
pub fn us(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e6)
}

/// Milliseconds of a duration.
pub fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e3)
}

/// Forks a raw child (no mp, no allocation after fork) that pins itself to
/// `cpu` and echoes bytes from `rx` to `tx` until end of file: the OS
/// round trip the benchmarks compare against. `parent` are the parent's
/// ends, which the child closes.
#[allow(unsafe_code)] // fork, close and _exit in a raw child
pub fn raw_echo(
    rx: OwnedFd,
    tx: OwnedFd,
    cpu: Option<usize>,
    parent: [&OwnedFd; 2],
) -> nix::unistd::Pid {
    // SAFETY: the child only pins itself and makes close/read/write syscalls before _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            for fd in parent {
                // SAFETY: closes the child's copy of a parent end; nothing else uses it here.
                unsafe { nix::libc::close(std::os::fd::AsRawFd::as_raw_fd(fd)) };
            }
            pin(cpu);
            let mut b = [0u8; 1];
            while let Ok(1) = read(rx.as_fd(), &mut b) {
                if write(tx.as_fd(), &b).is_err() {
                    break;
                }
            }
            // SAFETY: _exit ends a forked child at once.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}
