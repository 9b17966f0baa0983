//! The sharer, in this process (a redemption goes through the socket even
//! when the issuer redeems its own ticket) and across forked children, each
//! of which has its own sharer. Nothing waits on a sleep: a wait is for a
//! condition (an end of file, a message), with a deadline only so that a
//! bug fails the test instead of hanging it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

use super::*;
use crate::Connection;
use crate::wire::codec;

/// How long a test waits for something that must happen before it calls
/// it a failure (never reached when the code works).
const GUARD: Duration = Duration::from_secs(60);

fn pipe() -> (OwnedFd, OwnedFd) {
    sys::fd::pipe().expect("pipe")
}

fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    let a = nix::sys::stat::fstat(a).expect("fstat");
    let b = nix::sys::stat::fstat(b).expect("fstat");
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// Waits until `fd` (a pipe's read end, or a socket) reaches end of file,
/// discarding what comes before; false if it did not within [`GUARD`].
fn reaches_eof(fd: BorrowedFd<'_>) -> bool {
    let deadline = crate::spin::deadline_after(GUARD);
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.map_or(GUARD, |d| d.saturating_duration_since(Instant::now()));
        if !sys::fd::readable(fd, Some(left)).expect("poll") {
            return false;
        }
        match sys::fd::read(fd, &mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Connects a raw client to the sharer that issued `ticket`.
fn raw_client(ticket: &Ticket) -> UnixStream {
    let addr = SocketAddr::from_abstract_name(ticket.name.as_bytes()).expect("name");
    UnixStream::connect_addr(&addr).expect("connect to the sharer")
}

/// What a raw client gets back: its bytes and how many descriptors came.
fn answer_of(stream: &UnixStream) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut fds = 0;
    loop {
        assert!(
            sys::fd::readable(stream.as_fd(), Some(GUARD)).expect("poll"),
            "no answer"
        );
        let mut buf = [0u8; 64];
        match sys::sharer_sock::recv_with_one_fd(stream.as_fd(), &mut buf) {
            Ok((0, _)) => return (bytes, fds),
            Ok((n, fd)) => {
                bytes.extend_from_slice(&buf[..n]);
                fds += usize::from(fd.is_some());
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (bytes, fds),
            Err(e) => panic!("recv: {e}"),
        }
    }
}

// ---- in this process -------------------------------------------------

#[test]
fn a_ticket_gives_the_same_file_once() {
    let (r, w) = pipe();
    let ticket = issue(w.as_fd()).expect("issue");
    assert_eq!(ticket.pid, std::process::id());
    assert!(is_sharer_name(ticket.pid, &ticket.name), "{}", ticket.name);
    let got = redeem(&ticket).expect("redeem");
    assert!(same_file(got.as_fd(), w.as_fd()));
    assert_ne!(got.as_raw_fd(), w.as_raw_fd(), "a descriptor of its own");
    sys::fd::write_all(got.as_fd(), b"through the ticket", false).expect("write");
    let mut buf = [0u8; 18];
    assert_eq!(sys::fd::read(r.as_fd(), &mut buf).expect("read"), 18);
    assert_eq!(&buf, b"through the ticket");
    assert_eq!(redeem(&ticket).err(), Some(TicketFailure::AlreadyRedeemed));
    // The sharer kept no copy: with ours closed, the pipe ends.
    drop((w, got));
    assert!(reaches_eof(r.as_fd()));
}

#[test]
fn an_expired_ticket_is_refused_and_the_sharer_closes_its_copy_at_expiry() {
    let (r, w) = pipe();
    let ticket = issue_for(w.as_fd(), Duration::from_millis(20)).expect("issue");
    drop(w);
    // Nobody redeems it: the sharer's thread wakes at the expiry by itself
    // and closes its copy, the last write end, so the read end ends.
    assert!(
        reaches_eof(r.as_fd()),
        "the sharer still holds the write end"
    );
    assert!(monotonic_ns() >= ticket.expires);
    assert_eq!(redeem(&ticket).err(), Some(TicketFailure::Expired));
    // The sharer answers so too, for a client that does not check the clock.
    assert_eq!(ask(&ticket, GUARD).err(), Some(TicketFailure::Expired));
}

#[test]
fn the_sharer_itself_refuses_an_expired_ticket() {
    let (_r, w) = pipe();
    let ticket = issue_for(w.as_fd(), Duration::from_millis(1)).expect("issue");
    while monotonic_ns() < ticket.expires {
        std::hint::spin_loop();
    }
    // Whether the thread closed it already (UNKNOWN, past its expiry) or the
    // client comes first (EXPIRED): expired.
    assert_eq!(ask(&ticket, GUARD).err(), Some(TicketFailure::Expired));
}

#[test]
fn a_name_nobody_listens_on_is_sender_gone() {
    let (_r, w) = pipe();
    let mut ticket = issue(w.as_fd()).expect("issue");
    ticket.name = format!(
        "{NAME_PREFIX}{}-{}",
        ticket.pid,
        "0".repeat(2 * NAME_RANDOM)
    );
    assert_eq!(redeem(&ticket).err(), Some(TicketFailure::SenderGone));
    // Not a sharer's name (or another pid's): no connection at all.
    for name in [
        "",
        "mp-sharer-1-00",
        "@x",
        &format!("{NAME_PREFIX}1-{}", "a".repeat(16)),
    ] {
        ticket.name = name.to_owned();
        assert_eq!(
            redeem(&ticket).err(),
            Some(TicketFailure::SenderGone),
            "{name:?}"
        );
    }
}

#[test]
fn a_silent_or_slow_client_does_not_stall_a_good_one() {
    let (_r, w) = pipe();
    let ticket = issue(w.as_fd()).expect("issue");
    let silent = raw_client(&ticket);
    let mut slow = raw_client(&ticket);
    slow.write_all(&ticket.id[..5]).expect("write");
    let got = redeem(&ticket).expect("redeem while others wait");
    assert!(same_file(got.as_fd(), w.as_fd()));
    // The slow one, finishing with the same (now redeemed) id, gets
    // "unknown" and nothing else.
    slow.write_all(&ticket.id[5..]).expect("write");
    assert_eq!(answer_of(&slow), (vec![UNKNOWN], 0));
    drop(silent);
}

#[test]
fn garbage_gets_nothing_and_the_sharer_still_serves() {
    let (_r, w) = pipe();
    let ticket = issue(w.as_fd()).expect("issue");
    let mut wrong = ticket.id;
    wrong[0] ^= 1;
    // A wrong id: "unknown", no descriptor, and the ticket stays good.
    let mut c = raw_client(&ticket);
    c.write_all(&wrong).expect("write");
    assert_eq!(answer_of(&c), (vec![UNKNOWN], 0));
    // A long run of bytes: answered for its first 16, the rest ignored.
    let mut c = raw_client(&ticket);
    c.write_all(&[0xff; 300]).expect("write");
    assert_eq!(answer_of(&c), (vec![UNKNOWN], 0));
    // A client that sends descriptors along: the sharer keeps none of them.
    let (probe_r, probe_w) = pipe();
    let c = raw_client(&ticket);
    sys::scm::send_with_fds(c.as_fd(), &[7; 16], &[probe_w.as_raw_fd()]).expect("send");
    assert_eq!(answer_of(&c), (vec![UNKNOWN], 0));
    drop((probe_w, c));
    assert!(
        reaches_eof(probe_r.as_fd()),
        "the sharer kept a client's descriptor"
    );
    // A client that hangs up halfway.
    let mut c = raw_client(&ticket);
    c.write_all(&ticket.id[..3]).expect("write");
    drop(c);
    let got = redeem(&ticket).expect("the sharer still serves");
    assert!(same_file(got.as_fd(), w.as_fd()));
}

/// A fake sharer of this process: a listener under a good name for our pid,
/// and a ticket for it.
fn fake_sharer() -> (UnixListener, Ticket) {
    let mut hex = [0u8; NAME_RANDOM];
    random(&mut hex).expect("random");
    let pid = std::process::id();
    let name: String = format!("{NAME_PREFIX}{pid}-")
        + &hex.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    let listener = UnixListener::bind_addr(&addr).expect("bind");
    let ticket = Ticket {
        pid,
        name,
        id: [9; ID_LEN],
        expires: monotonic_ns() + 600_000_000_000,
        host: here(),
    };
    (listener, ticket)
}

/// A listening socket under abstract `name` whose backlog holds one.
fn listen_with_backlog_1(name: &str) -> OwnedFd {
    use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    let sock = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let addr = UnixAddr::new_abstract(name.as_bytes()).expect("name");
    nix::sys::socket::bind(sock.as_raw_fd(), &addr).expect("bind");
    nix::sys::socket::listen(&sock, Backlog::new(1).expect("backlog")).expect("listen");
    sock
}

#[test]
fn a_sharer_that_does_not_answer_is_no_answer_within_the_deadline() {
    let (listener, ticket) = fake_sharer();
    // Never accepted: the connection waits in the backlog, unanswered.
    assert_eq!(
        redeem_within(&ticket, Duration::from_millis(100)).err(),
        Some(TicketFailure::NoAnswer)
    );
    drop(listener);
    // A backlog so full that the connect itself must wait: it waits no
    // longer than the deadline either.
    let listener = listen_with_backlog_1(&ticket.name);
    let mut queued = Vec::new();
    let full = loop {
        match sys::sharer_sock::connect_abstract(ticket.name.as_bytes(), Duration::ZERO) {
            Ok(c) => queued.push(c),
            Err(e) => break e,
        }
        assert!(queued.len() < 100, "the backlog never filled");
    };
    assert_eq!(full.kind(), io::ErrorKind::WouldBlock, "{full}");
    assert_eq!(
        redeem_within(&ticket, Duration::from_millis(100)).err(),
        Some(TicketFailure::NoAnswer)
    );
    drop((queued, listener));
    // Accepted and read, never answered.
    let (listener, ticket) = fake_sharer();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut id = [0u8; ID_LEN];
        s.read_exact(&mut id).expect("read id");
        assert_eq!(id, [9; ID_LEN]);
        let _ = s.read(&mut [0u8; 1]); // until the client gives up
    });
    assert_eq!(
        redeem_within(&ticket, Duration::from_millis(100)).err(),
        Some(TicketFailure::NoAnswer)
    );
    t.join().expect("fake sharer");
}

#[test]
fn a_bad_answer_is_no_answer_and_whatever_came_is_closed() {
    // (status bytes, descriptors attached)
    let answers: [(&[u8], usize); 6] = [
        (&[OK], 0),
        (&[OK], 2),
        (&[OK, OK], 1),
        (&[UNKNOWN], 1),
        (&[42], 1),
        (&[], 0),
    ];
    for (bytes, fds) in answers {
        let (listener, ticket) = fake_sharer();
        let (probe_r, probe_w) = pipe();
        let mut attached: Vec<OwnedFd> = Vec::new();
        for _ in 0..fds {
            attached.push(probe_w.try_clone().expect("dup"));
        }
        drop(probe_w);
        let answer = bytes.to_vec();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut id = [0u8; ID_LEN];
            s.read_exact(&mut id).expect("read id");
            let raws: Vec<RawFd> = attached.iter().map(|f| f.as_raw_fd()).collect();
            if !answer.is_empty() {
                sys::scm::send_with_fds(s.as_fd(), &answer, &raws).expect("answer");
            }
        });
        assert_eq!(
            redeem_within(&ticket, GUARD).err(),
            Some(TicketFailure::NoAnswer),
            "answer {bytes:?} with {fds} fds"
        );
        t.join().expect("fake sharer");
        assert!(
            reaches_eof(probe_r.as_fd()),
            "the client kept a descriptor of a bad answer"
        );
    }
}

#[test]
fn lifetime_is_the_default_until_set_and_applies_to_tickets_issued_after() {
    // The only test that changes the process-wide lifetime; the values it
    // sets are long enough for any other test that issues meanwhile.
    assert_eq!(DEFAULT_LIFETIME, Duration::from_secs(300));
    let before = lifetime();
    set_lifetime(Duration::from_secs(1234));
    assert_eq!(lifetime(), Duration::from_secs(1234));
    let (_r, w) = pipe();
    let start = monotonic_ns();
    let ticket = issue(w.as_fd()).expect("issue");
    let end = monotonic_ns();
    let nanos = 1234 * 1_000_000_000;
    assert!(ticket.expires >= start + nanos && ticket.expires <= end + nanos);
    set_lifetime(Duration::MAX);
    assert_eq!(lifetime(), Duration::from_nanos(u64::MAX));
    let ticket = issue(w.as_fd()).expect("issue");
    assert_eq!(ticket.expires, u64::MAX);
    assert!(redeem(&ticket).is_ok());
    set_lifetime(before);
    assert_eq!(lifetime(), before);
}

#[test]
fn the_table_is_bounded_and_expires_and_takes_once() {
    let (_r, w) = pipe();
    let held = |expires| Held {
        fd: w.try_clone().expect("dup"),
        expires,
    };
    let mut table = Table::default();
    for i in 0..MAX_TICKETS {
        let id = (i as u128).to_le_bytes();
        assert!(table.insert(id, held(100 + i as u64)).is_ok());
    }
    assert!(
        table.insert([0xee; ID_LEN], held(1)).is_err(),
        "one too many"
    );
    assert_eq!(table.purge(99), Some(100));
    assert_eq!(table.purge(109), Some(110));
    assert_eq!(table.held.len(), MAX_TICKETS - 10);
    assert!(table.insert([0xee; ID_LEN], held(1_000)).is_ok());
    assert!(matches!(table.take(&[0xee; ID_LEN], 999), Found::Fd(_)));
    assert!(matches!(table.take(&[0xee; ID_LEN], 999), Found::Unknown));
    let id = 200u128.to_le_bytes();
    assert!(matches!(table.take(&id, 300), Found::Expired));
    assert!(matches!(table.take(&id, 0), Found::Unknown));
}

#[test]
fn sharer_names_are_strict() {
    let pid = 4321;
    assert!(is_sharer_name(pid, "mp-sharer-4321-0123456789abcdef"));
    for bad in [
        "mp-sharer-4321-0123456789ABCDEF",
        "mp-sharer-4321-0123456789abcde",
        "mp-sharer-4321-0123456789abcdef0",
        "mp-sharer-43210-123456789abcdef",
        "mp-sharer-1234-0123456789abcdef",
        "mp-sharer-4321-0123456789abcdeg",
        "xp-sharer-4321-0123456789abcdef",
    ] {
        assert!(!is_sharer_name(pid, bad), "{bad}");
    }
}

// ---- across processes ------------------------------------------------

/// A forked child and the pipes to talk to it (CPython's framing, by
/// `Connection`).
struct Forked {
    pid: u32,
    from_child: Connection,
    to_child: Connection,
}

/// The child's ends of the pipes.
struct Link {
    to_parent: Connection,
    from_parent: Connection,
}

fn send_frame(conn: &Connection, bytes: &[u8]) {
    conn.send_bytes(bytes).expect("write a frame");
}

/// The next frame, within [`GUARD`] (a bug is a failure, not a hang).
fn recv_frame(conn: &Connection) -> Vec<u8> {
    assert!(conn.poll(Some(GUARD)).expect("poll"), "no frame");
    conn.recv_bytes().expect("read a frame")
}

/// Runs `f` in a forked child that has only the pipes to this process. Its
/// result (or panic) comes back as the last frame; see [`Forked::finish`].
#[allow(unsafe_code)] // a call of sys's unsafe fork, with its SAFETY
fn fork_child(f: impl FnOnce(&Link) -> std::result::Result<(), String>) -> Forked {
    let (from_child, child_w) = pipe();
    let (child_r, to_child) = pipe();
    let mut keep = vec![0, 1, 2, child_w.as_raw_fd(), child_r.as_raw_fd()];
    keep.sort_unstable();
    let plan = sys::process::ForkPlan {
        keep: &keep,
        stdio: [None; 3],
        clear_mask: false,
    };
    // SAFETY: in the child, no object of the parent that owns a descriptor
    // is used or dropped: the parent's ends of the pipes are forgotten, the
    // kept ones are the child's, `f` is given only those, the sharer's state
    // of the parent is left alone (it is stamped with the parent's pid), and
    // the child ends with _exit.
    match unsafe { sys::process::fork(&plan) }.expect("fork") {
        sys::process::Forked::Child => {
            std::mem::forget(from_child);
            std::mem::forget(to_child);
            let link = Link {
                to_parent: Connection::from_fd(child_w, false, true),
                from_parent: Connection::from_fd(child_r, true, false),
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&link)))
                .unwrap_or_else(|p| Err(crate::rt::child::panic_message(&*p)));
            let last = match result {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("failed: {e}"),
            };
            send_frame(&link.to_parent, last.as_bytes());
            sys::process::exit_immediately(0);
        }
        sys::process::Forked::Parent(pid) => Forked {
            pid,
            from_child: Connection::from_fd(from_child, true, false),
            to_child: Connection::from_fd(to_child, false, true),
        },
    }
}

impl Forked {
    /// Reads the child's last frame, asserts it is "ok", and reaps it.
    fn finish(self) {
        let last = recv_frame(&self.from_child);
        self.reap();
        assert_eq!(String::from_utf8_lossy(&last), "ok");
    }

    fn reap(&self) {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        nix::sys::wait::waitpid(pid, None).expect("waitpid");
    }
}

fn check(ok: bool, what: &str) -> std::result::Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

#[test]
fn a_forked_child_starts_its_own_sharer_and_redeems_from_its_parent() {
    let (r, w) = pipe();
    // The parent's sharer runs, so the child inherits its state.
    let parents = issue(w.as_fd()).expect("issue");
    let for_child = issue(w.as_fd()).expect("issue");
    drop(w);
    let wire = codec::encode(&(parents.clone(), for_child)).expect("encode");
    let child = fork_child(move |link| {
        let (parents, for_child): (Ticket, Ticket) =
            codec::decode(&wire).map_err(|e| e.to_string())?;
        // Its own sharer, under its own pid and name.
        let (_r, w) = sys::fd::pipe().map_err(|e| e.to_string())?;
        let own = issue(w.as_fd()).map_err(|e| e.to_string())?;
        check(
            own.pid == std::process::id(),
            "the child's ticket has its pid",
        )?;
        check(
            own.name != parents.name,
            "the child has a sharer of its own",
        )?;
        let got = redeem(&own).map_err(|e| format!("own ticket: {e}"))?;
        check(same_file(got.as_fd(), w.as_fd()), "own ticket, same file")?;
        // And redeems from its parent's sharer, across processes.
        let got = redeem(&for_child).map_err(|e| format!("parent's ticket: {e}"))?;
        sys::fd::write_all(got.as_fd(), b"child", false).map_err(|e| e.to_string())?;
        drop(got);
        send_frame(&link.to_parent, b"done");
        Ok(())
    });
    assert_eq!(recv_frame(&child.from_child), b"done");
    child.finish();
    let mut buf = [0u8; 5];
    assert_eq!(sys::fd::read(r.as_fd(), &mut buf).expect("read"), 5);
    assert_eq!(&buf, b"child");
    // The parent's sharer was not disturbed by the child.
    assert!(redeem(&parents).is_ok());
    drop(r);
}

#[test]
fn a_ticket_redeemed_across_processes_then_its_sender_gone() {
    let child = fork_child(|link| {
        let memfd = sys::fd::memfd(c"mp-sharer-test").map_err(|e| e.to_string())?;
        sys::fd::write_all(memfd.as_fd(), b"from the child", false).map_err(|e| e.to_string())?;
        let a = issue(memfd.as_fd()).map_err(|e| e.to_string())?;
        let b = issue(memfd.as_fd()).map_err(|e| e.to_string())?;
        let wire = codec::encode(&(a, b)).map_err(|e| e.to_string())?;
        send_frame(&link.to_parent, &wire);
        // Serves until the parent says so.
        let _ = recv_frame(&link.from_parent);
        Ok(())
    });
    let (a, b): (Ticket, Ticket) = codec::decode(&recv_frame(&child.from_child)).expect("tickets");
    assert_eq!(a.pid, child.pid);
    let got = redeem(&a).expect("redeem from a live child");
    let mut buf = [0u8; 14];
    let n = nix::sys::uio::pread(got.as_fd(), &mut buf, 0).expect("pread");
    assert_eq!(&buf[..n], b"from the child");
    assert_eq!(redeem(&a).err(), Some(TicketFailure::AlreadyRedeemed));
    send_frame(&child.to_child, b"exit");
    let pid = child.pid;
    child.finish(); // reaped: its sharer is gone
    assert_eq!(b.pid, pid);
    assert_eq!(redeem(&b).err(), Some(TicketFailure::SenderGone));
}

#[test]
fn one_ticket_too_many_is_an_overflow_error() {
    // In a child: its sharer holds nothing else.
    fork_child(|_| {
        let (_r, w) = sys::fd::pipe().map_err(|e| e.to_string())?;
        let mut tickets = Vec::new();
        for i in 0..MAX_TICKETS {
            tickets.push(issue(w.as_fd()).map_err(|e| format!("ticket {i}: {e}"))?);
        }
        match issue(w.as_fd()) {
            Err(Error::Overflow { what: "ticket", .. }) => {}
            other => return Err(format!("one too many gave {other:?}")),
        }
        // A redemption makes room for one more.
        redeem(&tickets[7]).map_err(|e| e.to_string())?;
        issue(w.as_fd()).map_err(|e| format!("after a redemption: {e}"))?;
        check(issue(w.as_fd()).is_err(), "full again")?;
        Ok(())
    })
    .finish();
}

#[test]
fn the_oldest_waiting_client_is_dropped_for_a_new_one() {
    fork_child(|_| {
        let (_r, w) = sys::fd::pipe().map_err(|e| e.to_string())?;
        let ticket = issue(w.as_fd()).map_err(|e| e.to_string())?;
        let oldest = raw_client(&ticket);
        let mut others = Vec::new();
        for _ in 0..MAX_CLIENTS {
            others.push(raw_client(&ticket));
        }
        check(
            reaches_eof(oldest.as_fd()),
            "the oldest client was not dropped",
        )?;
        // Dropped for the new one, not for its deadline: the next oldest
        // (whose deadline is as near) still waits.
        let next_heard = sys::fd::readable(others[0].as_fd(), Some(Duration::ZERO));
        check(
            matches!(next_heard, Ok(false)),
            "the next oldest was dropped too",
        )?;
        let got = redeem(&ticket).map_err(|e| e.to_string())?;
        check(same_file(got.as_fd(), w.as_fd()), "same file")?;
        drop(others);
        Ok(())
    })
    .finish();
}

#[test]
fn a_silent_client_is_dropped_at_its_deadline() {
    fork_child(|_| {
        // This child's sharer waits 50 ms for a client's id.
        CLIENT_TIMEOUT_NS.store(50_000_000, Ordering::Relaxed);
        let (_r, w) = sys::fd::pipe().map_err(|e| e.to_string())?;
        let ticket = issue(w.as_fd()).map_err(|e| e.to_string())?;
        let silent = raw_client(&ticket);
        let mut slow = raw_client(&ticket);
        slow.write_all(&ticket.id[..15])
            .map_err(|e| e.to_string())?;
        check(reaches_eof(silent.as_fd()), "a silent client was kept")?;
        check(reaches_eof(slow.as_fd()), "a slow client was kept")?;
        // The ticket is still good, for a client that sends its id.
        let got = redeem(&ticket).map_err(|e| e.to_string())?;
        check(same_file(got.as_fd(), w.as_fd()), "same file")
    })
    .finish();
}

#[test]
fn out_of_descriptors_the_sharer_refuses_a_client_and_recovers() {
    fork_child(|_| {
        let (_r, w) = sys::fd::pipe().map_err(|e| e.to_string())?;
        let ticket = issue(w.as_fd()).map_err(|e| e.to_string())?;
        // Every descriptor of this process taken but one, for the client.
        let mut filler = Vec::new();
        loop {
            match w.try_clone() {
                Ok(fd) => filler.push(fd),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => return Err(format!("dup: {e}")),
            }
            check(filler.len() < 1 << 20, "no descriptor limit")?;
        }
        filler.pop();
        let c = raw_client(&ticket);
        // The sharer cannot take it but with its reserve: it refuses it.
        check(
            reaches_eof(c.as_fd()),
            "a client it could not take is kept waiting",
        )?;
        drop((c, filler));
        let got = redeem(&ticket).map_err(|e| format!("after: {e}"))?;
        check(same_file(got.as_fd(), w.as_fd()), "same file")
    })
    .finish();
}

#[test]
fn a_client_of_another_user_gets_nothing() {
    if sys::sharer_sock::effective_uid() != 0 {
        if std::env::var_os("MP_SKIP_SETUID_TEST").is_some() {
            #[allow(clippy::print_stderr)] // a skip must be seen
            {
                eprintln!("SKIPPED: the other-user test needs root (MP_SKIP_SETUID_TEST is set)");
            }
            return;
        }
        panic!(
            "the other-user test needs root (to become nobody in a child); run the tests \
             as root, as the CI does, or set MP_SKIP_SETUID_TEST=1"
        );
    }
    let (_r, w) = pipe();
    let ticket = issue(w.as_fd()).expect("issue");
    let wire = codec::encode(&ticket).expect("encode");
    fork_child(move |_| {
        let ticket: Ticket = codec::decode(&wire).map_err(|e| e.to_string())?;
        sys::sharer_sock::set_uid(65534).map_err(|e| format!("setuid: {e}"))?;
        let mut c = raw_client(&ticket);
        // The sharer may have closed it already (then the write fails).
        let _ = c.write_all(&ticket.id);
        let (bytes, fds) = answer_of(&c);
        check(bytes.is_empty() && fds == 0, "another user got an answer")
    })
    .finish();
    // The ticket is still good for its own user.
    let got = redeem(&ticket).expect("redeem");
    assert!(same_file(got.as_fd(), w.as_fd()));
}
