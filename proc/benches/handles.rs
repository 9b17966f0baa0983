//! mp-proc's benchmark of handles sent after start: a running child gets a
//! fresh `Connection` each time (over a duplex connection, its descriptor
//! travels by `SCM_RIGHTS`; on a `Queue`, as a ticket it redeems from the
//! sender; or a bare descriptor by `reduction::send_handle`) and answers one
//! byte on it. Beside CPython (the same loops in python3, same run: its
//! `Connection` goes through `resource_sharer`) and raw OS loops in this
//! binary (`sendmsg` of a fresh socketpair end with `SCM_RIGHTS`; for
//! tickets, a `connect`/`accept` before it), one byte back.
//!
//! `cargo xtask bench` runs it and prints the table; alone:
//! `cargo bench -p mp-proc --bench handles` (`-- FILTER` for some rows).

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

use mp_proc::{Connection, Process, Queue, StartMethod, pipe};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::unistd::{ForkResult, Pid, fork, read, write};
use support::{Kind, Row, Table, median_per_iter, pin, placements, py, timed, us};

/// How long the first operation waits for the child's byte (a bug shows
/// as an error, not a hang).
const PROBE: Duration = Duration::from_secs(10);

fn main() {
    mp_proc::init();
    let mut c = support::criterion();
    let mut g = c.benchmark_group("handles");
    for (sfx, parent_cpu, child_cpu) in placements() {
        pin_threads(parent_cpu);
        by_connection(&mut g, StartMethod::Fork, sfx, child_cpu);
        by_queue(&mut g, sfx, child_cpu);
        by_send_handle(&mut g, sfx, child_cpu);
        raw(&mut g, sfx, child_cpu);
        raw_ticket(&mut g, sfx, child_cpu);
        pin_threads(None);
    }
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        by_connection(&mut g, method, "", None);
    }
    g.finish();
    c.final_summary();
    let python = support::cpython("handle_send");
    table(&python).publish("1b-handles");
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Pins every thread of this process (and the children it forks from now
/// on) to `cpu`, or to every CPU for `None`: the sharer's thread, started
/// by the first ticket under another placement, goes with the parent.
fn pin_threads(cpu: Option<usize>) {
    pin(cpu);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let mut set = nix::sched::CpuSet::new();
    match cpu {
        Some(c) => set.set(c).unwrap(),
        None => {
            for c in 0..mp_proc::cpu_count().max(2).min(nix::sched::CpuSet::count()) {
                let _ = set.set(c);
            }
        }
    }
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            let _ = nix::sched::sched_setaffinity(Pid::from_raw(tid), &set);
        }
    }
}

fn pin_child(cpu: Option<usize>) {
    if cpu.is_some() {
        pin(cpu);
    }
}

/// One operation: a fresh duplex pipe, one end handed over by `send`, the
/// byte the child answers on it received on the other end.
fn once(send: impl Fn(&Connection) -> mp_proc::Result<()>) -> mp_proc::Result<()> {
    let (mine, theirs) = pipe(true)?;
    send(&theirs)?;
    drop(theirs);
    mine.recv_bytes().map(drop)
}

/// Benchmarks `op` as the row `name`, once `first` (the first operation)
/// has worked: a failure is a bug of the mechanism, and stops the run.
fn row(
    g: &mut Group<'_>,
    name: &str,
    first: impl FnOnce() -> Result<(), String>,
    op: impl Fn() -> Result<(), String>,
) {
    if let Err(e) = first() {
        panic!("{name}: the first operation failed: {e}");
    }
    let id = format!("handles/{name}");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed(&id, iters, |n| {
                for _ in 0..n {
                    op().unwrap();
                }
            })
        })
    });
}

/// The first operation, with a deadline (a bug shows as an error, not a
/// hang).
fn works(send: impl Fn(&Connection) -> mp_proc::Result<()>) -> Result<(), String> {
    let (mine, theirs) = pipe(true).map_err(|e| e.to_string())?;
    send(&theirs).map_err(|e| e.to_string())?;
    drop(theirs);
    match mine.poll(Some(PROBE)) {
        Ok(true) => mine.recv_bytes().map(drop).map_err(|e| e.to_string()),
        Ok(false) => Err(format!("no answer from the child in {PROBE:?}")),
        Err(e) => Err(e.to_string()),
    }
}

// ---------------------------------------------------------------- mp, Connection

/// The child: a connection per message (`None`: stop), one byte back on it.
fn conn_echo((conn, cpu): (Connection, Option<usize>)) {
    pin_child(cpu);
    while let Ok(Some(c)) = conn.recv::<Option<Connection>>() {
        if c.send_bytes(b"x").is_err() {
            return;
        }
    }
}

fn by_connection(g: &mut Group<'_>, method: StartMethod, sfx: &str, child_cpu: Option<usize>) {
    let (ours, child_end) = pipe(true).unwrap();
    let mut child = Process::new(conn_echo, (child_end, child_cpu)).start_method(method);
    child.start().unwrap();
    let send = |c: &Connection| ours.send(&Some(c));
    row(
        g,
        &format!("mp_send_{method}{sfx}"),
        || works(send),
        || once(send).map_err(|e| e.to_string()),
    );
    let _ = ours.send(&None::<Connection>);
    drop(ours);
    child.join().unwrap();
}

// ---------------------------------------------------------------- mp, Queue

/// The child: a connection per item (`None`: stop), one byte back on it.
fn queue_echo((q, cpu): (Queue<Option<Connection>>, Option<usize>)) {
    pin_child(cpu);
    while let Ok(Some(c)) = q.get() {
        if c.send_bytes(b"x").is_err() {
            return;
        }
    }
}

fn by_queue(g: &mut Group<'_>, sfx: &str, child_cpu: Option<usize>) {
    let q: Queue<Option<Connection>> = Queue::new().unwrap();
    let mut child =
        Process::new(queue_echo, (q.clone(), child_cpu)).start_method(StartMethod::Fork);
    child.start().unwrap();
    let send = |c: &Connection| q.put(Some(c.clone()));
    row(
        g,
        &format!("mp_queue_fork{sfx}"),
        || works(send),
        || once(send).map_err(|e| e.to_string()),
    );
    let _ = q.put(None);
    child.join().unwrap();
}

// ---------------------------------------------------------------- mp, send_handle

/// The child: `recv_handle` until end of file, one byte on each descriptor.
fn fd_echo((conn, cpu): (Connection, Option<usize>)) {
    pin_child(cpu);
    while let Ok(fd) = mp_proc::reduction::recv_handle(&conn) {
        if write(fd.as_fd(), b"x").is_err() {
            return;
        }
    }
}

fn by_send_handle(g: &mut Group<'_>, sfx: &str, child_cpu: Option<usize>) {
    let (ours, child_end) = pipe(true).unwrap();
    let mut child = Process::new(fd_echo, (child_end, child_cpu)).start_method(StartMethod::Fork);
    child.start().unwrap();
    let one = || -> Result<(), String> {
        let (mine, theirs) = socket_pair();
        mp_proc::reduction::send_handle(&ours, theirs.as_fd()).map_err(|e| e.to_string())?;
        drop(theirs);
        let mut byte = [0u8; 1];
        match read(mine.as_fd(), &mut byte) {
            Ok(1) => Ok(()),
            Ok(_) => Err("end of file instead of the child's byte".into()),
            Err(e) => Err(e.to_string()),
        }
    };
    // The child answers or dies (then `theirs` has no other holder: end of
    // file), so the first operation needs no deadline.
    row(g, &format!("mp_send_handle_fork{sfx}"), one, one);
    // End of file for the child, whoever else holds a copy of `ours`.
    let _ = nix::sys::socket::shutdown(ours.as_fd().as_raw_fd(), nix::sys::socket::Shutdown::Write);
    drop(ours);
    child.join().unwrap();
}

// ---------------------------------------------------------------- raw OS

fn socket_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

/// In a raw child: one byte and the descriptor that came with it on
/// `sock`; `None` at end of file or on an error. `space` is the control
/// buffer (allocated before fork).
fn recv_fd(sock: BorrowedFd<'_>, space: &mut [u8]) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    if msg.bytes == 0 {
        return None;
    }
    let mut got = None;
    for cmsg in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: a descriptor just received is ours alone; any
                // beyond the first is closed as it drops.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                got.get_or_insert(fd);
            }
        }
    }
    got
}

/// Sends one byte with `fd` attached on `sock`.
fn send_fd(sock: BorrowedFd<'_>, byte: u8, fd: BorrowedFd<'_>) {
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&[byte])],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

/// Forks a raw child that closes `parent` (its copy of the parent's end),
/// pins itself and runs `body`, then exits. `body` makes only syscalls
/// (nix's recvmsg parses descriptors into a Vec: glibc's fork leaves malloc
/// usable in the child).
fn raw_child(parent: &OwnedFd, cpu: Option<usize>, body: impl FnOnce()) -> Pid {
    // SAFETY: the child pins itself, runs `body` (syscalls only) and
    // _exits; it never returns into the parent's code.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            // SAFETY: the child's copy of the parent's end; nothing else uses it here.
            unsafe { nix::libc::close(parent.as_raw_fd()) };
            pin_child(cpu);
            body();
            // SAFETY: _exit ends a forked child at once.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// The floor of `Connection::send`: a fresh socketpair end goes with one
/// byte by `SCM_RIGHTS` to a running child, which writes one byte on it.
fn raw(g: &mut Group<'_>, sfx: &str, child_cpu: Option<usize>) {
    let (ctl, child_ctl) = socket_pair();
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let pid = raw_child(&ctl, child_cpu, || {
        while let Some(fd) = recv_fd(child_ctl.as_fd(), &mut space) {
            let _ = write(fd.as_fd(), b"x");
        }
    });
    support::measure(g, "handles", &format!("raw_scm_rights{sfx}"), |n| {
        for _ in 0..n {
            let (mine, theirs) = socket_pair();
            send_fd(ctl.as_fd(), b'h', theirs.as_fd());
            drop(theirs);
            let mut byte = [0u8; 1];
            assert_eq!(read(mine.as_fd(), &mut byte).unwrap(), 1);
        }
    });
    drop(ctl);
    nix::sys::wait::waitpid(pid, None).unwrap();
}

/// The floor of a ticket: one byte (the ticket) on a pipe to a running
/// child, which connects to the parent's listening Unix socket (abstract
/// name), asks with one byte and gets the descriptor by `SCM_RIGHTS`, then
/// writes one byte on it. The parent accepts and answers on the measuring
/// thread (mp's sharer answers from a thread of its own: one more wake-up).
fn raw_ticket(g: &mut Group<'_>, sfx: &str, child_cpu: Option<usize>) {
    let name = format!("mp-bench-raw-ticket-{}{sfx}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    let (ctl_r, ctl_w) = nix::unistd::pipe().unwrap();
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let pid = raw_child(&ctl_w, child_cpu, || {
        let mut ticket = [0u8; 1];
        while let Ok(1) = read(ctl_r.as_fd(), &mut ticket) {
            let Ok(conn) = UnixStream::connect_addr(&addr) else {
                return;
            };
            if write(conn.as_fd(), &ticket).is_err() {
                return;
            }
            let Some(fd) = recv_fd(conn.as_fd(), &mut space) else {
                return;
            };
            drop(conn);
            let _ = write(fd.as_fd(), b"x");
        }
    });
    drop(ctl_r);
    support::measure(g, "handles", &format!("raw_ticket{sfx}"), |n| {
        for _ in 0..n {
            let (mine, theirs) = socket_pair();
            write(ctl_w.as_fd(), b"t").unwrap();
            let (conn, _) = listener.accept().unwrap();
            let mut ticket = [0u8; 1];
            assert_eq!(read(conn.as_fd(), &mut ticket).unwrap(), 1);
            send_fd(conn.as_fd(), b'k', theirs.as_fd());
            drop((conn, theirs));
            let mut byte = [0u8; 1];
            assert_eq!(read(mine.as_fd(), &mut byte).unwrap(), 1);
        }
    });
    drop(ctl_w);
    nix::sys::wait::waitpid(pid, None).unwrap();
}

// ---------------------------------------------------------------- the table

fn table(python: &support::Python) -> Table {
    let mut t = Table::new(
        "mp-proc: a handle sent to a running child (medians; CPython via python3 in the same run)",
    );
    const SCM: &str = "sendmsg(SCM_RIGHTS) of a fresh socketpair end, 1 B back";
    const TICKET: &str = "1 B on a pipe, connect+accept, SCM_RIGHTS, 1 B back";
    // (row, mp's id, CPython's bench and param, the raw id, what the raw loop does)
    let mut rows = Vec::new();
    for (sfx, _, _) in placements() {
        rows.push((
            format!("send a Connection after start, fork{sfx}"),
            format!("mp_send_fork{sfx}"),
            ("handle_send_rtt", format!("connection_fork{sfx}")),
            (format!("raw_scm_rights{sfx}"), SCM),
        ));
    }
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        rows.push((
            format!("send a Connection after start, {method}"),
            format!("mp_send_{method}"),
            ("handle_send_rtt", format!("connection_{method}")),
            ("raw_scm_rights".to_owned(), SCM),
        ));
    }
    for (sfx, _, _) in placements() {
        rows.push((
            format!("reduction.send_handle + recv_handle (bare fd), fork{sfx}"),
            format!("mp_send_handle_fork{sfx}"),
            ("send_handle_rtt", format!("fork{sfx}")),
            (format!("raw_scm_rights{sfx}"), SCM),
        ));
    }
    for (sfx, _, _) in placements() {
        rows.push((
            format!("Queue.put(Connection) after start (a ticket), fork{sfx}"),
            format!("mp_queue_fork{sfx}"),
            ("handle_queue_rtt", format!("connection_fork{sfx}")),
            (format!("raw_ticket{sfx}"), TICKET),
        ));
    }
    for (name, id, (py_bench, py_param), (raw_id, raw_what)) in rows {
        t.rows.push(Row::new(
            name,
            "us",
            Kind::Latency,
            us(median_per_iter(&format!("handles/{id}"))),
            py(python, py_bench, &py_param),
            us(median_per_iter(&format!("handles/{raw_id}"))),
            raw_what,
            None,
        ));
    }
    t
}
