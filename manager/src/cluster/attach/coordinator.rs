//! Rank 0: listens for the other copies, waits until all have attached,
//! and opens a link on a copy for each process started there (an
//! [`Order::Start`] on its control connection, answered by a new
//! connection that names the ticket).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mp_proc::Connection;
use mp_proc::connection::{Address, Listener, PendingConnection, wait_fds};
use mp_proc::plumbing::{deadline_after, lock, recv_by};

use super::env::{Env, invalid};
use super::shutdown;
use super::wire::{Answer, Attach, Hello, MAX_FRAME, Order, Report};
use crate::Result;

/// How long the accepting thread waits after a failed accept (out of
/// descriptors: a handshake ending frees one) before it accepts again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(75);

/// The most refusals said in rank 0's error when ranks are missing.
const MAX_REFUSALS_SAID: usize = 4;

/// An attached copy, as the coordinator knows it.
pub(super) struct Copy {
    pub(super) rank: usize,
    pub(super) host: String,
    pub(super) slots: usize,
}

/// The coordinator's side of the attached copies, for as long as the
/// cluster context lives: dropping it says goodbye to every copy.
pub(crate) struct Coordinator {
    shared: Arc<Shared>,
    /// Dropped to stop the accepting thread.
    _stop: UnixStream,
    /// The address file written, and the address in it: removed when the
    /// coordinator ends if it still holds that address (a later job's
    /// copies do not dial this one's).
    published: Option<(std::path::PathBuf, SocketAddr)>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranks: Vec<usize> = lock(&self.shared.copies).keys().copied().collect();
        f.debug_struct("Coordinator")
            .field("copies", &ranks)
            .finish()
    }
}

/// What the threads of the coordinator share.
struct Shared {
    /// The control connection of each attached copy, by rank.
    copies: Mutex<BTreeMap<usize, Connection>>,
    /// The starts waiting for their link, by ticket: the rank asked, and
    /// where the link (or why there is none) goes.
    tickets: Mutex<Tickets>,
    /// Where copies that attach go while the coordinator waits for them.
    attaching: Mutex<Option<mpsc::Sender<(Attach, Connection)>>>,
    /// How long a start waits for its link.
    start_timeout: Duration,
    /// The connections being greeted (each on a thread of its own, up to
    /// its handshake's deadline).
    greeting: AtomicUsize,
    /// The most greeted at once: a connection over it is closed at once
    /// (twice the copies and 16 while they attach, and their slots after:
    /// one link in flight per process started).
    max_greeting: AtomicUsize,
    /// What a copy that attaches again after the cluster formed (it lost
    /// rank 0 for a while: a partition) must match.
    rejoin: Rejoin,
}

/// The checks of a copy that attaches again, and its welcome.
struct Rejoin {
    size: usize,
    build: Vec<u8>,
    keepalive: Duration,
}

/// One connection being greeted, counted in [`Shared::greeting`] while it
/// lives.
struct Greeting(Arc<Shared>);

impl Drop for Greeting {
    fn drop(&mut self) {
        self.0.greeting.fetch_sub(1, Ordering::AcqRel);
    }
}

type Waiter = mpsc::SyncSender<std::result::Result<OwnedFd, String>>;

/// The starts waiting for their link. A ticket is random (a copy with the
/// key cannot guess another's), and is answered only by the copy it was
/// sent to: a report on that copy's control connection, or a link from
/// the same address as that connection's.
#[derive(Default)]
struct Tickets {
    waiting: HashMap<u64, Ticket>,
}

/// A start waiting for its link.
struct Ticket {
    /// The copy asked.
    rank: usize,
    /// The address the copy's control connection comes from.
    from: Option<std::net::IpAddr>,
    waiter: Waiter,
}

/// Who answers a ticket: its copy's control connection (a report), or a
/// new connection from an address (a link).
#[derive(Clone, Copy, Debug)]
enum Answerer {
    Rank(usize),
    Peer(Option<std::net::IpAddr>),
}

/// Whether two handles are the same connection (its descriptor, open in
/// both while they live).
fn same(a: &Connection, b: &Connection) -> bool {
    use std::os::fd::AsRawFd;
    a.as_fd().as_raw_fd() == b.as_fd().as_raw_fd()
}

/// The address a TCP connection comes from.
fn peer_ip(fd: std::os::fd::BorrowedFd<'_>) -> Option<std::net::IpAddr> {
    let fd = fd.try_clone_to_owned().ok()?;
    TcpStream::from(fd).peer_addr().ok().map(|a| a.ip())
}

/// A random ticket that no start waits with yet.
fn new_ticket(tickets: &Tickets) -> std::io::Result<u64> {
    loop {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)
            .map_err(|e| std::io::Error::other(format!("no random ticket: {e}")))?;
        let ticket = u64::from_le_bytes(bytes);
        if !tickets.waiting.contains_key(&ticket) {
            return Ok(ticket);
        }
    }
}

impl Coordinator {
    /// Listens, publishes the address (the file), and waits until the
    /// `size - 1` other copies have attached, by the deadline.
    pub(super) fn start(env: &Env, key: &[u8]) -> Result<(Coordinator, Vec<Copy>)> {
        // `MP_CLUSTER_LISTEN` first: a name in MP_CLUSTER_ADDRESS may not
        // resolve on rank 0's own node yet (a headless service lists a pod
        // once it is ready).
        let bind = match (&env.at, env.listen) {
            (_, Some(listen)) => listen,
            (super::env::Where::Address(a), None) => super::env::resolve(a)?,
            (super::env::Where::File(_), None) => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let listener = Listener::bind(Address::Tcp(bind), Some(key))
            .map_err(|e| invalid(format!("rank 0 cannot listen at {bind}: {e}")))?;
        let Address::Tcp(bound) = listener.address().clone() else {
            return Err(invalid("a TCP listener with another address".into()));
        };
        let (stop, stop_r) = UnixStream::pair().map_err(|e| crate::Error::Os {
            op: "socketpair",
            source: e,
        })?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            copies: Mutex::default(),
            tickets: Mutex::default(),
            attaching: Mutex::new(Some(tx)),
            start_timeout: env.timeout,
            greeting: AtomicUsize::new(0),
            max_greeting: AtomicUsize::new(env.size.saturating_mul(2).saturating_add(16)),
            rejoin: Rejoin {
                size: env.size,
                build: mp_proc::plumbing::build_identity(),
                keepalive: env.keepalive,
            },
        });
        if !env.keepalive.is_zero() {
            let (pinging, stop) = (shared.clone(), stop_r.try_clone());
            let stop = stop.map_err(|e| crate::Error::Os {
                op: "dup",
                source: e,
            })?;
            let every = env.keepalive / 4;
            std::thread::Builder::new()
                .name("mp-attach-ping".into())
                .spawn(move || pinging.ping(every, stop))
                .map_err(|e| crate::Error::Os {
                    op: "start a thread",
                    source: e,
                })?;
        }
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("mp-attach-accept".into())
            .spawn(move || accepting.accept(listener, stop_r))
            .map_err(|e| crate::Error::Os {
                op: "start a thread",
                source: e,
            })?;
        let mut coordinator = Coordinator {
            shared,
            _stop: stop,
            published: None,
        };
        if let super::env::Where::File(path) = &env.at {
            let ip = match bound.ip() {
                ip if ip.is_unspecified() => mp_proc::plumbing::first_up_ipv4()
                    .map_or(std::net::IpAddr::from([127, 0, 0, 1]), Into::into),
                ip => ip,
            };
            let at = SocketAddr::new(ip, bound.port());
            super::env::write_address_file(path, at)?;
            coordinator.published = Some((path.clone(), at));
        }
        let copies = coordinator.gather(env, rx)?;
        Ok((coordinator, copies))
    }

    /// The copies as they attach, until all have or the deadline.
    fn gather(&self, env: &Env, rx: mpsc::Receiver<(Attach, Connection)>) -> Result<Vec<Copy>> {
        let deadline = deadline_after(env.timeout);
        let build = mp_proc::plumbing::build_identity();
        // By rank; a copy whose connection has ended since is waited for
        // again (it has left `shared.copies`).
        let mut copies = BTreeMap::new();
        // The first refusals, said if ranks are missing at the deadline.
        let mut refused: Vec<String> = Vec::new();
        while lock(&self.shared.copies).len() + 1 < env.size {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            let (attach, conn) = match rx.recv_timeout(left) {
                Ok(attached) => attached,
                Err(_) => {
                    let here = lock(&self.shared.copies);
                    let missing: Vec<String> = (1..env.size)
                        .filter(|r| !here.contains_key(r))
                        .map(|r| r.to_string())
                        .collect();
                    let refused = match refused.is_empty() {
                        true => String::new(),
                        false => format!("; refused meanwhile: {}", refused.join("; ")),
                    };
                    return Err(invalid(format!(
                        "rank 0: {} of the {} other copies did not attach within {:?} (ranks {}): \
                         were they started, with the same key file and {}? (MP_CLUSTER_TIMEOUT \
                         gives them longer){refused}",
                        missing.len(),
                        env.size - 1,
                        env.timeout,
                        missing.join(", "),
                        match &env.at {
                            super::env::Where::Address(a) => format!("the address {a}"),
                            super::env::Where::File(p) =>
                                format!("the address file {}", p.display()),
                        }
                    )));
                }
            };
            let rank = usize::try_from(attach.rank).unwrap_or(usize::MAX);
            let refusal = if attach.build != build {
                Some(format!(
                    "rank {rank} on {} runs another build of the program than rank 0: every copy \
                     must run the same executable",
                    attach.host
                ))
            } else if rank == 0 || rank >= env.size {
                Some(format!(
                    "rank {rank} is not one of ranks 1 to {} of this job",
                    env.size - 1
                ))
            } else if lock(&self.shared.copies).contains_key(&rank) {
                Some(format!("rank {rank} has attached already"))
            } else if attach.slots == 0 || attach.slots > super::env::MAX_SLOTS as u64 {
                Some(format!("rank {rank} offers {} slots", attach.slots))
            } else {
                None
            };
            if let Some(why) = refusal {
                // Refused, not fatal: the real copy of that rank may still
                // come (the refused one may be a stray, or another job's).
                let _ = conn.send(&Answer::Refused(why.clone()));
                mp_logging::get_logger().warning(format_args!("{}: {why}", super::env::WHAT));
                if refused.len() < MAX_REFUSALS_SAID {
                    refused.push(why);
                }
                continue;
            }
            let welcome = Answer::Welcome {
                keepalive: env.keepalive,
            };
            if conn.send(&welcome).is_err() {
                // Gone already: it may attach again.
                continue;
            }
            lock(&self.shared.copies).insert(rank, conn.clone());
            self.shared.watch(rank, conn)?;
            let copy = Copy {
                rank,
                host: attach.host,
                slots: attach.slots as usize,
            };
            copies.insert(rank, copy);
        }
        // Late copies are refused from now on; each process started may
        // have its link in flight.
        lock(&self.shared.attaching).take();
        let slots = copies.values().map(|c: &Copy| c.slots).sum::<usize>();
        self.shared.max_greeting.fetch_add(slots, Ordering::AcqRel);
        Ok(copies.into_values().collect())
    }

    /// The opener of a link on copy `rank`, for its launcher.
    pub(super) fn opener(
        &self,
        rank: usize,
    ) -> impl Fn() -> std::io::Result<OwnedFd> + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.open(rank)
    }
}

impl Drop for Coordinator {
    /// The address file is removed if it still holds this coordinator's
    /// address; every copy is told goodbye (its agents end, its
    /// `from_launcher` returns), and its control connection is closed.
    fn drop(&mut self) {
        if let Some((path, at)) = &self.published
            && super::env::read_address_file(path).as_ref() == Ok(at)
        {
            let _ = std::fs::remove_file(path);
        }
        let copies = std::mem::take(&mut *lock(&self.shared.copies));
        for conn in copies.values() {
            let _ = conn.send(&Order::Goodbye);
            shutdown(conn.as_fd());
        }
    }
}

impl Shared {
    /// Reads the reports of copy `rank` until its control connection ends.
    fn watch(self: &Arc<Self>, rank: usize, conn: Connection) -> Result<()> {
        let shared = self.clone();
        std::thread::Builder::new()
            .name(format!("mp-attach-rank{rank}"))
            .spawn(move || {
                while let Ok(Report::StartFailed { ticket, reason }) = conn.recv::<Report>() {
                    shared.answer(ticket, Answerer::Rank(rank), Err(reason));
                }
                // The copy has gone (or broke the protocol): its starts fail.
                // Unless it has attached again since (its entry is another
                // connection).
                let mut copies = lock(&shared.copies);
                if copies.get(&rank).is_some_and(|c| same(c, &conn)) {
                    copies.remove(&rank);
                }
                drop(copies);
                let mut tickets = lock(&shared.tickets);
                let gone: Vec<u64> = tickets
                    .waiting
                    .iter()
                    .filter(|(_, t)| t.rank == rank)
                    .map(|(t, _)| *t)
                    .collect();
                for ticket in gone {
                    if let Some(t) = tickets.waiting.remove(&ticket) {
                        let _ = t
                            .waiter
                            .send(Err(format!("the copy of rank {rank} has gone")));
                    }
                }
            })
            .map(drop)
            .map_err(|e| crate::Error::Os {
                op: "start a thread",
                source: e,
            })
    }

    /// A copy that attaches after the cluster formed: one of its ranks, of
    /// the same build, that lost rank 0 for a while (a partition, rank 0
    /// frozen) and dialed again. Its new control connection replaces the
    /// old one, which is shut (its processes' links have their own
    /// keep-alives).
    fn rejoin(self: &Arc<Self>, attach: Attach, conn: Connection) {
        let rank = usize::try_from(attach.rank).unwrap_or(usize::MAX);
        let refusal = if attach.build != self.rejoin.build {
            Some(format!(
                "rank {rank} runs another build of the program than rank 0"
            ))
        } else if rank == 0 || rank >= self.rejoin.size {
            Some(format!(
                "rank {rank} is not one of ranks 1 to {} of this job",
                self.rejoin.size - 1
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            let _ = conn.send(&Answer::Refused(why));
            return;
        }
        let welcome = Answer::Welcome {
            keepalive: self.rejoin.keepalive,
        };
        if conn.send(&welcome).is_err() {
            return;
        }
        let old = lock(&self.copies).insert(rank, conn.clone());
        if let Some(old) = old {
            shutdown(old.as_fd());
        }
        mp_logging::get_logger().info(format_args!(
            "{}: rank {rank} on {} attached again",
            super::env::WHAT,
            attach.host
        ));
        let _ = self.watch(rank, conn);
    }

    /// Accepts connections until `stop` is readable (its other end
    /// dropped), each greeted on a thread of its own, at most
    /// `max_greeting` at once (a connection over it is closed at once:
    /// silent connections cannot hold a thread and a descriptor each). A
    /// failed accept (out of descriptors) waits [`ACCEPT_BACKOFF`] before the
    /// next.
    fn accept(self: Arc<Shared>, listener: Listener, stop: UnixStream) {
        loop {
            match wait_fds(&[listener.as_fd(), stop.as_fd()], None) {
                Ok(ready) if ready.contains(&1) => return,
                Ok(_) => {}
                Err(_) => return,
            }
            let pending = match listener.accept_pending() {
                Ok(pending) => pending,
                Err(_) => match wait_fds(&[stop.as_fd()], Some(ACCEPT_BACKOFF)) {
                    Ok(ready) if ready.is_empty() => continue,
                    _ => return,
                },
            };
            let max = self.max_greeting.load(Ordering::Acquire);
            if self.greeting.fetch_add(1, Ordering::AcqRel) >= max {
                self.greeting.fetch_sub(1, Ordering::AcqRel);
                drop(pending);
                continue;
            }
            let greeting = Greeting(self.clone());
            let _ = std::thread::Builder::new()
                .name("mp-attach-greet".into())
                .spawn(move || {
                    greeting.0.greet(pending);
                    drop(greeting);
                });
        }
    }

    /// Tells every attached copy, every `every`, that the coordinator is
    /// there, until `stop` is readable (its other end dropped).
    fn ping(self: Arc<Shared>, every: Duration, stop: UnixStream) {
        while let Ok(ready) = wait_fds(&[stop.as_fd()], Some(every)) {
            if !ready.is_empty() {
                return;
            }
            let copies: Vec<Connection> = lock(&self.copies).values().cloned().collect();
            for conn in copies {
                let _ = conn.send(&Order::Ping);
            }
        }
    }

    /// Authenticates a connection and reads its first message: a copy
    /// attaching, or the link of a ticket.
    fn greet(self: &Arc<Self>, pending: PendingConnection) {
        let deadline = deadline_after(mp_proc::connection::HANDSHAKE_TIMEOUT);
        let conn = match pending.authenticate() {
            Ok(conn) => conn,
            Err(e) => {
                mp_logging::get_logger().warning(format_args!(
                    "{}: a connection failed the handshake: {e}",
                    super::env::WHAT
                ));
                return;
            }
        };
        conn.set_max_frame_len(MAX_FRAME);
        // The whole first message by the handshake's deadline: half of one
        // does not hold this thread.
        match recv_by::<Hello>(&conn, deadline) {
            Ok(Hello::Link { ticket }) => {
                // Nothing follows the ticket until the boot is sent: the
                // socket carries the link from here.
                let from = Answerer::Peer(peer_ip(conn.as_fd()));
                let fd = conn.as_fd().try_clone_to_owned().map_err(|e| e.to_string());
                drop(conn);
                self.answer(ticket, from, fd);
            }
            Ok(Hello::Attach(attach)) => {
                let to = lock(&self.attaching).clone();
                match to {
                    Some(to) => {
                        let _ = to.send((attach, conn));
                    }
                    None => self.rejoin(attach, conn),
                }
            }
            Err(_) => {}
        }
    }

    /// Hands the link of `ticket` (or why there is none) to its start, if
    /// it comes `from` the copy the ticket was sent to (else it is
    /// dropped, and the start still waits).
    fn answer(&self, ticket: u64, from: Answerer, link: std::result::Result<OwnedFd, String>) {
        let mut tickets = lock(&self.tickets);
        let Some(waiting) = tickets.waiting.get(&ticket) else {
            return;
        };
        let theirs = match from {
            Answerer::Rank(rank) => rank == waiting.rank,
            Answerer::Peer(ip) => waiting.from.is_none() || ip == waiting.from,
        };
        if !theirs {
            mp_logging::get_logger().warning(format_args!(
                "{}: an answer to a start on rank {} came from elsewhere ({from:?}): ignored",
                super::env::WHAT,
                waiting.rank
            ));
            return;
        }
        if let Some(t) = tickets.waiting.remove(&ticket) {
            let _ = t.waiter.send(link);
        }
    }

    /// A new link on copy `rank`: a ticket in an order, then the
    /// connection that names it.
    fn open(&self, rank: usize) -> std::io::Result<OwnedFd> {
        let control = lock(&self.copies)
            .get(&rank)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("the copy of rank {rank} has gone")))?;
        let (tx, rx) = mpsc::sync_channel(1);
        let from = peer_ip(control.as_fd());
        let ticket = {
            let mut tickets = lock(&self.tickets);
            let ticket = new_ticket(&tickets)?;
            let waiter = Ticket {
                rank,
                from,
                waiter: tx,
            };
            tickets.waiting.insert(ticket, waiter);
            ticket
        };
        if let Err(e) = control.send(&Order::Start { ticket }) {
            lock(&self.tickets).waiting.remove(&ticket);
            return Err(std::io::Error::other(format!(
                "cannot ask the copy of rank {rank}: {e}"
            )));
        }
        match rx.recv_timeout(self.start_timeout) {
            Ok(Ok(link)) => Ok(link),
            Ok(Err(why)) => Err(std::io::Error::other(why)),
            Err(_) => {
                lock(&self.tickets).waiting.remove(&ticket);
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the copy of rank {rank} did not open a link within {:?}",
                        self.start_timeout
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            copies: Mutex::default(),
            tickets: Mutex::default(),
            attaching: Mutex::new(None),
            start_timeout: Duration::from_secs(1),
            greeting: AtomicUsize::new(0),
            max_greeting: AtomicUsize::new(1),
            rejoin: Rejoin {
                size: 2,
                build: Vec::new(),
                keepalive: Duration::ZERO,
            },
        }
    }

    /// A start waiting on rank 1 (whose control connection comes from
    /// 10.0.0.1), and its ticket.
    fn waiting(shared: &Shared) -> (u64, mpsc::Receiver<std::result::Result<OwnedFd, String>>) {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut tickets = lock(&shared.tickets);
        let ticket = new_ticket(&tickets).unwrap();
        let from = Some(std::net::IpAddr::from([10, 0, 0, 1]));
        let t = Ticket {
            rank: 1,
            from,
            waiter: tx,
        };
        tickets.waiting.insert(ticket, t);
        (ticket, rx)
    }

    /// Another copy's report, or a link from another address, does not
    /// answer a ticket; its own copy's does. Tickets are not in sequence.
    #[test]
    fn a_ticket_is_answered_only_by_its_copy() {
        let shared = shared();
        let (ticket, rx) = waiting(&shared);
        shared.answer(ticket, Answerer::Rank(2), Err("stolen".into()));
        let elsewhere = Answerer::Peer(Some(std::net::IpAddr::from([10, 0, 0, 2])));
        shared.answer(ticket, elsewhere, Err("stolen".into()));
        assert!(rx.try_recv().is_err(), "answered from elsewhere");
        shared.answer(ticket, Answerer::Rank(1), Err("its own".into()));
        assert_eq!(rx.try_recv().unwrap().unwrap_err(), "its own");
        let (other, rx) = waiting(&shared);
        let home = Answerer::Peer(Some(std::net::IpAddr::from([10, 0, 0, 1])));
        shared.answer(other, home, Err("its link".into()));
        assert_eq!(rx.try_recv().unwrap().unwrap_err(), "its link");
    }
}
