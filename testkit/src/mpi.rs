//! A real Open MPI `mpirun` (4.1, Debian's openmpi-bin) that places its
//! copies in the network namespaces of [`Hosts`]: for the tests of
//! programs started by MPI (they read `OMPI_COMM_WORLD_RANK` and the env
//! vars passed to them; they make no MPI call).
//!
//! mpirun starts one `orted` per host through its rsh agent, called as
//! `AGENT [options] HOST COMMAND...` where `COMMAND...` is one shell
//! command line split into words (`orted --daemonize -mca ... `). The agent
//! here is a script of the run's own (in a temp directory removed on
//! drop) that maps the host, which is the namespace's address
//! ([`Hosts::addr`]), to the namespace and runs
//! `env -i PATH=.. HOME=.. SHELL=/bin/sh ip netns exec NAMESPACE unshare --uts /bin/sh -c "hostname NAMESPACE && COMMAND..."`;
//! any other host is refused. As after a login over ssh, the orted and the
//! copies get none of mpirun's environment but `PATH`, `HOME` and `SHELL`:
//! a copy sees only those, Open MPI's own (`OMPI_*`, `PMIX_*`) and the vars
//! passed with `-x` ([`Mpirun::env`]). Each host has a host name of its own
//! (the namespace's name, in a UTS namespace of the orted's): with the
//! machine's name everywhere, the orteds and mpirun would share Open MPI's
//! session directory (`/tmp/ompi.HOSTNAME.UID/jf.N`) and an orted that maps
//! the `hwloc.sm` file another one is writing dies of SIGSEGV (mpirun then
//! waits for it forever). Each orted reaches mpirun over its veth link
//! (`oob_tcp_if_include` is the hosts' /30s) and talks to mpirun only
//! (`routed direct`, `plm_rsh_no_tree_spawn`): the root namespace does not
//! forward between namespaces. No copy runs in the root namespace.
//!
//! The hosts are named by address, not by namespace name: mpirun looks a
//! host name up, and a name the resolver does not know costs a DNS query
//! that, where DNS drops a packet, waits 5 s.
//!
//! mpirun may print `plm:rsh: Warning: setpgid(PID,PID) failed in parent
//! with errno=Permission denied(13)` to stderr (about one run in three on a
//! 2-core machine): its own race with the agent's exec, which it ignores.
//! A test does not expect mpirun's stderr to be empty.
//!
//! ```
//! // Skips without root or mpirun (`cargo xtask test` installs openmpi-bin as root).
//! use mp_testkit::{mpi, netns};
//!
//! let Some(hosts) = netns::hosts_or_skip(2) else { return };
//! let Some(mut mpirun) = mpi::mpirun_or_skip(&hosts, 1) else { return };
//! mpirun.env("GREETING", "hi");
//! let mut command = mpirun.command("sh", ["-c", "echo $OMPI_COMM_WORLD_RANK $GREETING"]);
//! let out = mpi::output(&mut command, std::time::Duration::from_secs(60)).unwrap();
//! assert!(out.status.success());
//! let mut lines: Vec<String> =
//!     String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
//! lines.sort();
//! assert_eq!(lines, ["0 hi", "1 hi"]);
//! ```

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::{Hosts, Skip, is_root};

/// The prefix of the temp directories: `mptmpi<pid>x<k>`.
const DIR_PREFIX: &str = "mptmpi";

/// The agent's file name in the temp directory.
const AGENT: &str = "rsh-agent";

/// How long [`output`] lets mpirun stop its job after SIGTERM before
/// SIGKILL, and waits for the end of its output once it exited: only a
/// guard against a hang (it takes about 3 s on a 2-core machine).
pub const GRACE: Duration = Duration::from_secs(30);

static MADE: AtomicU32 = AtomicU32::new(0);

/// `Mpirun::new(hosts, per_host)`, or `None` after printing
/// `skipped: <reason>` to stderr (as [`hosts_or_skip`](crate::netns::hosts_or_skip)).
///
/// ```
/// let Some(hosts) = mp_testkit::netns::hosts_or_skip(3) else { return };
/// let Some(mpirun) = mp_testkit::mpi::mpirun_or_skip(&hosts, 1) else { return };
/// assert_eq!(mpirun.copies(), 3);
/// ```
pub fn mpirun_or_skip(hosts: &Hosts, per_host: usize) -> Option<Mpirun> {
    match Mpirun::new(hosts, per_host) {
        Ok(mpirun) => Some(mpirun),
        Err(skip) => {
            eprintln!("skipped: {skip}");
            None
        }
    }
}

/// One host of the run.
#[derive(Debug, Clone)]
struct Host {
    /// The namespace.
    name: String,
    /// Its address: the host's name for mpirun.
    addr: IpAddr,
    /// Its link's /30, for `oob_tcp_if_include`.
    subnet: String,
}

/// How to run programs under `mpirun` with `per_host` copies in each of the
/// [`Hosts`]' namespaces: [`command`](Mpirun::command) builds the
/// `std::process::Command`, [`output`] runs it with a hang guard. Rank `r`
/// runs on host [`host_of`](Mpirun::host_of)`(r)` (`r / per_host`). On drop
/// the agent's temp directory is removed; drop it before the [`Hosts`].
#[derive(Debug)]
pub struct Mpirun {
    mpirun: PathBuf,
    dir: PathBuf,
    hosts: Vec<Host>,
    per_host: usize,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
}

impl Mpirun {
    /// Writes the agent for `hosts` (every one of them, `per_host` copies
    /// each) into a temp directory of its own.
    ///
    /// `Err(Skip)` when not root, when `mpirun` (or the agent's `unshare` or
    /// `hostname`) is not found, when there are no hosts or `per_host` is 0,
    /// or when the agent cannot be written.
    ///
    /// ```no_run
    /// let hosts = mp_testkit::netns::Hosts::new(2).unwrap();
    /// let mpirun = mp_testkit::mpi::Mpirun::new(&hosts, 2).unwrap();
    /// assert_eq!((mpirun.copies(), mpirun.host_of(3)), (4, 1));
    /// ```
    pub fn new(hosts: &Hosts, per_host: usize) -> Result<Mpirun, Skip> {
        if !is_root() {
            return Err(Skip::new(
                "not root: mpirun's copies in network namespaces need root",
            ));
        }
        if hosts.is_empty() || per_host == 0 {
            return Err(Skip::new(
                "an mpirun run needs at least one host and one copy",
            ));
        }
        let mpirun = program("mpirun").ok_or_else(|| {
            Skip::new(
                "mpirun not found (openmpi-bin; `cargo xtask test` installs it when run as root)",
            )
        })?;
        for (tool, package) in [("unshare", "util-linux"), ("hostname", "hostname")] {
            if program(tool).is_none() {
                return Err(Skip::new(format!(
                    "{tool} not found ({package}): the agent gives each host a name of its own"
                )));
            }
        }
        crate::netns::remove_dead_dirs(DIR_PREFIX);
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}x{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        // mpirun splits plm_rsh_agent at spaces.
        if dir.to_string_lossy().chars().any(char::is_whitespace) {
            return Err(Skip::new(format!(
                "the temp directory {} has a space: mpirun cannot take an agent there",
                dir.display()
            )));
        }
        let hosts: Vec<Host> = (0..hosts.len())
            .map(|i| Host {
                name: hosts.name(i).to_owned(),
                addr: hosts.addr(i),
                subnet: hosts.subnet(i),
            })
            .collect();
        let me = Mpirun {
            mpirun,
            dir,
            hosts,
            per_host,
            env: Vec::new(),
            cwd: None,
        };
        me.write_agent().map_err(Skip::new)?;
        Ok(me)
    }

    /// How many copies a run starts: `per_host` times the hosts.
    pub fn copies(&self) -> usize {
        self.per_host * self.hosts.len()
    }

    /// The host (index in the [`Hosts`]) that rank `rank` runs on.
    pub fn host_of(&self, rank: usize) -> usize {
        rank / self.per_host
    }

    /// Passes `key=value` to every copy (`-x key`, the value in mpirun's
    /// environment: any bytes, commas and semicolons included). A var only
    /// in mpirun's environment (set on the [`command`](Mpirun::command), or
    /// the test's own) reaches no copy.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Mpirun {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The copies' working directory (`--wdir`); by default mpirun's.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Mpirun {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The agent script mpirun calls for each host.
    pub fn agent(&self) -> PathBuf {
        self.dir.join(AGENT)
    }

    /// `mpirun OPTIONS program args...`, stdin null, `SHELL=/bin/sh` (the
    /// syntax of the command line mpirun gives its agent follows `SHELL`;
    /// the agent runs it with `/bin/sh`), the [`env`](Mpirun::env) vars set
    /// and passed. The options:
    ///
    /// ```text
    /// --allow-run-as-root --oversubscribe --bind-to none --map-by slot
    /// -n COPIES --host ADDR0:PER_HOST,ADDR1:PER_HOST,...
    /// --mca plm_rsh_agent AGENT --mca plm_rsh_no_tree_spawn 1
    /// --mca routed direct --mca oob_tcp_if_include SUBNET0,SUBNET1,...
    /// [-x KEY]... [--wdir DIR]
    /// ```
    ///
    /// `--bind-to none`: a copy's own children (a pool's workers) may use
    /// every core.
    ///
    /// ```no_run
    /// let hosts = mp_testkit::netns::Hosts::new(1).unwrap();
    /// let mpirun = mp_testkit::mpi::Mpirun::new(&hosts, 1).unwrap();
    /// let status = mpirun.command("true", std::iter::empty::<&str>()).status().unwrap();
    /// assert!(status.success());
    /// ```
    pub fn command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(&self.mpirun);
        c.args(self.options()).arg(program).args(args);
        c.stdin(Stdio::null()).env("SHELL", "/bin/sh");
        for (key, value) in &self.env {
            c.env(key, value);
        }
        c
    }

    /// The options of [`command`](Mpirun::command), one argv word each.
    pub fn options(&self) -> Vec<OsString> {
        let join =
            |f: &dyn Fn(&Host) -> String| self.hosts.iter().map(f).collect::<Vec<_>>().join(",");
        let mut out: Vec<OsString> = [
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
            "--map-by",
            "slot",
            "-n",
        ]
        .map(OsString::from)
        .into();
        out.push(self.copies().to_string().into());
        out.push("--host".into());
        out.push(join(&|h| format!("{}:{}", h.addr, self.per_host)).into());
        let mca = [
            ("plm_rsh_agent", self.agent().display().to_string()),
            ("plm_rsh_no_tree_spawn", "1".to_owned()),
            ("routed", "direct".to_owned()),
            ("oob_tcp_if_include", join(&|h| h.subnet.clone())),
        ];
        for (name, value) in mca {
            out.extend(["--mca".into(), name.into(), value.into()]);
        }
        for (key, _) in &self.env {
            out.push("-x".into());
            out.push(key.clone());
        }
        if let Some(dir) = &self.cwd {
            out.push("--wdir".into());
            out.push(dir.clone().into_os_string());
        }
        out
    }

    /// Writes the agent: host address to namespace, or a refusal.
    fn write_agent(&self) -> Result<(), String> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("cannot make {}: {e}", self.dir.display()))?;
        let cases: String = self
            .hosts
            .iter()
            .map(|h| format!("  '{}') ns='{}' ;;\n", h.addr, h.name))
            .collect();
        let script = format!(
            "#!/bin/sh\n\
             # mp-testkit: Open MPI's rsh agent for network namespaces,\n\
             # called as: AGENT [options] HOST COMMAND...\n\
             while [ $# -gt 0 ]; do\n\
             \x20 case \"$1\" in -*) shift ;; *) break ;; esac\n\
             done\n\
             case \"$1\" in\n\
             {cases}\
             \x20 *) echo \"mp-testkit rsh agent: $1 is not a host of this run\" >&2; exit 255 ;;\n\
             esac\n\
             shift\n\
             exec env -i PATH=\"$PATH\" HOME=\"$HOME\" SHELL=/bin/sh \\\n\
             \x20 ip netns exec \"$ns\" unshare --uts /bin/sh -c \"hostname $ns && $*\"\n"
        );
        let path = self.agent();
        std::fs::write(&path, script)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

impl Drop for Mpirun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command` (an mpirun [`Mpirun::command`] built) to its end and
/// returns what it printed, as `Command::output` does. `limit` only guards
/// against a hang, never a timing assertion: past it mpirun gets SIGTERM
/// (it then stops its daemons and copies, which takes it a few seconds),
/// past [`GRACE`] more SIGKILL (what it leaves in the namespaces, the
/// [`Hosts`]' drop kills), and the result is a `TimedOut` error that holds
/// what it printed.
///
/// ```no_run
/// let hosts = mp_testkit::netns::Hosts::new(1).unwrap();
/// let mpirun = mp_testkit::mpi::Mpirun::new(&hosts, 1).unwrap();
/// let mut command = mpirun.command("echo", ["hi"]);
/// let out = mp_testkit::mpi::output(&mut command, std::time::Duration::from_secs(60)).unwrap();
/// assert_eq!(out.stdout, b"hi\n");
/// ```
pub fn output(command: &mut Command, limit: Duration) -> io::Result<Output> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let ended = exited(&child);
    let mut signalled = None;
    for (patience, signal) in [
        (limit, nix::sys::signal::Signal::SIGTERM),
        (GRACE, nix::sys::signal::Signal::SIGKILL),
    ] {
        if ended.recv_timeout(patience).is_ok() {
            break;
        }
        signalled = Some(signal);
        // Not reaped yet (the watcher waits with WNOWAIT): the pid is still
        // mpirun's.
        let _ = nix::sys::signal::kill(pid(&child), signal);
    }
    let status = child.wait()?;
    let out = Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    };
    match signalled {
        None => Ok(out),
        Some(signal) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "mpirun did not end within {limit:?}: sent {signal}; it ended with {}; \
                 stdout {:?}; stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
    }
}

fn pid(child: &Child) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// A thread that tells (by its channel's message or end) when `child` has
/// exited, without reaping it.
fn exited(child: &Child) -> mpsc::Receiver<()> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let (tx, rx) = mpsc::channel();
    let id = pid(child);
    std::thread::spawn(move || {
        // Interrupted: again. Exited, or an error (not our child): told.
        while let Err(nix::errno::Errno::EINTR) =
            waitid(Id::Pid(id), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
        let _ = tx.send(());
    });
    rx
}

/// A thread that reads `pipe` to its end.
fn reader(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let _: JoinHandle<()> = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    rx
}

/// What a [`reader`] read; nothing if its pipe is still held open (by a
/// process mpirun left) after [`GRACE`].
fn collect(rx: mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    rx.recv_timeout(GRACE).unwrap_or_default()
}

/// `name`'s path on PATH.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_absolute() && p.is_file())
}
