//! `ClusterContext::from_launcher`: the copies of one program started as an
//! engine starts them (mpirun, srun, an Indexed Job), each with its
//! engine's variables. The copies are this test binary, running
//! [`fixture`] (which does nothing unless [`FIXTURE`] is set): rank 0 maps
//! over a pool of the attached copies, the others serve.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mp_manager::ClusterContext;
use mp_pool::Pool;
use mp_proc::{Context, StartMethod};
use mp_testkit::guard;

/// Selects the fixture's work in a copy: `map`, or `hold` (map, then
/// wait for standard input to end).
const FIXTURE: &str = "MP_ATTACH_FIXTURE";
/// Which copy this is, for the tasks to say where they ran (not an
/// engine's variable: the copies' processes inherit it).
const ME: &str = "MP_ATTACH_ME";
/// A mark of one test's copies, for finding them (and what they started)
/// in /proc.
const TAG: &str = "MP_ATTACH_TAG";
/// The start method of rank 0's processes.
const METHOD: &str = "MP_ATTACH_METHOD";
/// How long a job may take before it counts as hung.
const HUNG: Duration = Duration::from_secs(120);

fn square_where(x: u64) -> (u64, String) {
    (x * x, std::env::var(ME).unwrap_or_default())
}

/// One copy of an SPMD job (run by the tests below, in a copy of this
/// binary each).
#[test]
#[ignore = "a copy of the attach tests' jobs: they run it"]
fn fixture() {
    let Ok(mode) = std::env::var(FIXTURE) else {
        return;
    };
    if let Ok(method) = std::env::var(METHOD) {
        mp_proc::set_start_method(method.parse().unwrap()).unwrap();
    }
    match ClusterContext::from_launcher() {
        Ok(Some(cluster)) => {
            let hosts = cluster.hosts().len();
            let pool = Pool::builder().context(cluster.clone()).build().unwrap();
            let out = pool.map(square_where, 1..=8).unwrap();
            let squares: Vec<u64> = out.iter().map(|(s, _)| *s).collect();
            let places: BTreeSet<&str> = out.iter().map(|(_, at)| at.as_str()).collect();
            println!("coordinator: {squares:?} on {hosts} hosts, ran at {places:?}");
            if mode == "hold" {
                println!("ready");
                std::io::stdout().flush().unwrap();
                let mut rest = String::new();
                let _ = std::io::stdin().read_line(&mut rest);
            }
            drop(pool);
            drop(cluster);
        }
        Ok(None) => println!("served"),
        Err(e) => println!("refused: {e}"),
    }
}

/// A key file (mode `mode`) holding `key`, in `dir`.
fn key_file(dir: &Path, name: &str, key: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .unwrap();
    f.write_all(key).unwrap();
    path
}

/// A free TCP port of 127.0.0.1 (free when asked).
fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// An engine's variables for copy `rank` of `size`.
#[derive(Clone, Copy, Debug)]
enum Engine {
    OpenMpi,
    Pmi,
    Slurm,
    IndexedJob,
}

impl Engine {
    fn vars(self, rank: usize, size: usize) -> Vec<(&'static str, String)> {
        let (r, s) = match self {
            Engine::OpenMpi => ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
            Engine::Pmi => ("PMI_RANK", "PMI_SIZE"),
            Engine::Slurm => ("SLURM_PROCID", "SLURM_NTASKS"),
            Engine::IndexedJob => ("JOB_COMPLETION_INDEX", "MP_CLUSTER_SIZE"),
        };
        vec![(r, rank.to_string()), (s, size.to_string())]
    }
}

/// Copy `rank` of a job: this binary running [`fixture`] with `vars`.
fn copy(rank: usize, tag: &str, mode: &str, vars: &[(&str, String)]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "attach::fixture",
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ])
    .env(FIXTURE, mode)
    .env(ME, rank.to_string())
    .env(TAG, tag)
    .env("RUST_BACKTRACE", "0")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// Waits for every copy (in rank order), each on a thread: a copy that
/// does not end within [`HUNG`] fails the test (the others are killed)
/// instead of hanging it.
fn outputs(copies: Vec<Child>) -> Vec<Output> {
    let pids: Vec<u32> = copies.iter().map(Child::id).collect();
    let (tx, rx) = mpsc::channel();
    for (rank, child) in copies.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || tx.send((rank, child.wait_with_output().unwrap())));
    }
    drop(tx);
    let mut done: Vec<Option<Output>> = pids.iter().map(|_| None).collect();
    for _ in 0..pids.len() {
        match rx.recv_timeout(HUNG) {
            Ok((rank, out)) => done[rank] = Some(out),
            Err(_) => {
                for pid in &pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                panic!("a copy hung: {:?}", done.iter().map(Option::is_some).collect::<Vec<_>>());
            }
        }
    }
    done.into_iter().map(Option::unwrap).collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The line the fixture printed (`coordinator: ...`, `served`,
/// `refused: ...`), with the copy's stderr if it has none.
fn said(o: &Output) -> String {
    let out = stdout(o);
    out.lines()
        .map(|l| l.trim_start_matches("test attach::fixture ... "))
        .find(|l| l.starts_with("coordinator:") || *l == "served" || l.starts_with("refused:"))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("nothing said: {out}\n{}", String::from_utf8_lossy(&o.stderr)))
}

/// Runs a job of `size` copies, each with `common` and its engine's
/// variables; returns what each said, in rank order, after checking each
/// exited 0.
fn job(size: usize, engine: Engine, mode: &str, common: &[(&str, String)]) -> Vec<String> {
    let tag = format!("attach-{}-{engine:?}", std::process::id());
    let copies: Vec<Child> = (0..size)
        .map(|rank| {
            let mut vars = common.to_vec();
            vars.extend(engine.vars(rank, size));
            copy(rank, &tag, mode, &vars).spawn().unwrap()
        })
        .collect();
    outputs(copies)
        .iter()
        .enumerate()
        .map(|(rank, o)| {
            assert!(o.status.success(), "rank {rank}: {}\n{}", o.status, said(o));
            said(o)
        })
        .collect()
}

/// What rank 0 of a job of `size` copies says when it maps over them: the
/// squares, computed on the other copies only.
fn mapped(size: usize) -> impl Fn(&str) -> bool {
    move |line: &str| {
        let prefix = format!(
            "coordinator: [1, 4, 9, 16, 25, 36, 49, 64] on {} hosts, ran at {{",
            size - 1
        );
        let Some(places) = line.strip_prefix(&prefix) else {
            return false;
        };
        let places = places.trim_end_matches('}');
        !places.is_empty()
            && places.split(", ").all(|p| {
                let rank: usize = p.trim_matches('"').parse().unwrap_or(0);
                (1..size).contains(&rank)
            })
    }
}

fn common(dir: &Path) -> Vec<(&'static str, String)> {
    let key = key_file(dir, "key", b"the job's key", 0o600);
    vec![
        ("MP_CLUSTER_AUTHKEY_FILE", key.display().to_string()),
        ("MP_CLUSTER_TIMEOUT", "60".into()),
    ]
}

/// Each engine's rank and size variables: rank 0 maps over a pool of the
/// others, whose `from_launcher` returns `None` (and exit 0) once it is
/// done; rank 0's processes under each start method.
#[test]
fn every_engine_s_copies_attach_and_serve() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let mut runs: Vec<(Engine, Option<StartMethod>)> = [Engine::Pmi, Engine::Slurm, Engine::IndexedJob]
        .into_iter()
        .map(|e| (e, None))
        .collect();
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver] {
        runs.push((Engine::OpenMpi, Some(method)));
    }
    for (engine, method) in runs {
        let mut vars = common(&tempfile::tempdir_in(dir.path()).unwrap().keep());
        vars.push(("MP_CLUSTER_ADDRESS", free_address()));
        if let Some(m) = method {
            vars.push((METHOD, m.to_string()));
        }
        let said = job(3, engine, "map", &vars);
        assert!(mapped(3)(&said[0]), "{engine:?} {method:?}: {}", said[0]);
        assert_eq!(said[1..], ["served", "served"], "{engine:?} {method:?}");
    }
}
