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
use mp_proc::StartMethod;
use mp_testkit::guard;

/// Selects the fixture's work in a copy: `map`, or `hold` (map, then
/// wait for standard input to end).
pub(crate) const FIXTURE: &str = "MP_ATTACH_FIXTURE";
/// Which copy this is, for the tasks to say where they ran (not an
/// engine's variable: the copies' processes inherit it).
const ME: &str = "MP_ATTACH_ME";
/// A mark of one test's copies, for finding them (and what they started)
/// in /proc.
const TAG: &str = "MP_ATTACH_TAG";
/// The start method of rank 0's processes.
const METHOD: &str = "MP_ATTACH_METHOD";
/// How long a job may take before it counts as hung.
pub(crate) const HUNG: Duration = Duration::from_secs(120);

fn square_where(x: u64) -> (u64, String) {
    // Under a real mpirun, whose copies all have the same variables but
    // their rank (which their agents do not get): the network namespace.
    let me = std::env::var(ME).unwrap_or_else(|_| {
        let ns = std::fs::read_link("/proc/self/ns/net").unwrap_or_default();
        ns.to_string_lossy().into_owned()
    });
    (x * x, me)
}

/// One copy of an SPMD job (run by the tests below, in a copy of this
/// binary each).
#[test]
#[ignore = "a copy of the attach tests' jobs: they run it"]
fn fixture() {
    let Ok(mode) = std::env::var(FIXTURE) else {
        return;
    };
    if std::env::var_os("MP_ATTACH_LOG").is_some() {
        mp_logging::log_to_stderr(Some(mp_logging::Level::Info));
    }
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
            if mode == "hold" || mode == "again" {
                println!("ready");
                std::io::stdout().flush().unwrap();
                let mut rest = String::new();
                let _ = std::io::stdin().read_line(&mut rest);
            }
            if mode == "again" {
                let out = pool.map(square_where, 1..=8).unwrap();
                let places: BTreeSet<&str> = out.iter().map(|(_, at)| at.as_str()).collect();
                println!("again: ran at {places:?}");
            }
            drop(pool);
            drop(cluster);
        }
        Ok(None) => println!("served"),
        Err(e) => println!("refused: {e}"),
    }
}

/// A key file (mode `mode`) holding `key`, in `dir`.
pub(crate) fn key_file(dir: &Path, name: &str, key: &[u8], mode: u32) -> PathBuf {
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
pub(crate) fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// An engine's variables for copy `rank` of `size`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Engine {
    OpenMpi,
    Pmi,
    Slurm,
    IndexedJob,
}

impl Engine {
    pub(crate) fn vars(self, rank: usize, size: usize) -> Vec<(&'static str, String)> {
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
pub(crate) fn copy(rank: usize, tag: &str, mode: &str, vars: &[(&str, String)]) -> Command {
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
pub(crate) fn outputs(copies: Vec<Child>) -> Vec<Output> {
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
                panic!(
                    "a copy hung: {:?}",
                    done.iter().map(Option::is_some).collect::<Vec<_>>()
                );
            }
        }
    }
    done.into_iter().map(Option::unwrap).collect()
}

/// What each copy said (see [`said`]), in rank order, once all have ended.
pub(crate) fn said_all(copies: Vec<Child>) -> Vec<String> {
    outputs(copies).iter().map(said).collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The line the fixture printed (`coordinator: ...`, `served`,
/// `refused: ...`), with the copy's stderr if it has none.
pub(crate) fn said(o: &Output) -> String {
    let out = stdout(o);
    out.lines()
        .map(|l| l.trim_start_matches("test attach::fixture ... "))
        .find(|l| l.starts_with("coordinator:") || *l == "served" || l.starts_with("refused:"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "nothing said: {out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        })
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
pub(crate) fn mapped(size: usize) -> impl Fn(&str) -> bool {
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

pub(crate) fn common(dir: &Path) -> Vec<(&'static str, String)> {
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
    let mut runs: Vec<(Engine, Option<StartMethod>)> =
        [Engine::Pmi, Engine::Slurm, Engine::IndexedJob]
            .into_iter()
            .map(|e| (e, None))
            .collect();
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::Forkserver,
    ] {
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

/// Accepts `n` connections on `l` (closing each at once), or fails the
/// test after [`HUNG`].
fn accept_and_close(l: std::net::TcpListener, n: usize) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..n {
            drop(l.accept());
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(HUNG)
        .expect("the copies never dialed the stale address");
}

/// `MP_CLUSTER_ADDRESS_FILE`: the copies start while the file still names
/// the coordinator of an earlier run (they dial it: it answers and hangs
/// up, then it is gone); rank 0, started after, listens on a port of its
/// own (every address; the file names this host's first address) and
/// replaces the file, which they read again; it removes the file once done.
#[test]
fn an_address_file_of_an_earlier_run_is_read_again() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("address");
    let stale = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stale_at = stale.local_addr().unwrap();
    std::fs::write(&file, format!("{stale_at}\n")).unwrap();
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS_FILE", file.display().to_string()));
    let tag = format!("attach-file-{}", std::process::id());
    let with = |rank| {
        let mut v = vars.clone();
        v.extend(Engine::OpenMpi.vars(rank, 3));
        copy(rank, &tag, "map", &v).spawn().unwrap()
    };
    let mut copies: Vec<Child> = vec![with(1), with(2)];
    accept_and_close(stale, 2);
    copies.insert(0, with(0));
    let said = said_all(copies);
    assert!(mapped(3)(&said[0]), "{}", said[0]);
    assert_eq!(said[1..], ["served", "served"]);
    // Rank 0 removed the file it wrote when it was done (what it held:
    // `attach_trust`).
    assert!(!file.exists(), "{}", file.display());
}

/// A key file that others may read is refused, saying why; with mode 0600,
/// a job of one copy runs on this machine alone.
#[test]
fn a_key_file_open_to_others_is_refused_and_a_job_of_one_runs_here() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let open = key_file(dir.path(), "open", b"key", 0o644);
    let mut vars = vec![
        ("MP_CLUSTER_AUTHKEY_FILE", open.display().to_string()),
        ("MP_CLUSTER_ADDRESS", free_address()),
    ];
    let said = job(1, Engine::Slurm, "map", &vars);
    assert!(
        said[0].starts_with("refused: MP_CLUSTER_AUTHKEY_FILE: ") && said[0].contains("chmod 600"),
        "{}",
        said[0]
    );
    vars[0].1 = key_file(dir.path(), "closed", b"key", 0o600)
        .display()
        .to_string();
    let said = job(1, Engine::Slurm, "map", &vars);
    assert_eq!(
        said[0],
        "coordinator: [1, 4, 9, 16, 25, 36, 49, 64] on 1 hosts, ran at {\"0\"}"
    );
}

/// A rank that is not a number, and no engine at all: clear refusals.
#[test]
fn a_copy_outside_an_engine_or_with_a_bad_rank_is_refused() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS", free_address()));
    let tag = format!("attach-bad-{}", std::process::id());
    let mut bad = vars.clone();
    bad.extend([
        ("PMI_RANK", "first".to_owned()),
        ("PMI_SIZE", "2".to_owned()),
    ]);
    let none = copy(0, &tag, "map", &vars).spawn().unwrap();
    let bad = copy(0, &tag, "map", &bad).spawn().unwrap();
    let said = said_all(vec![none, bad]);
    assert!(
        said[0].contains("not started by mpirun, srun or an Indexed Job"),
        "{}",
        said[0]
    );
    assert!(
        said[1].contains("PMI_RANK=\"first\" is not a rank"),
        "{}",
        said[1]
    );
}

/// A copy whose key file holds another key fails its handshake and says
/// so; rank 0 waits for it until its deadline and names it; the copy that
/// attached serves until then and returns `None`.
#[test]
fn a_copy_with_another_key_is_refused_while_the_others_serve() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let other = key_file(dir.path(), "other", b"another key", 0o600);
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS", free_address()));
    vars.push(("MP_CLUSTER_TIMEOUT", "3".into()));
    let tag = format!("attach-key-{}", std::process::id());
    let copies: Vec<Child> = (0..3)
        .map(|rank| {
            let mut v = vars.clone();
            v.extend(Engine::Pmi.vars(rank, 3));
            if rank == 2 {
                v.push(("MP_CLUSTER_AUTHKEY_FILE", other.display().to_string()));
            }
            copy(rank, &tag, "map", &v).spawn().unwrap()
        })
        .collect();
    let said = said_all(copies);
    assert!(
        said[0].contains("1 of the 2 other copies did not attach") && said[0].contains("(ranks 2)"),
        "{}",
        said[0]
    );
    assert_eq!(said[1], "served");
    assert!(said[2].contains("refused this copy's key"), "{}", said[2]);
}

/// The processes whose environment has `TAG=tag` (zombies aside).
pub(crate) fn tagged(tag: &str) -> Vec<(u32, String)> {
    let mark = format!("{TAG}={tag}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == mark.as_bytes()) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        if state == Some('Z') || state.is_none() {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
    }
    found
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(") ").next().unwrap_or_default();
    after
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// A job of three copies in `hold` mode (SLURM's variables, `extra` too):
/// rank 0 and the others, once rank 0 has mapped and says it is ready.
fn held_job(tag: &str, dir: &Path, extra: &[(&'static str, String)]) -> (Child, Vec<Child>) {
    held_job_with(tag, dir, extra, &[])
}

/// As [`held_job`], with `copies` too in the environment of the copies
/// but rank 0 (after `extra`).
pub(crate) fn held_job_with(
    tag: &str,
    dir: &Path,
    extra: &[(&'static str, String)],
    copies: &[(&'static str, String)],
) -> (Child, Vec<Child>) {
    let (rank0, copies, _rest) = held_job_in("hold", tag, dir, extra, copies);
    (rank0, copies)
}

/// As [`held_job_with`], rank 0 in fixture mode `mode` (`hold`, or
/// `again`: a map again once its standard input has a line); with what
/// rank 0 prints after it is ready.
fn held_job_in(
    mode: &str,
    tag: &str,
    dir: &Path,
    extra: &[(&'static str, String)],
    copies: &[(&'static str, String)],
) -> (Child, Vec<Child>, mpsc::Receiver<String>) {
    let mut vars = common(dir);
    vars.push(("MP_CLUSTER_ADDRESS", free_address()));
    vars.extend_from_slice(extra);
    let with = |rank| {
        let mut v = vars.clone();
        if rank > 0 {
            v.extend_from_slice(copies);
        }
        v.extend(Engine::Slurm.vars(rank, 3));
        let mut c = copy(rank, tag, mode, &v);
        c.stdin(Stdio::piped());
        c.spawn().unwrap()
    };
    let mut rank0 = with(0);
    let copies = vec![with(1), with(2)];
    let (tx, rx) = mpsc::channel();
    let out = rank0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx.recv_timeout(HUNG).expect("rank 0 never got ready");
        if line == "ready" {
            break;
        }
    }
    // An agent (a pool worker's) under each copy (its process, a fork of
    // it, has the same command line).
    let parents: BTreeSet<u32> = tagged(tag)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(mp_proc::plumbing::AGENT_MARKER))
        .map(|(pid, _)| parent_of(pid))
        .collect();
    let serving: BTreeSet<u32> = copies.iter().map(Child::id).collect();
    assert!(parents.is_superset(&serving), "{:?}", tagged(tag));
    (rank0, copies, rx)
}

/// The coordinator frozen (SIGSTOP: no word from it and no end of its
/// connections, as behind a partition) while its pool's workers run on the
/// copies: the copies count it as gone within their keep-alive bound (3 s
/// here), end their agents, return `None` and exit 0.
#[test]
fn a_frozen_coordinator_is_left_by_its_copies() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("attach-frozen-{}", std::process::id());
    let (mut rank0, copies) = held_job(
        &tag,
        dir.path(),
        &[
            ("MP_CLUSTER_KEEPALIVE", "3".into()),
            ("MP_CLUSTER_REJOIN", "0".into()),
        ],
    );
    let rank0_pid = nix::unistd::Pid::from_raw(rank0.id() as i32);
    nix::sys::signal::kill(rank0_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let said = said_all(copies);
    assert_eq!(said, ["served", "served"]);
    let agents: Vec<(u32, String)> = tagged(&tag)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(mp_proc::plumbing::AGENT_MARKER))
        .collect();
    assert_eq!(agents, [], "the copies reaped their agents");
    rank0.kill().unwrap();
    rank0.wait().unwrap();
    let clean = mp_testkit::wait_until(HUNG, || tagged(&tag).is_empty());
    assert!(clean, "left behind: {:?}", tagged(&tag));
}

/// The coordinator frozen long enough for its copies to count it as lost
/// (2 s here), then thawed, as a partition that heals: the copies dial it
/// again and attach again; its pool's workers there, whose links fell
/// silent too, are replaced on them, and a second map runs on both.
#[test]
fn copies_that_lost_a_frozen_coordinator_attach_again_when_it_thaws() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("attach-thaw-{}", std::process::id());
    let (mut rank0, mut copies, said_after) = held_job_in(
        "again",
        &tag,
        dir.path(),
        &[
            ("MP_CLUSTER_KEEPALIVE", "2".into()),
            ("MP_ATTACH_LOG", "1".into()),
        ],
        &[],
    );
    // Each copy's log, line by line.
    let (tx, rx) = mpsc::channel();
    for (rank, copy) in copies.iter_mut().enumerate() {
        let (tx, err) = (tx.clone(), copy.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(err)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let _ = tx.send((rank + 1, line));
            }
        });
    }
    let wait_for = |what: &str| {
        let mut seen = BTreeSet::new();
        while seen.len() < 2 {
            let (rank, line) = rx
                .recv_timeout(HUNG)
                .unwrap_or_else(|_| panic!("no {what}"));
            if line.contains(what) {
                seen.insert(rank);
            }
        }
    };
    let rank0_pid = nix::unistd::Pid::from_raw(rank0.id() as i32);
    nix::sys::signal::kill(rank0_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_for("dialing it again");
    nix::sys::signal::kill(rank0_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    wait_for("attached again");
    rank0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let again = loop {
        let line = said_after
            .recv_timeout(HUNG)
            .expect("rank 0 said nothing more");
        if let Some((_, places)) = line.split_once("again: ran at ") {
            break places.to_owned();
        }
    };
    assert_eq!(again, r#"{"1", "2"}"#);
    assert!(rank0.wait().unwrap().success());
    let said = said_all(copies);
    assert_eq!(said, ["served", "served"]);
    let clean = mp_testkit::wait_until(HUNG, || tagged(&tag).is_empty());
    assert!(clean, "left behind: {:?}", tagged(&tag));
}

/// The coordinator SIGKILLed while its pool's workers run on the copies:
/// the copies see their control connection end, end their agents (whose
/// links have ended too), return `None` and exit 0; nothing of the job is
/// left on this machine.
#[test]
fn a_coordinator_killed_leaves_no_process_behind() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("attach-kill-{}", std::process::id());
    let (mut rank0, copies) = held_job(&tag, dir.path(), &[]);
    rank0.kill().unwrap();
    rank0.wait().unwrap();
    let said = said_all(copies);
    assert_eq!(said, ["served", "served"]);
    // Rank 0's own helpers (its manager, its fork server) end as they see
    // their parent gone: a state nothing tells of, hence the wait.
    let clean = mp_testkit::wait_until(HUNG, || tagged(&tag).is_empty());
    assert!(clean, "left behind: {:?}", tagged(&tag));
}

/// The attach messages as a copy sends them (`cluster/attach/wire.rs`),
/// for a copy of another build played by this test.
mod fake {
    #[derive(serde::Serialize)]
    pub(super) enum Hello {
        Attach(Attach),
    }
    #[derive(serde::Serialize)]
    pub(super) struct Attach {
        pub(super) rank: u64,
        pub(super) host: String,
        pub(super) slots: u64,
        pub(super) build: Vec<u8>,
    }
    #[derive(serde::Deserialize, Debug)]
    pub(super) enum Answer {
        Welcome {
            #[allow(dead_code)]
            keepalive: std::time::Duration,
        },
        Refused(String),
    }
}

/// A copy that runs another build (played by this test, with the job's
/// key, as rank `rank`): refused and told why.
fn attach_another_build(at: &str, rank: u64) {
    let address: mp_proc::connection::Address = at.parse().unwrap();
    let mut conn = None;
    // Rank 0 listens once it has started: dial until it answers.
    let dialed = mp_testkit::wait_until(HUNG, || {
        conn = mp_proc::connection::Client::connect(&address, Some(b"the job's key")).ok();
        conn.is_some()
    });
    assert!(dialed, "rank 0 never listened at {at}");
    let conn = conn.unwrap();
    conn.send(&fake::Hello::Attach(fake::Attach {
        rank,
        host: "elsewhere".into(),
        slots: 1,
        build: b"another build".to_vec(),
    }))
    .unwrap();
    match conn.recv::<fake::Answer>().unwrap() {
        fake::Answer::Refused(why) => assert!(why.contains("another build"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// A copy of another build is refused and told why; rank 0 goes on
/// waiting, and its error at the deadline (its copy of rank 1 never came)
/// says which rank was refused and why.
#[test]
fn a_copy_of_another_build_is_refused_on_both_sides() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = common(dir.path());
    let at = free_address();
    vars.push(("MP_CLUSTER_ADDRESS", at.clone()));
    vars.push(("MP_CLUSTER_TIMEOUT", "3".into()));
    vars.extend(Engine::OpenMpi.vars(0, 2));
    let tag = format!("attach-build-{}", std::process::id());
    let rank0 = copy(0, &tag, "map", &vars).spawn().unwrap();
    attach_another_build(&at, 1);
    let said = said_all(vec![rank0]).remove(0);
    assert!(
        said.contains("1 of the 1 other copies did not attach")
            && said.contains("rank 1 on elsewhere runs another build"),
        "{said}"
    );
}

/// A copy of another build is refused, and rank 0 goes on: the real copy
/// of that rank, started after, attaches and the job runs.
#[test]
fn after_a_copy_of_another_build_the_real_one_attaches() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = common(dir.path());
    let at = free_address();
    vars.push(("MP_CLUSTER_ADDRESS", at.clone()));
    let tag = format!("attach-build-then-{}", std::process::id());
    let with = |rank: usize| {
        let mut v = vars.clone();
        v.extend(Engine::OpenMpi.vars(rank, 2));
        copy(rank, &tag, "map", &v).spawn().unwrap()
    };
    let rank0 = with(0);
    attach_another_build(&at, 1);
    let said = said_all(vec![rank0, with(1)]);
    assert!(mapped(2)(&said[0]), "{}", said[0]);
    assert_eq!(said[1], "served");
}
