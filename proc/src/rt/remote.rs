//! The parent's side of a process on another host: run the launcher's
//! command, send the bootstrap on its standard input, wait for the agent's
//! answer, then bridge the process's channels and watch it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, OsContext, Result};
use crate::method::StartMethod;
use crate::mutex::lock;
use crate::rt::dial::WireAddress;
use crate::rt::helper::{self, refuse_if_secure};
use crate::rt::launcher::Launcher;
use crate::rt::link::{self, Down, Up};
use crate::rt::runtime::{Child, RemoteWatch, Watch};
use crate::rt::start::{self, Launch};
use crate::rt::tunnel::Forwarding;
use crate::sys;
use crate::wire::handle::handle_type;

/// The argument that makes a copy of the executable an agent.
pub(crate) const MARKER: &str = "--mp-proc-remote";

/// How long the end of a process's link may lag its launcher's exit before
/// the exit code is taken from the launcher alone.
const LINK_GRACE: Duration = Duration::from_secs(5);

/// How long a signal may wait for the link (another thread writing a
/// frame on a healthy link takes far less) before the link counts as held
/// up and the launcher is killed instead.
const SIGNAL_PATIENCE: Duration = Duration::from_secs(2);

/// Starts `l` on the launcher's host.
pub(crate) fn launch(mut l: Launch<'_>, launcher: &Launcher) -> Result<Child> {
    refuse_if_secure("starting a process on another host", "use fork")?;
    let host = launcher.host();
    let refused = |reason: String| Error::RemoteStart {
        name: l.name.to_owned(),
        host: host.clone(),
        reason,
    };
    // Offsets in the executable, as under spawn: the copy there finds them
    // again (and checks that it is the same build).
    l.method = StartMethod::Spawn;
    start::check_image(&l)?;
    let channels = channels_of(&l, &host)?;
    let mut boot = start::bootstrap_for(&mut l);
    let (ended, stdin, stdout, done) = match launcher.opener() {
        Some(opener) => {
            // A link of the caller's (plain TCP, say): the key does not
            // travel on it; the agent reads its own (see `keyfile`).
            boot.authkey.clear();
            let link = opener
                .open()
                .map_err(|e| refused(format!("cannot open the link: {e}")))?;
            let (done_r, done_w) = sys::fd::pipe().os("pipe")?;
            let (input, output) = (
                link.try_clone().os("duplicate a descriptor")?,
                link.try_clone().os("duplicate a descriptor")?,
            );
            let ended = Ended::Stream { link, done_r };
            (ended, input, output, Some(done_w))
        }
        None => {
            let (ended, stdin, stdout) = run_launcher(launcher, &refused)?;
            (ended, stdin, stdout, None)
        }
    };
    let writer = link::Writer::new(stdin);
    let mut reader = link::Reader::new(stdout);
    // One deadline for the whole exchange: the bootstrap is written from a
    // thread, since a launcher that does not read yet (a job queued, a host
    // that does not answer) would block the write past any deadline.
    let deadline = crate::spin::deadline_after(launcher.timeout());
    let boot_link = writer.clone();
    let build = sys::image::build_identity();
    let forward = launcher.forward_list().to_vec();
    let keepalive = launcher.get_keepalive();
    let sending = std::thread::Builder::new()
        .name("mp-link-boot".into())
        .spawn(move || {
            boot_link.send(&Down::Boot {
                boot: Box::new(boot),
                build,
                forward,
                keepalive,
            })
        });
    let (started, mut sending) = match sending {
        Ok(thread) => (reader.next::<Up>(link::MAX_MESSAGE, deadline), Some(thread)),
        Err(e) => (Err(Error::os("start a link thread", e)), None),
    };
    let mut finish = |ended: &Ended| {
        let code = ended.kill_and_reap();
        if let Some(thread) = sending.take() {
            // The launcher is gone: the write has failed if it was blocked.
            let _ = thread.join();
        }
        code
    };
    let pid = match started {
        Ok(Some(Up::Started { pid })) => pid,
        other => {
            let reason = match other {
                Ok(Some(Up::Refused(why))) => why,
                Ok(Some(_)) => "the agent broke the start's exchange".to_owned(),
                Err(Error::Timeout) => format!(
                    "no answer within {:?} (raise Launcher::start_timeout?)",
                    launcher.timeout()
                ),
                Ok(None) => {
                    let code = finish(&ended);
                    return Err(refused(format!(
                        "`{launcher}` ended with exit code {code} before the process started (its messages are above, on stderr)"
                    )));
                }
                Err(e) => {
                    let code = finish(&ended);
                    return Err(refused(format!(
                        "the link broke before the process started: {e} (`{launcher}` exited with {code}; \
                         a login shell that prints on standard output, as a .bashrc may, corrupts the link)"
                    )));
                }
            };
            finish(&ended);
            return Err(refused(reason));
        }
    };
    if let Some(thread) = sending.take() {
        // The agent answered: it has read the whole bootstrap.
        let _ = thread.join();
    }
    let on_lost = match ended.carrier() {
        Ok(carrier) => carrier,
        Err(e) => {
            ended.kill_and_reap();
            return Err(Error::os("duplicate a descriptor", e));
        }
    };
    let down = launcher.clone();
    let lost = Lost {
        silence: keepalive,
        end: Box::new(move || {
            crate::rt::health::mark_down(
                &down,
                format!("its link was silent for {keepalive:?}, its keep-alive bound"),
            );
            let _ = on_lost.kill();
        }),
    };
    let bridge = match Bridge::start(
        channels,
        reader,
        writer.clone(),
        launcher.forward_list(),
        lost,
        done,
    ) {
        Ok(bridge) => bridge,
        Err(e) => {
            ended.kill_and_reap();
            return Err(e);
        }
    };
    Ok(Child::new(
        l.name.to_owned(),
        pid,
        l.daemon,
        Watch::Remote(Box::new(RemoteProcess {
            host,
            keepalive,
            ended,
            link: writer,
            bridge,
        })),
    ))
}

/// The descriptors of the process's arguments (and its result pipe), each
/// duplicated: they become the channels. A handle that is not a
/// `Connection` cannot cross hosts.
fn channels_of(l: &Launch<'_>, host: &str) -> Result<Vec<OwnedFd>> {
    let connection = handle_type("Connection", 0);
    let mut fds = Vec::new();
    if let Some(result) = l.result {
        fds.push(sys::fd::dup_at_least(result.as_raw_fd(), 3).os("duplicate a descriptor")?);
    }
    for (fd, ty) in l.fds.iter().zip(&l.fd_types) {
        if *ty != connection {
            let kind = if *ty == handle_type("SharedMemory", 0) {
                "shared memory segment"
            } else {
                "handle of this machine (a lock, a queue, a shared value, ...)"
            };
            return Err(Error::NotAcrossHosts {
                kind: kind.to_owned(),
                host: host.to_owned(),
            });
        }
        fds.push(sys::fd::dup_at_least(*fd, 3).os("duplicate a descriptor")?);
    }
    Ok(fds)
}

/// Runs the launcher's command (`<prefix> <this executable> --mp-proc-remote`):
/// the launcher, its standard input and output (the link).
fn run_launcher(
    launcher: &Launcher,
    refused: &dyn Fn(String) -> Error,
) -> Result<(Ended, OwnedFd, OwnedFd)> {
    let exe = std::env::current_exe().os("find this executable")?;
    let Some(line) = launcher.command_line(exe.as_os_str(), &[MARKER]) else {
        return Err(refused("a local launcher starts no agent".into()));
    };
    let mut command = Command::new(&line[0]);
    command
        .args(&line[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for var in helper::ENV_ALL {
        command.env_remove(var);
    }
    let mut spawned = command
        .spawn()
        .map_err(|e| refused(format!("cannot run {:?}: {e}", line[0])))?;
    let launcher_pid = spawned.id();
    let (Some(stdin), Some(stdout)) = (spawned.stdin.take(), spawned.stdout.take()) else {
        return Err(refused(
            "the launcher's standard input and output are missing".into(),
        ));
    };
    drop(spawned); // reaped below by pid, through its pidfd
    let pidfd = start::pidfd_or_kill(launcher_pid)?;
    let ended = Ended::Launcher {
        pid: launcher_pid,
        pidfd,
    };
    Ok((ended, stdin.into(), stdout.into()))
}

/// What carries a process's link, and tells when it has ended.
enum Ended {
    /// The launcher process, our child: its pidfd tells when it has exited.
    Launcher { pid: u32, pidfd: OwnedFd },
    /// A stream the launcher's opener opened: ended by its shutdown;
    /// `done_r` is readable once the bridge has seen the link end.
    Stream { link: OwnedFd, done_r: OwnedFd },
}

impl Ended {
    /// A second handle on what carries the link, to end it from another
    /// thread ([`kill`](Self::kill) only: its sentinel is this one's).
    fn carrier(&self) -> std::io::Result<Ended> {
        Ok(match self {
            Ended::Launcher { pid, pidfd } => Ended::Launcher {
                pid: *pid,
                pidfd: pidfd.try_clone()?,
            },
            Ended::Stream { link, done_r } => Ended::Stream {
                link: link.try_clone()?,
                done_r: done_r.try_clone()?,
            },
        })
    }

    /// Readable once the link's carrier has ended.
    fn sentinel(&self) -> BorrowedFd<'_> {
        match self {
            Ended::Launcher { pidfd, .. } => pidfd.as_fd(),
            Ended::Stream { done_r, .. } => done_r.as_fd(),
        }
    }

    /// Ends the link: kills the launcher, or shuts the stream down.
    fn kill(&self) -> Result<()> {
        match self {
            Ended::Launcher { pidfd, .. } => {
                sys::process::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL)
                    .os("signal the launcher")
            }
            Ended::Stream { link, .. } => {
                sys::fd::shutdown_both(link.as_fd());
                Ok(())
            }
        }
    }

    /// Kills the launcher (if it still runs) and reaps it: its exit code
    /// (255 for a stream, which has none).
    fn kill_and_reap(&self) -> i32 {
        let _ = self.kill();
        self.reap()
    }

    /// Waits for the launcher to end and reaps it (a stream: nothing to
    /// wait for; 255).
    fn reap(&self) -> i32 {
        let Ended::Launcher { pid, pidfd } = self else {
            return 255;
        };
        let _ = sys::fd::readable(pidfd.as_fd(), None);
        loop {
            match sys::process::try_reap(*pid) {
                Ok(Some(code)) => return code,
                Ok(None) => {
                    let _ = sys::fd::readable(pidfd.as_fd(), None);
                }
                Err(_) => return 255,
            }
        }
    }
}

/// What the pumps of one process know of its end.
#[derive(Default)]
struct Outcome {
    /// The exit code the agent reported.
    code: Option<i32>,
    /// The link has ended (the agent exited, or the link broke).
    closed: bool,
    /// The link was silent for longer than its keep-alive bound.
    lost: bool,
}

/// What a bridge does when its link is silent for too long.
struct Lost {
    /// The silence after which the link counts as lost (zero: never).
    silence: Duration,
    /// Ends the link (kills the launcher), which ends the process here.
    end: Box<dyn FnOnce() + Send>,
}

/// The two pumps of a process's link: its channels' bytes out, the
/// agent's messages in.
struct Bridge {
    outcome: Arc<(Mutex<Outcome>, Condvar)>,
    /// Tells the outbound pump to drain and stop.
    stop: Arc<OwnedFd>,
    /// The pumps, joined once the process has ended (each owns
    /// descriptors).
    pumps: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Bridge {
    fn start(
        channels: Vec<OwnedFd>,
        mut reader: link::Reader,
        writer: link::Writer,
        forward: &[WireAddress],
        lost: Lost,
        done: Option<OwnedFd>,
    ) -> Result<Bridge> {
        let pinger = link::Pinger::start(&writer, &Down::Ping, lost.silence)?;
        let mut outbound = Vec::new();
        let mut inbound = Vec::new();
        for (ch, fd) in channels.into_iter().enumerate() {
            let ch = ch as u32;
            let fd = Arc::new(fd);
            let (readable, writable) = sys::fd::access(fd.as_fd()).unwrap_or((true, true));
            if readable {
                outbound.push((ch, fd.clone()));
            }
            if writable {
                inbound.push((ch, fd));
            }
        }
        let inbound = link::Channels::new(inbound);
        let (adder, added) = link::Adder::new()?;
        let forwarding = (!forward.is_empty()).then(|| Forwarding {
            addresses: forward.into(),
            channels: inbound.clone(),
            adder,
            link: writer.clone(),
        });
        let added = forwarding.is_some().then_some(added);
        let (stop_r, stop_w) = sys::fd::pipe().os("pipe")?;
        let stop_w = Arc::new(stop_w);
        let stop_out = stop_w.clone();
        let outcome: Arc<(Mutex<Outcome>, Condvar)> = Arc::default();
        let in_link = writer.clone();
        let out_link = writer;
        let out = std::thread::Builder::new()
            .name("mp-link-out".into())
            .spawn(move || {
                link::pump_out(
                    outbound,
                    stop_r,
                    added,
                    &out_link,
                    |ch, bytes| match bytes {
                        Some(bytes) => link::framed(&Down::Data { ch, bytes }),
                        None => link::framed(&Down::Eof { ch }),
                    },
                );
            })
            .os("start a link thread")?;
        let record = outcome.clone();
        let inward = std::thread::Builder::new()
            .name("mp-link-in".into())
            .spawn(move || {
                let mut code = None;
                let mut silent = false;
                loop {
                    let message = match reader.next_or_silent::<Up>(link::MAX_MESSAGE, lost.silence)
                    {
                        Ok(Some(message)) => message,
                        Err(Error::Timeout) => {
                            // Lost: ended here; what the process sends
                            // from now on is never read.
                            silent = true;
                            (lost.end)();
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    };
                    match message {
                        Up::Ping => {}
                        Up::Data { ch, bytes } => inbound.deliver(ch, bytes),
                        Up::Eof { ch } => inbound.close(ch),
                        Up::Open { ch, address } => match &forwarding {
                            Some(forwarding) => forwarding.open(ch, address),
                            None => {
                                let _ = in_link.send(&Down::OpenFailed {
                                    ch,
                                    reason: "the launcher forwards no address".into(),
                                });
                            }
                        },
                        Up::Stdout(bytes) => {
                            use std::io::Write;
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(&bytes);
                            let _ = out.flush();
                        }
                        Up::Exited(c) => code = Some(c),
                        Up::Started { .. } | Up::Refused(_) => break,
                    }
                }
                // The link has ended: so has the outbound pump, which holds
                // the other clones of the channels' descriptors, so that the
                // parent's ends see end of file now, not at `join`.
                inbound.close_all();
                drop(forwarding);
                drop(pinger);
                let _ = sys::fd::write(stop_out.as_fd(), b"x", false);
                if let Some(done) = done {
                    let _ = sys::fd::write(done.as_fd(), b"x", false);
                }
                let (state, changed) = &*record;
                let mut state = lock(state);
                state.code = code;
                state.closed = true;
                state.lost = silent;
                changed.notify_all();
            })
            .os("start a link thread")?;
        Ok(Bridge {
            outcome,
            stop: stop_w,
            pumps: Mutex::new(vec![out, inward]),
        })
    }

    /// The exit code the agent reported, waiting at most `grace` for the
    /// link to end.
    /// Then the pumps are joined (unless the link is still open: a
    /// launcher that left its output to another process).
    fn code(&self, grace: Duration) -> (Option<i32>, bool) {
        let (state, changed) = &*self.outcome;
        let state = lock(state);
        let (state, _) = changed
            .wait_timeout_while(state, grace, |s| !s.closed)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (code, closed, lost) = (state.code, state.closed, state.lost);
        drop(state);
        let _ = sys::fd::write(self.stop.as_fd(), b"x", false);
        if closed {
            for pump in std::mem::take(&mut *lock(&self.pumps)) {
                let _ = pump.join();
            }
        }
        (code, lost)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = sys::fd::write(self.stop.as_fd(), b"x", false);
    }
}

/// A process on another host, as its parent watches it.
struct RemoteProcess {
    /// For messages.
    host: String,
    /// The silence after which its link counts as lost.
    keepalive: Duration,
    ended: Ended,
    link: link::Writer,
    bridge: Bridge,
}

impl RemoteWatch for RemoteProcess {
    fn sentinel(&self) -> BorrowedFd<'_> {
        self.ended.sentinel()
    }

    fn exit_code(&self) -> Result<i32> {
        let launcher = self.ended.reap();
        Ok(match self.bridge.code(LINK_GRACE) {
            (Some(code), _) => code,
            (None, true) => {
                mp_logging::get_logger().warning(format_args!(
                    "lost the link to a process on {}: nothing came from it for {:?} (its keep-alive bound); \
                     it counts as killed here, and its agent there ends it",
                    self.host, self.keepalive
                ));
                libc::SIGKILL.wrapping_neg()
            }
            (None, false) => {
                mp_logging::get_logger().warning(format_args!(
                    "lost a process on another host before it reported its exit code (its launcher exited with {launcher})"
                ));
                if launcher == 0 { 255 } else { launcher }
            }
        })
    }

    /// The signal goes over the link. A link that does not take it within
    /// [`SIGNAL_PATIENCE`] is held up (a connection the far process does
    /// not read fills it): the launcher is killed, which ends the link, and
    /// with it the process (its agent sends SIGTERM, then SIGKILL).
    fn signal(&self, signal: i32) -> Result<()> {
        match self
            .link
            .send_within(&Down::Signal(signal), SIGNAL_PATIENCE)
        {
            Some(sent) => sent,
            None => {
                mp_logging::get_logger().warning(format_args!(
                    "the link to a process on another host is held up: ending its launcher to end it"
                ));
                self.ended.kill()
            }
        }
    }
}
