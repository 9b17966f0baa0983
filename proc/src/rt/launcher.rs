//! [`Launcher`]: how a process is started on a host, by a tool the cluster
//! already runs (ssh, `srun`, `mpirun`, `ip netns exec`, `kubectl exec`).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::rt::dial::WireAddress;

/// How long a launched process has, by default, to start on its host and
/// answer (an `ssh` login included).
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a link may be silent, by default, before it counts as lost.
pub(crate) const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

/// How a process is started on a host: on this machine as any child, or by
/// a command that runs a program somewhere else (`ssh host`, `srun -w node3`,
/// `mpirun --host h2`, `ip netns exec h1`, `kubectl exec -i pod --`).
///
/// A process given a launcher other than [`local`](Launcher::local) (see
/// [`Process::launcher`](crate::Process::launcher)) runs this same
/// executable, at the same path, on its host: the launcher's command runs
/// `<prefix> <this executable> --mp-proc-remote`. The copy there checks
/// that it is the same build, receives its bootstrap (the authkey
/// included) on its standard input, never on a command line or in the
/// environment, runs the target and reports its exit code. The link to it
/// is the launcher's own standard input and output (for ssh, ssh's
/// encrypted channel); its log records and standard error reach this
/// process's standard error, its standard output this process's. The
/// connections it makes to the addresses given to
/// [`forward`](Launcher::forward) travel over that link too.
///
/// ```
/// use mp_proc::Launcher;
/// let here = Launcher::local();
/// assert!(here.is_local());
/// let node = Launcher::command(["srun", "-N1", "-n1", "-w", "node3"]);
/// assert_eq!(node.to_string(), "srun -N1 -n1 -w node3");
/// let far = Launcher::ssh("build@10.0.0.7").ssh_option("-p").ssh_option("2222");
/// assert_eq!(far.host(), "build@10.0.0.7");
/// ```
#[derive(Clone)]
pub struct Launcher {
    kind: Kind,
    start_timeout: Duration,
    keepalive: Duration,
    forward: Vec<WireAddress>,
    /// How many processes hold this launcher or a clone of it.
    uses: Arc<AtomicUsize>,
}

impl PartialEq for Launcher {
    fn eq(&self, other: &Launcher) -> bool {
        self.kind == other.kind
            && self.start_timeout == other.start_timeout
            && self.keepalive == other.keepalive
            && self.forward == other.forward
    }
}

impl Eq for Launcher {}

/// A process's hold on its launcher, counted by [`Launcher::processes`]
/// until it is dropped.
pub(crate) struct Use(Arc<AtomicUsize>);

impl Drop for Use {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Local,
    Ssh {
        host: String,
        options: Vec<OsString>,
    },
    Command {
        prefix: Vec<OsString>,
    },
    Stream {
        host: String,
        opener: Opener,
    },
}

/// What opens the link of a [`Launcher::stream`]: equal only to its own
/// clones.
#[derive(Clone)]
pub(crate) struct Opener(Arc<dyn Fn() -> std::io::Result<OwnedFd> + Send + Sync>);

impl Opener {
    /// A new link: a connected stream whose other end is an agent's
    /// standard input and output.
    pub(crate) fn open(&self) -> std::io::Result<OwnedFd> {
        (self.0)()
    }
}

impl PartialEq for Opener {
    fn eq(&self, other: &Opener) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Opener {}

impl Launcher {
    /// This machine, the process started as any child (by its start method).
    pub fn local() -> Launcher {
        Launcher::with(Kind::Local)
    }

    /// `ssh host` (`user@host` works, and whatever `~/.ssh/config` names):
    /// the process's link is ssh's own standard input and output, so it is
    /// encrypted and authenticated by ssh. ssh runs with `-T` and
    /// `BatchMode=yes` (a password prompt would hang a start), and, unless
    /// given other values by [`ssh_option`](Self::ssh_option), with
    /// `ConnectTimeout` the [`start_timeout`](Self::start_timeout),
    /// `ServerAliveInterval` a quarter of the [`keepalive`](Self::keepalive)
    /// bound and `ServerAliveCountMax=4`, so that the ssh client too ends
    /// when its server falls silent, even after this process is gone.
    pub fn ssh(host: &str) -> Launcher {
        Launcher::with(Kind::Ssh {
            host: host.to_owned(),
            options: Vec::new(),
        })
    }

    /// Any command that runs a program somewhere: the prefix, then this
    /// executable and its arguments (as `std::process::Command` takes
    /// them). An empty prefix runs the program on this machine through the
    /// same path as a remote one.
    pub fn command<I, S>(prefix: I) -> Launcher
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Launcher::with(Kind::Command {
            prefix: prefix.into_iter().map(|s| s.as_ref().to_owned()).collect(),
        })
    }

    /// A host reached by a stream that `opener` opens, once per process:
    /// a connected socket (TCP, a Unix socket pair, ...) whose other end is
    /// the standard input and output of this executable run as an agent
    /// (`<this executable> --mp-proc-remote`) on `host` (a name, for
    /// messages). The bootstrap sent over it carries no authkey: the
    /// agent reads its own from the file named by
    /// [`AUTHKEY_FILE_VAR`](crate::connection::AUTHKEY_FILE_VAR) in its
    /// environment (see [`read_authkey_file`](crate::connection::read_authkey_file)),
    /// which must hold this process's key. The link ends by a shutdown of
    /// the stream (the agent then ends the process); the process has ended
    /// when its link has. Two stream launchers are equal when one is a
    /// clone of the other.
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use std::os::unix::net::UnixStream;
    /// use std::process::{Command, Stdio};
    /// use mp_proc::{Launcher, Process, connection};
    ///
    /// fn check(x: u32) {
    ///     assert_eq!(x, 7);
    /// }
    ///
    /// // The key in a file of ours (mode 0600) that the agent reads.
    /// let dir = tempfile::tempdir()?;
    /// let key = dir.path().join("key");
    /// {
    ///     use std::os::unix::fs::OpenOptionsExt;
    ///     let mut f = std::fs::OpenOptions::new().write(true).create(true).mode(0o600).open(&key)?;
    ///     std::io::Write::write_all(&mut f, b"a key of the whole job")?;
    /// }
    /// mp_proc::set_authkey(&connection::read_authkey_file(&key)?)?;
    /// // Each link: a socket pair, an agent on the other end.
    /// let opener = move || -> std::io::Result<OwnedFd> {
    ///     let (ours, theirs) = UnixStream::pair()?;
    ///     let theirs = OwnedFd::from(theirs);
    ///     let mut agent = Command::new(std::env::current_exe()?)
    ///         .arg("--mp-proc-remote")
    ///         .env(connection::AUTHKEY_FILE_VAR, &key)
    ///         .stdin(Stdio::from(theirs.try_clone()?))
    ///         .stdout(Stdio::from(theirs))
    ///         .spawn()?;
    ///     std::thread::spawn(move || agent.wait());
    ///     Ok(ours.into())
    /// };
    /// let far = Launcher::stream("pair", opener);
    /// assert_eq!(far.host(), "pair");
    /// assert_eq!(far, far.clone());
    /// let mut p = Process::new(check, 7).launcher(far);
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream<F>(host: &str, opener: F) -> Launcher
    where
        F: Fn() -> std::io::Result<OwnedFd> + Send + Sync + 'static,
    {
        Launcher::with(Kind::Stream {
            host: host.to_owned(),
            opener: Opener(Arc::new(opener)),
        })
    }

    fn with(kind: Kind) -> Launcher {
        Launcher {
            kind,
            start_timeout: DEFAULT_START_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE,
            forward: Vec::new(),
            uses: Arc::default(),
        }
    }

    /// One more argument for `ssh`, before the host (`-i key`, `-p 2222`,
    /// `-o Option=value`, `-F config`); nothing for other launchers.
    pub fn ssh_option(mut self, arg: impl AsRef<OsStr>) -> Launcher {
        if let Kind::Ssh { options, .. } = &mut self.kind {
            options.push(arg.as_ref().to_owned());
        }
        self
    }

    /// How long a process has to start on its host and answer (60 s by
    /// default): past it, `start()` fails and the launcher is killed.
    pub fn start_timeout(mut self, timeout: Duration) -> Launcher {
        self.start_timeout = timeout;
        self
    }

    /// How long the link to a process may stay silent before it counts as
    /// lost (10 s by default): each side sends a keep-alive every quarter
    /// of it, so a healthy link is never silent that long, even while its
    /// process computes and sends nothing. A partition (a cable cut, a
    /// host that froze or rebooted) is noticed within `timeout` on both
    /// sides: here the launcher is killed and the process counts as ended
    /// (a pool fails its tasks and replaces it); there the agent ends the
    /// process (SIGTERM, then SIGKILL after 5 s) and exits. Bytes that
    /// arrive later from the lost process are never delivered. Zero turns
    /// keep-alives off: then only an end of the link (the launcher or its
    /// connection closing) is noticed. A bound below 100 ms is taken as
    /// 100 ms (below it, a loaded machine's scheduling alone would look
    /// like a partition).
    ///
    /// A keep-alive is one 5-byte frame each way every `timeout / 4`,
    /// sent only by a thread that otherwise sleeps.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = mp_proc::Launcher::ssh("node1").keepalive(Duration::from_secs(3));
    /// assert_eq!(l.get_keepalive(), Duration::from_secs(3));
    /// ```
    pub fn keepalive(mut self, timeout: Duration) -> Launcher {
        self.keepalive = match timeout.is_zero() {
            true => timeout,
            false => timeout.max(crate::rt::link::MIN_KEEPALIVE),
        };
        self
    }

    /// The silence after which the link counts as lost (see
    /// [`keepalive`](Self::keepalive)); zero: never.
    ///
    /// ```
    /// assert_eq!(mp_proc::Launcher::local().get_keepalive().as_secs(), 10);
    /// ```
    pub fn get_keepalive(&self) -> Duration {
        self.keepalive
    }

    /// Whether its host is known to be down: the link to a process there
    /// was lost (silent past [`keepalive`](Self::keepalive)) or the last
    /// start there failed, and no start has succeeded since. Starting a
    /// process there then fails at once ([`Error::RemoteStart`](crate::Error::RemoteStart),
    /// saying so), without running the launcher, while a thread of this
    /// process tries the host again in the background (after 0.5 s, then
    /// twice as long each time up to 30 s, as long as starts there are
    /// asked for); the first start it makes that succeeds brings the host
    /// back up. Hosts are told apart by the launcher's command and options
    /// (the same host by another ssh port is another host).
    ///
    /// ```
    /// use mp_proc::{Launcher, Process};
    /// // A launcher that cannot run anything: its host is down once a start fails.
    /// let nowhere = Launcher::command(["/nonexistent/launcher"]);
    /// assert!(!nowhere.is_down());
    /// fn nothing(_: ()) {}
    /// let mut p = Process::new(nothing, ()).launcher(nowhere.clone());
    /// assert!(p.start().is_err());
    /// assert!(nowhere.is_down());
    /// ```
    pub fn is_down(&self) -> bool {
        crate::rt::health::is_down(self)
    }

    /// How many [`Process`](crate::Process)es made to start by this
    /// launcher or a clone of it exist now (set up, running or ended, until
    /// they are dropped). A `ClusterContext` fills its hosts' slots by it.
    ///
    /// ```
    /// use mp_proc::{Launcher, Process};
    /// fn nothing(_: ()) {}
    /// let node = Launcher::ssh("node1");
    /// let p = Process::new(nothing, ()).launcher(node.clone());
    /// let q = Process::new(nothing, ()).launcher(node.clone());
    /// assert_eq!(node.processes(), 2);
    /// drop((p, q));
    /// assert_eq!(node.processes(), 0);
    /// ```
    pub fn processes(&self) -> usize {
        self.uses.load(Ordering::Relaxed)
    }

    /// A copy whose processes are not counted with this one's (a prober's:
    /// it takes no slot of the host).
    pub(crate) fn uncounted(&self) -> Launcher {
        Launcher {
            uses: Arc::default(),
            ..self.clone()
        }
    }

    /// A process's hold on this launcher (see [`processes`](Self::processes)).
    pub(crate) fn hold(&self) -> Use {
        self.uses.fetch_add(1, Ordering::Relaxed);
        Use(self.uses.clone())
    }

    /// Whether processes start on this machine as ordinary children.
    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local)
    }

    /// The host, for messages: `localhost`, the ssh destination, or the
    /// command prefix.
    pub fn host(&self) -> String {
        match &self.kind {
            Kind::Local => "localhost".to_owned(),
            Kind::Ssh { host, .. } | Kind::Stream { host, .. } => host.clone(),
            Kind::Command { .. } => self.to_string(),
        }
    }

    /// The opener of a [`stream`](Self::stream) launcher.
    pub(crate) fn opener(&self) -> Option<&Opener> {
        match &self.kind {
            Kind::Stream { opener, .. } => Some(opener),
            _ => None,
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.start_timeout
    }

    /// The forwarded addresses (see `Launcher::forward`, in
    /// `connection::forward`), in order.
    pub(crate) fn forward_list(&self) -> &[WireAddress] {
        &self.forward
    }

    /// One more forwarded address, unless it is there already.
    pub(crate) fn add_forward(&mut self, address: WireAddress) {
        if !self.forward.contains(&address) {
            self.forward.push(address);
        }
    }

    /// The program and arguments that run `exe args...` on the host, or
    /// `None` for a local or a stream launcher.
    pub(crate) fn command_line(&self, exe: &OsStr, args: &[&str]) -> Option<Vec<OsString>> {
        match &self.kind {
            Kind::Local | Kind::Stream { .. } => None,
            Kind::Command { prefix } => {
                let mut line = prefix.clone();
                line.push(exe.to_owned());
                line.extend(args.iter().map(OsString::from));
                Some(line)
            }
            Kind::Ssh { host, options } => {
                let mut line: Vec<OsString> = ["ssh", "-o", "BatchMode=yes"]
                    .iter()
                    .map(OsString::from)
                    .collect();
                line.extend(options.iter().cloned());
                // After the user's options: ssh takes the first value of
                // each option, so theirs win. ssh's own keep-alives end a
                // client whose server fell silent within about the link's
                // bound (its stdin closing cannot reach the server then).
                // A connect that hangs (a host cut off) ends with the start
                // timeout, even in a client whose parent is gone.
                let mut ours = vec![format!(
                    "ConnectTimeout={}",
                    self.start_timeout.as_secs().max(1)
                )];
                if !self.keepalive.is_zero() {
                    let every = (self.keepalive / 4).as_secs().max(1);
                    ours.push(format!("ServerAliveInterval={every}"));
                    ours.push("ServerAliveCountMax=4".to_owned());
                }
                for option in ours {
                    line.extend([OsString::from("-o"), option.into()]);
                }
                // The link is binary, so no terminal (-T) and no escape
                // character, whatever the user's options say.
                line.extend(["-T", "-e", "none", "--"].map(OsString::from));
                line.push(host.into());
                // ssh hands one string to the remote user's shell.
                let mut remote = String::from("exec ");
                remote.push_str(&shell_quote(&exe.to_string_lossy()));
                for a in args {
                    remote.push(' ');
                    remote.push_str(&shell_quote(a));
                }
                line.push(remote.into());
                Some(line)
            }
        }
    }
}

/// `s` as one word of a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Local => f.write_str("local"),
            // `{:#}` tells hosts apart (see `rt::health`): the same host
            // by another port or key, another opener of the same name.
            Kind::Ssh { host, options } if f.alternate() => {
                f.write_str("ssh")?;
                for option in options {
                    write!(f, " {}", option.to_string_lossy())?;
                }
                write!(f, " {host}")
            }
            Kind::Ssh { host, .. } => write!(f, "ssh {host}"),
            Kind::Stream { host, opener } if f.alternate() => {
                write!(f, "stream {host} ({:p})", Arc::as_ptr(&opener.0))
            }
            Kind::Stream { host, .. } => write!(f, "stream {host}"),
            Kind::Command { prefix } => {
                let words: Vec<String> = prefix
                    .iter()
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect();
                f.write_str(&words.join(" "))
            }
        }
    }
}

impl fmt::Debug for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Launcher({self}")?;
        if !self.forward.is_empty() {
            let list: Vec<String> = self.forward.iter().map(ToString::to_string).collect();
            write!(f, ", forward {}", list.join(" "))?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_quotes_the_remote_command_for_a_shell() {
        let l = Launcher::ssh("h1").ssh_option("-p").ssh_option("22");
        let line = l
            .command_line(OsStr::new("/tmp/it's here/app"), &["--mp-proc-remote"])
            .unwrap();
        let words: Vec<_> = line.iter().map(|w| w.to_string_lossy()).collect();
        assert_eq!(
            words,
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-p",
                "22",
                "-o",
                "ConnectTimeout=60",
                "-o",
                "ServerAliveInterval=2",
                "-o",
                "ServerAliveCountMax=4",
                "-T",
                "-e",
                "none",
                "--",
                "h1",
                r"exec '/tmp/it'\''s here/app' '--mp-proc-remote'"
            ]
        );
    }

    /// Messages name the host; the health of hosts tells apart the same
    /// host by other ssh options, and keep-alive bounds below the least
    /// are raised to it.
    #[test]
    fn hosts_are_told_apart_by_their_options_and_the_bound_has_a_floor() {
        let port = |p: &str| Launcher::ssh("h").ssh_option("-p").ssh_option(p);
        assert_eq!(port("2222").to_string(), "ssh h");
        assert_eq!(format!("{:#}", port("2222")), "ssh -p 2222 h");
        assert_ne!(format!("{:#}", port("2222")), format!("{:#}", port("2223")));
        let l = Launcher::local().keepalive(Duration::from_nanos(3));
        assert_eq!(l.get_keepalive(), crate::rt::link::MIN_KEEPALIVE);
        assert!(
            Launcher::local()
                .keepalive(Duration::ZERO)
                .get_keepalive()
                .is_zero()
        );
    }

    #[test]
    fn a_command_prefix_comes_before_the_program() {
        let l = Launcher::command(["ip", "netns", "exec", "h1"]);
        let line = l.command_line(OsStr::new("/bin/app"), &["-x"]).unwrap();
        assert_eq!(line, ["ip", "netns", "exec", "h1", "/bin/app", "-x"]);
        assert!(
            Launcher::local()
                .command_line(OsStr::new("/bin/app"), &[])
                .is_none()
        );
    }
}
