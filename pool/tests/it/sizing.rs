//! The default number of workers is the number of CPUs a process can keep
//! busy (`mp_proc::available_cpus`): its affinity mask bounded by its cgroup
//! CPU quota, not the machine's CPUs. Checked in a child of every start
//! method, confined after it started (as a container would confine it).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use mp_pool::Pool;
use mp_proc::{Connection, Process, StartMethod, get_context, pipe};
use mp_testkit::guard;

use crate::tasks::square;

mp_testkit::for_each_method!(
    a_cgroup_quota_of_one_cpu_makes_default_pools_of_one,
    an_affinity_of_one_cpu_makes_default_pools_of_one,
);

/// What a child saw: `available_cpus()`, `cpu_count()`, the workers of
/// `Pool::new(None)` and of a pool built with its start method's context.
type Sizes = (usize, usize, usize, usize);

/// The workers of `pool`, which it shows it has by running a map.
fn workers(pool: mp_pool::Result<Pool>) -> usize {
    let pool = pool.unwrap();
    assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
    pool.close();
    pool.join().unwrap();
    pool.processes()
}

/// Waits for the parent's word (by then it has confined this process), pins
/// itself to one CPU if `pin`, then reports the size of default pools.
fn report_sizes((conn, method, pin): (Connection, StartMethod, bool)) {
    let _: bool = conn.recv().unwrap();
    if pin {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        let this = nix::unistd::Pid::from_raw(0);
        let now = sched_getaffinity(this).unwrap();
        let first = (0..CpuSet::count())
            .find(|&i| now.is_set(i).unwrap_or(false))
            .unwrap();
        let mut one = CpuSet::new();
        one.set(first).unwrap();
        sched_setaffinity(this, &one).unwrap();
    }
    let sizes: Sizes = (
        mp_proc::available_cpus(),
        mp_proc::cpu_count(),
        workers(Pool::new(None)),
        workers(Pool::builder().context(get_context(method)).build()),
    );
    conn.send(&sizes).unwrap();
}

/// Why this machine cannot show a smaller default, if it cannot.
fn cannot_shrink() -> Option<&'static str> {
    (mp_proc::available_cpus() < 2).then_some("this process may use only one CPU")
}

/// Starts a child that reports its default pools' sizes once `confine`
/// (given its pid) has run.
fn sizes_when(method: StartMethod, pin: bool, confine: impl FnOnce(u32)) -> Sizes {
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(report_sizes, (there, method, pin)).start_method(method);
    p.start().unwrap();
    confine(p.pid().unwrap());
    here.send(&true).unwrap();
    let sizes = here.recv::<Sizes>().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    sizes
}

fn a_cgroup_quota_of_one_cpu_makes_default_pools_of_one(method: StartMethod) {
    let _g = guard();
    if let Some(why) = cannot_shrink() {
        eprintln!("skipped: {why}");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating a cgroup needs root");
        return;
    }
    let cgroup = match Cgroup::one_cpu() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("skipped: no writable cgroup CPU controller: {why}");
            return;
        }
    };
    let sizes = sizes_when(method, false, |pid| cgroup.add(pid));
    drop(cgroup);
    let (available, cpus, default, with_ctx) = sizes;
    assert!(cpus > 1, "the child's affinity still has {cpus} CPUs");
    assert_eq!(available, 1, "the quota bounds available_cpus");
    assert_eq!((default, with_ctx), (1, 1), "default pools of one worker");
}

fn an_affinity_of_one_cpu_makes_default_pools_of_one(method: StartMethod) {
    let _g = guard();
    if let Some(why) = cannot_shrink() {
        eprintln!("skipped: {why}");
        return;
    }
    let sizes = sizes_when(method, true, |_| {});
    assert_eq!(
        sizes,
        (1, 1, 1, 1),
        "(available, cpu_count, default, with context)"
    );
}

/// A cgroup of the CPU controller made for one test, with a quota of one
/// CPU. Dropping it moves out whatever is still in it and removes it, also
/// when the test fails.
struct Cgroup {
    dir: PathBuf,
    parent: PathBuf,
}

impl Cgroup {
    /// Made under this process's own CPU cgroup (v1's `cpu` hierarchy, or
    /// v2's unified one when its `cpu` controller is enabled for children).
    fn one_cpu() -> Result<Cgroup, String> {
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let path = path.trim_start_matches('/');
            if controllers.split(',').any(|c| c == "cpu") {
                for mount in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
                    let parent = Path::new(mount).join(path);
                    if parent.join("cpu.cfs_quota_us").exists() {
                        let cgroup = Cgroup::make(parent)?;
                        let period = read(&cgroup.dir.join("cpu.cfs_period_us"))?;
                        write(&cgroup.dir.join("cpu.cfs_quota_us"), period.trim())?;
                        return Ok(cgroup);
                    }
                }
            }
            let unified = Path::new("/sys/fs/cgroup");
            if controllers.is_empty() && unified.join("cgroup.controllers").exists() {
                let parent = unified.join(path);
                let enabled = read(&parent.join("cgroup.subtree_control"))?;
                if enabled.split_whitespace().any(|c| c == "cpu") {
                    let cgroup = Cgroup::make(parent)?;
                    write(&cgroup.dir.join("cpu.max"), "100000 100000")?;
                    return Ok(cgroup);
                }
            }
        }
        Err("this process is in no cgroup with the cpu controller".into())
    }

    fn make(parent: PathBuf) -> Result<Cgroup, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("mp-test-{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        Ok(Cgroup { dir, parent })
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    fn add(&self, pid: u32) {
        write(&self.dir.join("cgroup.procs"), &pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The child has ended, but what it started may linger (its fork
        // server ends once it sees its parent gone): move it all out.
        for _ in 0..10 {
            let Ok(procs) = fs::read_to_string(self.dir.join("cgroup.procs")) else {
                break;
            };
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines() {
                // One that ended meanwhile cannot be moved, and need not be.
                let _ = fs::write(self.parent.join("cgroup.procs"), pid);
            }
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!("could not remove the cgroup {}: {e}", self.dir.display());
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
