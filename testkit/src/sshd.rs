//! A real OpenSSH sshd in one of the [`Hosts`](crate::netns::Hosts)'
//! namespaces, with keys made for the test: what `mp_proc::Launcher::ssh`
//! logs into in the tests of mp across hosts.
//!
//! Each [`Sshd`] has a temp directory of its own with an ed25519 host key,
//! a client key, `authorized_keys`, a `known_hosts` that holds the host key
//! (so that the client checks it, `StrictHostKeyChecking=yes`) and its own
//! `sshd_config`: root logs in by key only, no PAM. [`Sshd::options`] are
//! the client's arguments.
//!
//! ```no_run
//! // Needs root and OpenSSH (`cargo xtask test` installs it as root).
//! use mp_testkit::{netns, sshd::Sshd};
//!
//! let Some(hosts) = netns::hosts_or_skip(1) else { return };
//! let sshd = match Sshd::start(&hosts, 0) {
//!     Ok(s) => s,
//!     Err(skip) => return eprintln!("skipped: {skip}"),
//! };
//! let launcher = sshd.launcher();
//! assert_eq!(launcher.host(), format!("root@{}", hosts.addr(0)));
//! ```

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::{Hosts, Skip, is_root};

/// How long sshd may take to listen (a loaded machine): only a guard
/// against a hang.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The port sshd listens on: each namespace has its own, so 22 is free.
const PORT: u16 = 22;

/// How many of sshd's log lines are kept for [`Sshd::log`].
const LOG_LINES: usize = 500;

/// Debian's privilege separation directory, which sshd needs.
const PRIVSEP_DIR: &str = "/run/sshd";

/// The prefix of the temp directories: `mptsshd<pid>x<k>`.
const DIR_PREFIX: &str = "mptsshd";

static STARTED: AtomicU32 = AtomicU32::new(0);

/// A running sshd in a namespace; on drop it (and its sessions) are killed
/// and reaped and its temp directory is removed. Drop it before the
/// [`Hosts`] (declare it after them); if the hosts go first, their drop
/// kills it anyway.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    dir: PathBuf,
    addr: IpAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Sshd {
    /// Starts sshd in host `i`'s namespace on [`Hosts::addr`]`(i)`, port 22,
    /// and returns once it listens (its "Server listening on" line).
    ///
    /// `Err(Skip)` when not root, when sshd, ssh or ssh-keygen is missing,
    /// or when sshd does not start (the reason holds its log).
    ///
    /// ```no_run
    /// let hosts = mp_testkit::netns::Hosts::new(1).unwrap();
    /// let sshd = mp_testkit::sshd::Sshd::start(&hosts, 0).unwrap();
    /// let out = std::process::Command::new("ssh")
    ///     .args(sshd.options())
    ///     .arg(sshd.host())
    ///     .arg("true")
    ///     .status()
    ///     .unwrap();
    /// assert!(out.success());
    /// ```
    pub fn start(hosts: &Hosts, i: usize) -> Result<Sshd, Skip> {
        if !is_root() {
            return Err(Skip::new("not root: sshd in a namespace needs root"));
        }
        let sshd = program("sshd").ok_or_else(|| {
            Skip::new(
                "sshd not found (openssh-server; `cargo xtask test` installs it when run as root)",
            )
        })?;
        for client in ["ssh", "ssh-keygen"] {
            if program(client).is_none() {
                return Err(Skip::new(format!(
                    "{client} not found (openssh-client; `cargo xtask test` installs it when run as root)"
                )));
            }
        }
        crate::netns::remove_dead_dirs(DIR_PREFIX);
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}x{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let addr = hosts.addr(i);
        let mut setup = Setup { dir: Some(dir) };
        let dir = setup.make(addr).map_err(Skip::new)?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", hosts.name(i)])
            .arg(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Skip::new(format!("cannot run ip netns exec {sshd:?}: {e}")))?;
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let kept = Arc::clone(&log);
        // Reads sshd's log to its end (sshd's exit), so sshd never blocks
        // on a full pipe; the lines go to the waiter while it listens.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() == LOG_LINES {
                    kept.pop_front();
                }
                kept.push_back(line.clone());
                drop(kept);
                let _ = tx.send(line);
            }
        });
        setup.dir = None;
        let mut me = Sshd {
            child,
            dir,
            addr,
            log,
            reader: Some(reader),
        };
        let deadline = mp_proc::plumbing::deadline_after(START_TIMEOUT);
        loop {
            let left = deadline.map_or(START_TIMEOUT, |d| {
                d.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Server listening on") => return Ok(me),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(Skip::new(format!(
                        "sshd did not listen within {START_TIMEOUT:?}; its log: {:?}",
                        me.log()
                    )));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = me.child.wait().map(|s| s.to_string());
                    return Err(Skip::new(format!(
                        "sshd exited before listening ({}); its log: {:?}",
                        status.unwrap_or_else(|e| e.to_string()),
                        me.log()
                    )));
                }
            }
        }
    }

    /// The ssh destination: `root@ADDR`.
    pub fn host(&self) -> String {
        format!("root@{}", self.addr)
    }

    /// The client's arguments, one argv word each: no config file, this
    /// test's key only, the host key checked against this test's
    /// `known_hosts`, errors only, the port. For `ssh <options> <host>`,
    /// or each through `mp_proc::Launcher::ssh_option`.
    pub fn options(&self) -> Vec<String> {
        let path = |name: &str| self.dir.join(name).display().to_string();
        let mut out: Vec<String> = vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            path("client_key"),
        ];
        for option in [
            "IdentitiesOnly=yes".to_owned(),
            format!("UserKnownHostsFile={}", path("known_hosts")),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            "LogLevel=ERROR".to_owned(),
        ] {
            out.push("-o".into());
            out.push(option);
        }
        out.push("-p".into());
        out.push(PORT.to_string());
        out
    }

    /// The launcher that starts processes in this sshd's namespace over ssh:
    /// `Launcher::ssh(`[`host`](Sshd::host)`)` with each of
    /// [`options`](Sshd::options) through `ssh_option`.
    ///
    /// ```no_run
    /// let hosts = mp_testkit::netns::Hosts::new(1).unwrap();
    /// let sshd = mp_testkit::sshd::Sshd::start(&hosts, 0).unwrap();
    /// let mut p = mp_proc::Process::new(|()| {}, ()).launcher(sshd.launcher());
    /// p.start().unwrap();
    /// assert_eq!(p.join().unwrap(), 0);
    /// ```
    pub fn launcher(&self) -> mp_proc::Launcher {
        self.options()
            .into_iter()
            .fold(mp_proc::Launcher::ssh(&self.host()), |l, word| {
                l.ssh_option(word)
            })
    }

    /// sshd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// sshd's last log lines (its stderr, `-e`), for a failing test's message.
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Its sessions first (forked sshd and what they run), then sshd.
        for pid in crate::descendants(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The temp directory while it is being filled: removed on an error.
struct Setup {
    dir: Option<PathBuf>,
}

impl Setup {
    /// Makes the keys, `authorized_keys`, `known_hosts` and `sshd_config`.
    fn make(&mut self, addr: IpAddr) -> Result<PathBuf, String> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = self.dir.clone().expect("set");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        keygen(&dir.join("host_key"), "mp-test-host")?;
        keygen(&dir.join("client_key"), "mp-test-client")?;
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| format!("cannot read {}: {e}", dir.join(name).display()))
        };
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
        };
        write("authorized_keys", &read("client_key.pub")?)?;
        // "ssh-ed25519 AAAA... comment": the known host is the type and key.
        let host_key = read("host_key.pub")?;
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        write("known_hosts", &format!("{addr} {}\n", key.join(" ")))?;
        let d = dir.display();
        write(
            "sshd_config",
            &format!(
                "# mp-testkit: a test's sshd in a network namespace\n\
                 ListenAddress {addr}\n\
                 Port {PORT}\n\
                 HostKey {d}/host_key\n\
                 PidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\n\
                 AllowUsers root\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 X11Forwarding no\n\
                 LogLevel INFO\n"
            ),
        )?;
        std::fs::create_dir_all(PRIVSEP_DIR)
            .and_then(|()| {
                std::fs::set_permissions(PRIVSEP_DIR, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("cannot make {PRIVSEP_DIR}: {e}"))?;
        Ok(dir)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `ssh-keygen`: an ed25519 key pair without passphrase at `path`.
fn keygen(path: &Path, comment: &str) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ssh-keygen cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen -f {} exited with {}: {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `name`'s path: on PATH, or in /usr/sbin or /sbin (root's PATH may miss
/// them). sshd needs an absolute path (it re-executes itself).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_absolute() && p.is_file())
}
