//! The sharer: the descriptors of handles that travel where descriptors
//! cannot go along (a `Queue`'s ring, a one-way pipe, a manager, a pool's
//! tasks) wait here, and the one process that redeems a handle's ticket gets
//! its descriptor by `SCM_RIGHTS` (CPython's `resource_sharer`).
//!
//! The service is one thread per process, started by the first [`issue`]
//! (a process that issues nothing starts nothing). It listens on an abstract
//! Unix socket (`mp-sharer-{pid}-{random hex}`: no file to clean up) and
//! holds a close-on-exec duplicate of each ticket's descriptor under a random
//! 128-bit id, at most [`MAX_TICKETS`] at once, each until it is redeemed or
//! expires (the thread wakes at the next expiry and closes it).
//!
//! The protocol: the client sends the 16-byte id; the sharer answers one
//! status byte, [`OK`] with exactly the descriptor attached, or [`UNKNOWN`]
//! (already redeemed, or never issued), or [`EXPIRED`], and closes the
//! connection. Anything else is [`TicketFailure::NoAnswer`] to the client.
//!
//! Against hostile clients: every socket of the thread is nonblocking and it
//! waits on all of them at once, so a silent or slow client stalls no one;
//! each client has a deadline, at most [`MAX_CLIENTS`] wait at once (the
//! oldest is dropped for a new one); a client of another user (`SO_PEERCRED`)
//! is closed unheard; an unknown id costs nothing but the answer.
//!
//! Fork: the state is stamped with the pid that made it. A forked child
//! (whose copies of the parent's descriptors are closed, and which has no
//! sharer thread) finds another pid there, leaves that state untouched and
//! never dropped, and starts its own.

// Until the handles issue and redeem tickets (the lead removes this).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, OsContext, Result, TicketFailure};
use crate::sys;
use crate::sys::sharer_sock::{Forever, monotonic_ns};

#[cfg(test)]
mod tests;

/// The most tickets a process has outstanding at once (each holds a
/// descriptor until it is redeemed or expires).
pub(crate) const MAX_TICKETS: usize = 512;

/// The most clients the sharer hears at once; a new one drops the oldest.
const MAX_CLIENTS: usize = 64;

/// How long a redeemer waits for the sharer (to connect, then for its
/// answer), and how long the sharer waits for a client's id. The value of
/// `connection::HANDSHAKE_TIMEOUT` (which `rt` does not import).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the sharer waits for a client's id, in nanoseconds:
/// [`ANSWER_TIMEOUT`] (a test shortens it, in a forked child of its own).
static CLIENT_TIMEOUT_NS: AtomicU64 = AtomicU64::new(ANSWER_TIMEOUT.as_nanos() as u64);

/// How long the listener rests when accepting fails for want of memory or
/// descriptors (rather than the thread spinning on it).
const ACCEPT_REST: Duration = Duration::from_millis(100);

/// The lifetime of tickets unless [`set_lifetime`] changed it.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The lifetime of the tickets issued from now on, in nanoseconds.
static LIFETIME_NS: AtomicU64 = AtomicU64::new(DEFAULT_LIFETIME.as_nanos() as u64);

/// The status byte of an answer: the descriptor is attached.
const OK: u8 = 1;
/// The status byte of an answer: no such ticket (redeemed before, or never issued).
const UNKNOWN: u8 = 2;
/// The status byte of an answer: the ticket expired.
const EXPIRED: u8 = 3;

/// The length of a ticket's id.
const ID_LEN: usize = 16;

/// The name prefix of every sharer's socket.
const NAME_PREFIX: &str = "mp-sharer-";
/// How many random bytes end the name (as lowercase hex).
const NAME_RANDOM: usize = 8;

/// What a receiver needs to redeem one descriptor from its sender. It is
/// signed by the handle that carries it (not here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket {
    /// The issuing process.
    pub(crate) pid: u32,
    /// The abstract Unix socket name of its sharer.
    pub(crate) name: String,
    /// The secret that names the descriptor there: good for one redemption.
    pub(crate) id: [u8; 16],
    /// When it expires: `CLOCK_MONOTONIC` in nanoseconds (one clock for
    /// every process of a host).
    pub(crate) expires: u64,
    /// Where the sharer listens: its kernel and network namespace (see
    /// [`here`]). A ticket from elsewhere cannot be redeemed.
    pub(crate) host: [u8; 16],
}

/// What names this process's reach for a ticket: the kernel's boot ID
/// (another host, or the same one rebooted) and the network namespace,
/// which holds the abstract socket names (so `ip netns exec` is another
/// host too), hashed.
pub(crate) fn here() -> [u8; 16] {
    static HERE: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    *HERE.get_or_init(|| {
        use sha2::Digest;
        use std::os::unix::fs::MetadataExt;
        let boot = std::fs::read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
        let digest = sha2::Sha256::new()
            .chain_update(&boot)
            .chain_update(netns.to_le_bytes())
            .finalize();
        let mut host = [0; 16];
        host.copy_from_slice(&digest[..16]);
        host
    })
}

/// Keeps a duplicate of `fd` for one redemption within the lifetime.
pub(crate) fn issue(fd: BorrowedFd<'_>) -> Result<Ticket> {
    issue_for(fd, lifetime())
}

/// Gets the descriptor of `ticket` from its sender.
pub(crate) fn redeem(ticket: &Ticket) -> std::result::Result<OwnedFd, TicketFailure> {
    redeem_within(ticket, ANSWER_TIMEOUT)
}

/// Sets the lifetime of the tickets issued from now on (saturating at
/// `u64::MAX` nanoseconds, some 584 years).
pub(crate) fn set_lifetime(lifetime: Duration) {
    LIFETIME_NS.store(nanos(lifetime), Ordering::Relaxed);
}

/// The lifetime of the tickets issued from now on.
pub(crate) fn lifetime() -> Duration {
    Duration::from_nanos(LIFETIME_NS.load(Ordering::Relaxed))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A descriptor waiting for its redeemer.
#[derive(Debug)]
struct Held {
    fd: OwnedFd,
    expires: u64,
}

/// What a redemption found in the table.
#[derive(Debug)]
enum Found {
    Fd(OwnedFd),
    Unknown,
    Expired,
}

/// The outstanding tickets of a process, by id.
#[derive(Debug, Default)]
struct Table {
    held: HashMap<[u8; ID_LEN], Held>,
}

impl Table {
    /// Adds one, unless [`MAX_TICKETS`] are outstanding (then `held` comes back).
    fn insert(&mut self, id: [u8; ID_LEN], held: Held) -> std::result::Result<(), Held> {
        if self.held.len() >= MAX_TICKETS {
            return Err(held);
        }
        self.held.insert(id, held);
        Ok(())
    }

    /// Closes the descriptors of the tickets expired at `now`, and tells when
    /// the next one expires.
    fn purge(&mut self, now: u64) -> Option<u64> {
        self.held.retain(|_, h| h.expires > now);
        self.held.values().map(|h| h.expires).min()
    }

    /// Takes ticket `id` out for its one redemption at `now`.
    fn take(&mut self, id: &[u8; ID_LEN], now: u64) -> Found {
        match self.held.remove(id) {
            None => Found::Unknown,
            Some(h) if h.expires <= now => Found::Expired,
            Some(h) => Found::Fd(h.fd),
        }
    }
}

/// A process's sharer: what `issue` and the thread share.
#[derive(Debug)]
struct Sharer {
    /// The process that made it (a forked child finds its parent's).
    pid: u32,
    /// The abstract socket name its thread listens on.
    name: String,
    /// False once its thread has ended (or could not start).
    serving: AtomicBool,
    table: Mutex<Table>,
    /// The write end of the thread's wake-up pipe (a new expiry to plan for).
    wake: OwnedFd,
}

/// This process's sharer, once one was started. Never dropped: a forked
/// child must not close the numbers of its parent's descriptors.
static SHARER: Forever<Sharer> = Forever::new();

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // The table stays consistent whatever panicked while holding it.
    table.lock().unwrap_or_else(|e| e.into_inner())
}

fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        let source = e
            .raw_os_error()
            .map_or_else(|| io::Error::other(e), io::Error::from_raw_os_error);
        Error::os("getrandom", source)
    })
}

/// [`issue`] with the lifetime given.
fn issue_for(fd: BorrowedFd<'_>, lifetime: Duration) -> Result<Ticket> {
    let sharer = running()?;
    let copy = fd
        .try_clone_to_owned()
        .os("duplicate a descriptor for its ticket")?;
    let mut id = [0u8; ID_LEN];
    random(&mut id)?;
    let now = monotonic_ns();
    let expires = now.saturating_add(nanos(lifetime));
    {
        let mut table = lock(&sharer.table);
        table.purge(now);
        if table.insert(id, Held { fd: copy, expires }).is_err() {
            return Err(Error::Overflow {
                what: "ticket",
                reason: format!(
                    "{MAX_TICKETS} tickets are outstanding, the most a process may have \
                     (each holds its descriptor until it is redeemed or expires)"
                ),
            });
        }
    }
    // The thread plans its next wake-up again (this one may expire first).
    // When the pipe is full, a wake-up is pending already.
    let _ = sys::fd::write_nonblocking(sharer.wake.as_fd(), b"+", false);
    Ok(Ticket {
        pid: sharer.pid,
        name: sharer.name.clone(),
        id,
        expires,
        host: here(),
    })
}

/// This process's running sharer, started on first use.
fn running() -> Result<&'static Sharer> {
    let pid = std::process::id();
    loop {
        let current = SHARER.get();
        if let Some(s) = current
            && s.pid == pid
            && s.serving.load(Ordering::Acquire)
        {
            return Ok(s);
        }
        let (new, listener, wake) = bind(pid)?;
        // Opened here, before the first ticket is issued, not in the thread:
        // a caller that then uses up the process's descriptors must not
        // leave the thread without its reserve (it could then never refuse
        // a waiting client).
        let reserve = sys::fd::dev_null(false).ok();
        match SHARER.replace(current, Box::new(new)) {
            Err(_lost) => continue, // another thread started one first: use it
            Ok(sharer) => {
                if let Some(old) = current.filter(|old| old.pid == pid) {
                    // Ours, but its thread ended: nobody can redeem its tickets.
                    lock(&old.table).held.clear();
                }
                // Another pid's (a forked child's inheritance) is left as it
                // is: its descriptors are not this process's to close.
                let started = std::thread::Builder::new()
                    .name("mp-sharer".into())
                    .stack_size(128 * 1024)
                    .spawn(move || serve(sharer, listener, wake, reserve));
                if let Err(e) = started {
                    sharer.serving.store(false, Ordering::Release);
                    return Err(Error::os("start the sharer thread", e));
                }
                return Ok(sharer);
            }
        }
    }
}

/// A new sharer for process `pid`, with its listening socket and the read
/// end of its wake-up pipe (for its thread).
fn bind(pid: u32) -> Result<(Sharer, UnixListener, OwnedFd)> {
    let mut random_part = [0u8; NAME_RANDOM];
    random(&mut random_part)?;
    let mut name = format!("{NAME_PREFIX}{pid}-");
    for b in random_part {
        name.push_str(&format!("{b:02x}"));
    }
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).os("name the sharer's socket")?;
    let listener = UnixListener::bind_addr(&addr).os("bind the sharer's socket")?;
    listener
        .set_nonblocking(true)
        .os("make the sharer's socket nonblocking")?;
    let (wake_r, wake_w) = sys::fd::pipe().os("pipe")?;
    let sharer = Sharer {
        pid,
        name,
        serving: AtomicBool::new(true),
        table: Mutex::new(Table::default()),
        wake: wake_w,
    };
    Ok((sharer, listener, wake_r))
}

/// Whether `name` is what a sharer of process `pid` is called.
fn is_sharer_name(pid: u32, name: &str) -> bool {
    name.strip_prefix(NAME_PREFIX)
        .and_then(|rest| rest.strip_prefix(&format!("{pid}-")))
        .is_some_and(|hex| {
            hex.len() == 2 * NAME_RANDOM
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A client of the sharer, until its id has come whole.
#[derive(Debug)]
struct Client {
    stream: UnixStream,
    id: [u8; ID_LEN],
    len: usize,
    deadline: Instant,
}

/// Marks the sharer stopped when its thread ends, however it ends, and
/// closes what it held: nobody can redeem it any more.
struct Stopped(&'static Sharer);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.serving.store(false, Ordering::Release);
        lock(&self.0.table).held.clear();
    }
}

/// The sharer's thread: answers clients and closes expired descriptors,
/// waking only for a client, a new ticket or the next expiry.
///
/// `reserve` is closed to make room when this process is out of
/// descriptors, so that a waiting connection can be taken and refused.
fn serve(
    sharer: &'static Sharer,
    listener: UnixListener,
    wake: OwnedFd,
    mut reserve: Option<OwnedFd>,
) {
    let _stopped = Stopped(sharer);
    let uid = sys::sharer_sock::effective_uid();
    let mut clients: VecDeque<Client> = VecDeque::new();
    // While accepting fails (out of memory, or of descriptors with no
    // reserve), the listener rests instead of waking the thread at once.
    let mut resting_until: Option<Instant> = None;
    loop {
        let now_ns = monotonic_ns();
        let next_expiry = lock(&sharer.table).purge(now_ns);
        let now = Instant::now();
        clients.retain(|c| c.deadline > now);
        resting_until = resting_until.filter(|&t| t > now);
        let wait = next_expiry
            // None past what an Instant can hold: no expiry to wake for.
            .and_then(|t| now.checked_add(Duration::from_nanos(t.saturating_sub(now_ns))))
            .into_iter()
            .chain(clients.iter().map(|c| c.deadline))
            .chain(resting_until)
            .min()
            .map(|t| t.saturating_duration_since(now));
        let ready = {
            let mut fds = vec![wake.as_fd()];
            fds.extend(clients.iter().map(|c| c.stream.as_fd()));
            if resting_until.is_none() {
                fds.push(listener.as_fd());
            }
            match sys::fd::wait_readable(&fds, wait) {
                Ok(ready) => ready,
                Err(_) => return, // out of memory: `Stopped` shuts it down
            }
        };
        if ready[0] {
            let mut buf = [0u8; 64];
            let _ = sys::fd::read(wake.as_fd(), &mut buf);
        }
        let mut at = 1;
        clients.retain_mut(|c| {
            let heard = ready[at];
            at += 1;
            !heard || hear(sharer, c)
        });
        if ready.get(at) == Some(&true) && !accept(&listener, uid, &mut clients, &mut reserve) {
            resting_until = now.checked_add(ACCEPT_REST);
        }
    }
}

/// Takes the waiting connections (a bounded number per round, so that the
/// clients already heard are served too). False if accepting failed for
/// want of memory or descriptors (then the listener rests a moment).
fn accept(
    listener: &UnixListener,
    uid: u32,
    clients: &mut VecDeque<Client>,
    reserve: &mut Option<OwnedFd>,
) -> bool {
    for _ in 0..MAX_CLIENTS {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Out of descriptors: refuse one with the reserve's number.
                if reserve.take().is_none() {
                    return false;
                }
                drop(listener.accept());
                *reserve = sys::fd::dev_null(false).ok();
                continue;
            }
            Err(_) => return false,
        };
        // Another user's process gets nothing, not even an answer.
        if !matches!(sys::sharer_sock::peer(stream.as_fd()), Ok((_, peer)) if peer == uid) {
            continue;
        }
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let timeout = Duration::from_nanos(CLIENT_TIMEOUT_NS.load(Ordering::Relaxed));
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            continue;
        };
        if clients.len() >= MAX_CLIENTS {
            clients.pop_front();
        }
        clients.push_back(Client {
            stream,
            id: [0; ID_LEN],
            len: 0,
            deadline,
        });
    }
    true // more may wait: the next round takes them
}

/// Reads what client `c` sent; once its id is whole, answers it. Returns
/// whether to keep waiting for it.
fn hear(sharer: &Sharer, c: &mut Client) -> bool {
    match sys::fd::read(c.stream.as_fd(), &mut c.id[c.len..]) {
        Ok(0) => false,
        Ok(n) => {
            c.len += n;
            if c.len < ID_LEN {
                return true;
            }
            let found = lock(&sharer.table).take(&c.id, monotonic_ns());
            let sock = c.stream.as_fd();
            // A client that does not take its answer loses it (and the
            // descriptor is closed here all the same).
            let _ = match found {
                Found::Fd(fd) => sys::scm::send_with_fds(sock, &[OK], &[fd.as_raw_fd()]),
                Found::Unknown => sys::fd::write(sock, &[UNKNOWN], true).map(drop),
                Found::Expired => sys::fd::write(sock, &[EXPIRED], true).map(drop),
            };
            false
        }
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

/// [`redeem`], waiting at most `timeout` for the sender.
fn redeem_within(
    ticket: &Ticket,
    timeout: Duration,
) -> std::result::Result<OwnedFd, TicketFailure> {
    if monotonic_ns() >= ticket.expires {
        return Err(TicketFailure::Expired);
    }
    ask(ticket, timeout)
}

/// Asks the sharer of `ticket` for its descriptor (what [`redeem_within`]
/// does once the clock says the ticket is not expired).
fn ask(ticket: &Ticket, timeout: Duration) -> std::result::Result<OwnedFd, TicketFailure> {
    if !is_sharer_name(ticket.pid, &ticket.name) {
        return Err(TicketFailure::SenderGone);
    }
    let deadline = Instant::now().checked_add(timeout);
    let sock =
        sys::sharer_sock::connect_abstract(ticket.name.as_bytes(), timeout).map_err(|e| {
            match e.raw_os_error() {
                // Nobody listens under that name: the sender has exited.
                Some(libc::ECONNREFUSED | libc::ENOENT) => TicketFailure::SenderGone,
                _ => TicketFailure::NoAnswer,
            }
        })?;
    // Whoever listens must be the issuer itself, of this user (a name of a
    // sender that exited may have been taken since).
    match sys::sharer_sock::peer(sock.as_fd()) {
        Ok((pid, uid)) if pid == ticket.pid && uid == sys::sharer_sock::effective_uid() => {}
        _ => return Err(TicketFailure::SenderGone),
    }
    sys::fd::write_all(sock.as_fd(), &ticket.id, true).map_err(|_| TicketFailure::NoAnswer)?;
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if !sys::fd::readable(sock.as_fd(), left).unwrap_or(false) {
        return Err(TicketFailure::NoAnswer);
    }
    // One byte more than an answer has: a longer one is not an answer.
    let mut buf = [0u8; 2];
    let (n, fd) = sys::sharer_sock::recv_with_one_fd(sock.as_fd(), &mut buf)
        .map_err(|_| TicketFailure::NoAnswer)?;
    let answer = (n, buf[0], fd);
    // A well-formed answer: wait for the sharer to close, whatever it said.
    // It has then closed its own copy of the descriptor, and its end of this
    // socket, so that once this returns no copy but the caller's is open (a
    // pipe's reader sees its end of file when the caller closes it, not some
    // time later; this process's descriptors are as many as before).
    let closed = matches!(answer, (1, OK, Some(_)) | (1, UNKNOWN | EXPIRED, None)) && {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut rest = [0u8; 1];
        matches!(sys::fd::readable(sock.as_fd(), left), Ok(true))
            && matches!(sys::fd::read(sock.as_fd(), &mut rest), Ok(0))
    };
    match answer {
        (1, OK, Some(fd)) if closed => Ok(fd),
        (1, OK, Some(_)) => Err(TicketFailure::NoAnswer),
        (1, UNKNOWN, None) if monotonic_ns() >= ticket.expires => Err(TicketFailure::Expired),
        (1, UNKNOWN, None) => Err(TicketFailure::AlreadyRedeemed),
        (1, EXPIRED, None) => Err(TicketFailure::Expired),
        _ => Err(TicketFailure::NoAnswer), // a descriptor that came is closed here
    }
}
