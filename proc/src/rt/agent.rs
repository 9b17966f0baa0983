//! The far side of a process on another host: the copy of the executable
//! that a launcher ran with [`MARKER`](crate::rt::remote::MARKER). It reads
//! its bootstrap on its standard input, checks that it is the parent's
//! build, forks the process (it is single-threaded here, before `main`),
//! bridges its channels and standard output over the link, forwards the
//! parent's signals, reports the exit code and exits. When the link breaks
//! (the parent died, the launcher was killed) the process is terminated:
//! nothing the parent started outlives it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::method::StartMethod;
use crate::rt::child;
use crate::rt::helper::die;
use crate::rt::keyfile;
use crate::rt::link::{self, Down, Up};
use crate::rt::remote::MARKER;
use crate::rt::runtime::Child;
use crate::rt::start::{self, Launch};
use crate::rt::tunnel;
use crate::sys;
use crate::wire::runners;

/// How long the agent waits for its bootstrap.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a process whose parent is gone has between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// The channel number of the process's standard output.
const STDOUT: u32 = u32::MAX;

/// Variables that the tools which run a program with another user's
/// privileges set (sudo, pkexec, doas, run0): a program started by one of
/// them runs its own `main`, never an agent. The agent obeys whoever writes
/// its standard input, and such tools let the caller choose the arguments
/// (`--mp-proc-remote`) but not what the program then does.
const PRIVILEGE_TOOLS: [&str; 6] = [
    "SUDO_UID",
    "SUDO_USER",
    "PKEXEC_UID",
    "DOAS_USER",
    "RUN0_UID",
    "SUDO_COMMAND",
];

/// Whether this copy of the executable was started as an agent: its only
/// argument is the marker, and no tool that grants privileges started it.
pub(crate) fn requested() -> bool {
    if PRIVILEGE_TOOLS
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return false;
    }
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(&cmdline)
        .split(|b| *b == 0)
        .collect();
    args.len() == 2 && args[1] == MARKER.as_bytes()
}

/// Serves one process and exits.
pub(crate) fn serve() -> ! {
    // Before `main`, SIGPIPE still kills: a link or pipe whose reader has
    // gone must be an error here, not the agent's end.
    sys::process::ignore_sigpipe();
    let (Ok(input), Ok(output)) = (sys::fd::dup_at_least(0, 3), sys::fd::dup_at_least(1, 3)) else {
        die("agent: no standard input and output to talk to the parent on");
    };
    // The link is the only reader and writer of the launcher's stdio: what
    // else would print on standard output (a constructor of the program)
    // goes nowhere instead of into the link's frames.
    let null = (sys::fd::dev_null(false), sys::fd::dev_null(true));
    let (Ok(null_in), Ok(null_out)) = null else {
        die("agent: cannot open /dev/null");
    };
    if sys::fd::redirect_stdio(0, null_in.as_fd()).is_err()
        || sys::fd::redirect_stdio(1, null_out.as_fd()).is_err()
    {
        die("agent: cannot move its standard input and output off the link");
    }
    drop((null_in, null_out));
    let hangup = sys::fd::dup_at_least(input.as_raw_fd(), 3);
    let mut reader = link::Reader::new(input);
    let writer = link::Writer::new(output);
    let received = match receive(&mut reader, BOOT_TIMEOUT) {
        Ok(received) => received,
        Err(Unfit::Link(why)) => die(&why),
        Err(Unfit::Build(why)) => refuse(&writer, why),
    };
    let Received {
        mut boot,
        runner,
        target,
        forward,
        keepalive,
    } = received;
    // A link that must not carry the key (a stream launcher's) sends none:
    // this host's copy of the job's key file has it.
    if boot.authkey.is_empty() {
        match keyfile::authkey_from_env() {
            Ok(key) => boot.authkey = key,
            Err(e) => refuse(&writer, format!("the bootstrap carries no key: {e}")),
        }
    }
    // Before the fork: the process inherits its end of the control socket.
    let control = tunnel::prepare(forward).unwrap_or_else(|e| refuse(&writer, e));
    let child = fork(boot, runner, target).unwrap_or_else(|e| refuse(&writer, e));
    let Forked {
        child,
        channels,
        stdout,
    } = child;
    if writer.send(&Up::Started { pid: child.pid }).is_err() {
        end(&child);
        std::process::exit(1);
    }
    let Ok(_pinger) = link::Pinger::start(&writer, &Up::Ping, keepalive) else {
        end(&child);
        die("agent: cannot start its keep-alive");
    };
    let Ok((stop_r, stop_w)) = sys::fd::pipe() else {
        end(&child);
        die("agent: no pipe");
    };
    let mut outbound: Vec<(u32, Arc<OwnedFd>)> = channels.clone();
    outbound.push((STDOUT, Arc::new(stdout)));
    let first_free = channels.len() as u32;
    let channels = link::Channels::new(channels);
    let Ok((adder, added)) = link::Adder::new() else {
        end(&child);
        die("agent: no pipe");
    };
    let out_link = writer.clone();
    let pump = std::thread::Builder::new()
        .name("mp-agent-out".into())
        .spawn(move || {
            link::pump_out(
                outbound,
                stop_r,
                Some(added),
                &out_link,
                |ch, bytes| match (ch, bytes) {
                    (STDOUT, Some(bytes)) => link::framed(&Up::Stdout(bytes)),
                    (STDOUT, None) => None,
                    (ch, Some(bytes)) => link::framed(&Up::Data { ch, bytes }),
                    (ch, None) => link::framed(&Up::Eof { ch }),
                },
            );
        });
    let watched = Arc::new(child);
    // The link's end ends the process, even while the listener below is
    // held up writing into a channel the process does not read.
    let on_hangup = watched.clone();
    let watcher = hangup.ok().and_then(|fd| {
        std::thread::Builder::new()
            .name("mp-agent-hangup".into())
            .spawn(move || {
                if sys::fd::wait_hangup(fd.as_fd()).is_ok() {
                    end(&on_hangup);
                }
            })
            .ok()
    });
    if watcher.is_none() {
        end(&watched);
    }
    // The process's connections to forwarded addresses: channels from
    // `first_free` up (below the standard output's number).
    let requests = match control {
        Some(control) => {
            let (channels, link) = (channels.clone(), writer.clone());
            std::thread::Builder::new()
                .name("mp-agent-open".into())
                .spawn(move || tunnel::serve_requests(control, first_free, STDOUT, channels, link))
                .map(drop)
        }
        None => Ok(()),
    };
    let inbound = watched.clone();
    let listener = std::thread::Builder::new()
        .name("mp-agent-in".into())
        .spawn(move || {
            loop {
                match reader.next_or_silent::<Down>(link::MAX_MESSAGE, keepalive) {
                    Ok(Some(Down::Ping)) => {}
                    Ok(Some(Down::Data { ch, bytes })) => channels.deliver(ch, bytes),
                    Ok(Some(Down::Eof { ch })) => channels.close(ch),
                    Ok(Some(answer @ (Down::Opened { .. } | Down::OpenFailed { .. }))) => {
                        tunnel::answered(answer, &channels, &adder)
                    }
                    Ok(Some(Down::Signal(signal))) => {
                        let _ = inbound.signal(signal);
                    }
                    // Silent past the keep-alive bound: a partition, or a
                    // parent host that froze. Nothing will carry the
                    // process's output or exit code: end it, and the agent.
                    Err(crate::error::Error::Timeout) => {
                        end(&inbound);
                        std::process::exit(1);
                    }
                    // The parent is gone, or broke the link: end the process.
                    Ok(Some(Down::Boot { .. })) | Ok(None) | Err(_) => {
                        end(&inbound);
                        return;
                    }
                }
            }
        });
    if pump.is_err() || listener.is_err() || requests.is_err() {
        end(&watched);
    }
    let code = loop {
        match watched.wait(None) {
            Ok(Some(code)) => break code,
            Ok(None) => continue,
            Err(_) => break 255,
        }
    };
    // The process has ended: what it wrote is in the buffers. Send it, then
    // the exit code.
    let _ = sys::fd::write(stop_w.as_fd(), b"x", false);
    if let Ok(pump) = pump {
        let _ = pump.join();
    }
    let _ = writer.send(&Up::Exited(code));
    std::process::exit(0)
}

/// Tells the parent why the process cannot run here, and exits.
fn refuse(link: &link::Writer, why: String) -> ! {
    let _ = link.send(&Up::Refused(why));
    std::process::exit(1)
}

/// What the bootstrap brings.
pub(crate) struct Received {
    /// The process's bootstrap.
    pub(crate) boot: child::Bootstrap,
    /// Its runner and target, found in this build.
    pub(crate) runner: runners::Runner,
    pub(crate) target: usize,
    /// The launcher's forwarded addresses.
    pub(crate) forward: Vec<crate::rt::dial::WireAddress>,
    /// The silence after which the link counts as lost (zero: never).
    pub(crate) keepalive: Duration,
}

/// Why the agent cannot run the parent's process.
pub(crate) enum Unfit {
    /// No bootstrap came on the link: nothing to answer.
    Link(String),
    /// The bootstrap is not for this build: the parent is told why.
    Build(String),
}

/// Reads the bootstrap, the link's first message, within `timeout`, and
/// finds the functions it names in this build: the bootstrap, the runner
/// and the target.
pub(crate) fn receive(reader: &mut link::Reader, timeout: Duration) -> Result<Received, Unfit> {
    let deadline = crate::spin::deadline_after(timeout);
    let (boot, build, forward, keepalive) = match reader.next::<Down>(link::MAX_BOOT, deadline) {
        Ok(Some(Down::Boot {
            boot,
            build,
            forward,
            keepalive,
        })) => (boot, build, forward, keepalive),
        Ok(Some(_)) => {
            return Err(Unfit::Link(
                "agent: the parent's first message is not a bootstrap".into(),
            ));
        }
        Ok(None) => {
            return Err(Unfit::Link(
                "agent: the parent closed the link before the bootstrap".into(),
            ));
        }
        Err(e) => return Err(Unfit::Link(format!("agent: no bootstrap: {e}"))),
    };
    // The same build (wherever its file is: this host's copy has its own
    // device and inode), then the functions found by offset in it.
    let same = !build.is_empty() && build == sys::image::build_identity();
    let entry = same
        .then(|| runners::resolve(boot.runner, boot.target, sys::image::fingerprint()))
        .flatten();
    match entry {
        Some((runner, target)) => Ok(Received {
            boot: *boot,
            runner,
            target,
            forward,
            keepalive,
        }),
        None => {
            let exe = std::env::current_exe().unwrap_or_default();
            Err(Unfit::Build(format!(
                "{} here is not the parent's build (the same executable must be at the same path on every host)",
                exe.display()
            )))
        }
    }
}

/// Terminates the process: SIGTERM, then SIGKILL if it is still there
/// after a grace period.
fn end(child: &Child) {
    if child.signal(libc::SIGTERM).is_ok() && matches!(child.wait(Some(TERM_GRACE)), Ok(None)) {
        let _ = child.signal(libc::SIGKILL);
    }
}

/// The forked process and the agent's ends of its channels.
struct Forked {
    child: Child,
    channels: Vec<(u32, Arc<OwnedFd>)>,
    stdout: OwnedFd,
}

/// Forks the process, each channel one end of a socket pair (the result
/// pipe first if it has one, then its arguments'), its standard output a
/// pipe the agent reads.
fn fork(boot: child::Bootstrap, runner: runners::Runner, target: usize) -> Result<Forked, String> {
    let count = boot.has_result as usize + boot.nfds as usize;
    if boot.fd_types.len() != boot.nfds as usize {
        return Err("the bootstrap names the types of another number of descriptors".into());
    }
    let mut ours = Vec::with_capacity(count);
    let mut theirs = Vec::with_capacity(count);
    for _ in 0..count {
        let (a, b) = sys::fd::socket_pair(false).map_err(|e| format!("socketpair: {e}"))?;
        ours.push(a);
        theirs.push(b);
    }
    let (stdout_r, stdout_w) = sys::fd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let raw: Vec<RawFd> = theirs.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let (result, args) = if boot.has_result {
        (Some(theirs[0].as_fd()), &raw[1..])
    } else {
        (None, &raw[..])
    };
    let name = boot.name.clone();
    child::install_panic_hook(name.clone());
    let l = Launch {
        name: &name,
        identity: boot.identity.clone(),
        daemon: boot.daemon,
        method: StartMethod::Fork,
        runner,
        target,
        args: Vec::new(),
        fds: args.to_vec(),
        fd_types: boot.fd_types.clone(),
        result,
        stdout: Some(std::os::fd::AsRawFd::as_raw_fd(&stdout_w)),
    };
    child::ENDS_WITH_PARENT.store(true, std::sync::atomic::Ordering::Relaxed);
    let child = start::fork(&l, boot).map_err(|e| format!("fork: {e}"))?;
    drop(theirs);
    drop(stdout_w);
    Ok(Forked {
        child,
        channels: ours
            .into_iter()
            .enumerate()
            .map(|(ch, fd)| (ch as u32, Arc::new(fd)))
            .collect(),
        stdout: stdout_r,
    })
}
