//! A copy of rank above 0: attaches to the coordinator, then runs an agent
//! on a new connection for each process the coordinator starts here, until
//! the coordinator says goodbye or its control connection ends.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mp_proc::Connection;
use mp_proc::connection::{Address, Client};
use mp_proc::plumbing::{deadline_after, lock, recv_by};

use super::env::{Env, RANKS, Where, invalid, read_address_file, resolve};
use super::wire::{Answer, Attach, Hello, MAX_FRAME, Order, Report};
use crate::{Error, Result};

/// The longest pause between two tries to reach the coordinator.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// Attaches, serves, and returns once the coordinator is done.
pub(super) fn serve(env: &Env, key: &[u8]) -> Result<()> {
    let deadline = deadline_after(env.timeout);
    let (mut control, mut at, keepalive) = attach(env, key, deadline)?;
    let agents = Agents::default();
    // The coordinator pings every quarter of its bound (in its welcome:
    // not this copy's environment): a silence of the whole bound is a
    // coordinator gone without a word (a partition, a frozen host).
    let silence = (!keepalive.is_zero()).then_some(keepalive);
    let outcome = loop {
        // A whole order by the bound: half of one is silence too.
        match recv_by::<Order>(&control, silence.and_then(deadline_after)) {
            Err(Error::Timeout) => {
                mp_logging::get_logger().warning(format_args!(
                    "{}: rank {}: no word from the coordinator at {at} for {:?}: dialing it \
                     again for {:?}",
                    super::env::WHAT,
                    env.rank,
                    silence.unwrap_or_default(),
                    env.rejoin
                ));
                // The agents' links fall silent too: they end by their own
                // keep-alives. Rank 0 back within the rejoin window (the
                // partition healed) takes this copy again.
                super::shutdown(control.as_fd());
                match (!env.rejoin.is_zero()).then(|| attach(env, key, deadline_after(env.rejoin)))
                {
                    Some(Ok((again, new_at, _))) => {
                        mp_logging::get_logger().info(format_args!(
                            "{}: rank {}: attached again to {new_at}",
                            super::env::WHAT,
                            env.rank
                        ));
                        (control, at) = (again, new_at);
                        continue;
                    }
                    _ => break Ok(()),
                }
            }
            Ok(Order::Ping) => {}
            Ok(Order::Start { ticket }) => {
                let (reports, agents, key) = (control.clone(), agents.clone(), key.to_vec());
                let started = std::thread::Builder::new()
                    .name("mp-attach-start".into())
                    .spawn(move || {
                        if let Err(e) = agents.start(at, &key, ticket) {
                            let reason = format!("on {}: {e}", host_name());
                            let _ = reports.send(&Report::StartFailed { ticket, reason });
                        }
                    });
                if let Err(e) = started {
                    let reason = format!("cannot start a thread: {e}");
                    let _ = control.send(&Report::StartFailed { ticket, reason });
                }
            }
            // Done, or the coordinator has gone (end of file, a reset).
            Ok(Order::Goodbye) => break Ok(()),
            Err(Error::Decode(e)) => {
                break Err(invalid(format!(
                    "rank {}: the coordinator sent what is not an order: {e}",
                    env.rank
                )));
            }
            Err(_) => break Ok(()),
        }
    };
    agents.end_all();
    outcome
}

/// The control connection, welcomed by the coordinator: the address
/// (re-read from its file each try, which may still name an earlier run's
/// coordinator) dialed until one welcomes this copy or the deadline. A
/// wrong key or a refusal is final for an address given, not for one read
/// from a file (it may be rewritten: a stale file of an earlier job).
fn attach(
    env: &Env,
    key: &[u8],
    deadline: Option<Instant>,
) -> Result<(Connection, SocketAddr, Duration)> {
    let mut pause = Duration::from_millis(5);
    let mut last = String::from("nothing tried");
    loop {
        if let Some(attached) = try_attach(env, key, deadline, &mut last)? {
            return Ok(attached);
        }
        let left = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return Err(invalid(format!(
                "rank {}: no coordinator welcomed this copy within {:?} ({last})",
                env.rank, env.timeout
            )));
        }
        // A backoff between tries (not a synchronisation): the coordinator
        // may start later than this copy.
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// One try of [`attach`]: `Ok(None)` to try again (`last` says why).
fn try_attach(
    env: &Env,
    key: &[u8],
    deadline: Option<Instant>,
    last: &mut String,
) -> Result<Option<(Connection, SocketAddr, Duration)>> {
    let from_file = matches!(env.at, Where::File(_));
    // Final for an address given; tried again for one from a file.
    let refused = |why: String, last: &mut String| {
        if from_file {
            *last = why;
            Ok(None)
        } else {
            Err(invalid(format!("rank {}: {why}", env.rank)))
        }
    };
    let found = match &env.at {
        Where::Address(a) => resolve(a).map_err(|e| e.to_string()),
        Where::File(path) => read_address_file(path),
    };
    let at = match found {
        Ok(at) => at,
        Err(why) => {
            *last = why;
            return Ok(None);
        }
    };
    let control = match Client::connect(&Address::Tcp(at), Some(key)) {
        Ok(control) => control,
        Err(e @ Error::Authentication(_)) => {
            return refused(
                format!(
                    "the coordinator at {at} refused this copy's key ({e}): every copy must \
                     read the same key file"
                ),
                last,
            );
        }
        Err(e) => {
            *last = format!("{at}: {e}");
            return Ok(None);
        }
    };
    control.set_max_frame_len(MAX_FRAME);
    let hello = Hello::Attach(Attach {
        rank: env.rank as u64,
        host: host_name(),
        slots: env.slots as u64,
        build: mp_proc::plumbing::build_identity(),
    });
    if let Err(e) = control.send(&hello) {
        *last = format!("{at}: {e}");
        return Ok(None);
    }
    match recv_by::<Answer>(&control, deadline) {
        Ok(Answer::Welcome { keepalive }) => Ok(Some((control, at, keepalive))),
        Ok(Answer::Refused(why)) => refused(
            format!("the coordinator at {at} refused this copy: {why}"),
            last,
        ),
        Err(Error::Timeout) => {
            *last = format!("the coordinator at {at} did not answer");
            Ok(None)
        }
        Err(e) => {
            *last = format!("{at}: no answer: {e}");
            Ok(None)
        }
    }
}

/// This host's name, for messages.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// The agents this copy runs: each one's link (shut down to end it) and
/// the thread that reaps it.
#[derive(Clone, Default)]
struct Agents(Arc<Mutex<AgentList>>);

#[derive(Default)]
struct AgentList {
    running: Vec<(TcpStream, std::thread::JoinHandle<()>)>,
    /// No agent starts any more.
    ended: bool,
}

impl Agents {
    /// Dials back with `ticket` and runs an agent on the connection.
    fn start(&self, at: SocketAddr, key: &[u8], ticket: u64) -> Result<()> {
        let conn = Client::connect(&Address::Tcp(at), Some(key))?;
        conn.send(&Hello::Link { ticket })?;
        // The handshake is over and nothing more comes until the agent
        // answers the boot: the socket is the agent's link from here.
        let link: OwnedFd = conn.as_fd().try_clone_to_owned().map_err(|e| Error::Os {
            op: "dup",
            source: e,
        })?;
        drop(conn);
        let stream = TcpStream::from(link);
        let dup = |s: &TcpStream| -> Result<Stdio> {
            let fd = OwnedFd::from(s.try_clone().map_err(|e| Error::Os {
                op: "dup",
                source: e,
            })?);
            Ok(Stdio::from(fd))
        };
        let mut list = lock(&self.0);
        if list.ended {
            return Err(invalid("this copy is ending".into()));
        }
        let exe = std::env::current_exe().map_err(|e| Error::Os {
            op: "find this executable",
            source: e,
        })?;
        let mut command = Command::new(exe);
        command
            .arg(mp_proc::plumbing::AGENT_MARKER)
            .stdin(dup(&stream)?)
            .stdout(dup(&stream)?)
            .stderr(Stdio::inherit());
        // The agent's process is no copy of the job.
        for var in RANKS {
            command.env_remove(var);
        }
        let mut agent = command.spawn().map_err(|e| Error::Os {
            op: "run an agent",
            source: e,
        })?;
        // This copy's descriptor of the link must not hold it open once
        // the agent has ended: the coordinator sees its end then.
        let ended = stream.try_clone().map_err(|e| Error::Os {
            op: "dup",
            source: e,
        })?;
        let reaper = std::thread::Builder::new()
            .name("mp-attach-reap".into())
            .spawn(move || {
                let _ = agent.wait();
                let _ = ended.shutdown(Shutdown::Both);
            });
        let reaper = match reaper {
            Ok(reaper) => reaper,
            Err(e) => {
                // Its link ends it; it is reaped when this copy exits.
                let _ = stream.shutdown(Shutdown::Both);
                return Err(Error::Os {
                    op: "start a thread",
                    source: e,
                });
            }
        };
        list.running.retain(|(_, r)| !r.is_finished());
        list.running.push((stream, reaper));
        Ok(())
    }

    /// Ends every agent (their links shut down: each ends its process)
    /// and reaps them.
    fn end_all(&self) {
        let running = {
            let mut list = lock(&self.0);
            list.ended = true;
            std::mem::take(&mut list.running)
        };
        for (link, _) in &running {
            let _ = link.shutdown(Shutdown::Both);
        }
        for (_, reaper) in running {
            let _ = reaper.join();
        }
    }
}
