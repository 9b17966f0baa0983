//! mp-proc's benchmark of handles sent after start: a running child gets a
//! fresh `Connection` each time (over a duplex connection, its descriptor
//! travels by `SCM_RIGHTS`; on a `Queue`, as a ticket it redeems from the
//! sender) and answers one byte on it. Beside CPython (the same loop in
//! python3, same run: `resource_sharer`) and the raw OS loop in this binary
//! (`sendmsg` of a fresh socketpair end with `SCM_RIGHTS`, one byte back).
//!
//! `cargo xtask bench` runs it and prints the table; alone:
//! `cargo bench -p mp-proc --bench handles` (`-- FILTER` for some rows).

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use mp_proc::{Connection, Process, Queue, StartMethod, pipe};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::unistd::{ForkResult, Pid, fork, read, write};
use support::{Kind, Row, Table, median_per_iter, pin, placements, py, timed, us};

/// How long the probe waits for the child's byte before it calls the
/// mechanism absent (a bug shows as a missing row, not a hang).
const PROBE: Duration = Duration::from_secs(10);

fn main() {
    mp_proc::init();
    let mut c = support::criterion();
    let mut g = c.benchmark_group("handles");
    for (sfx, parent_cpu, child_cpu) in placements() {
        pin(parent_cpu);
        by_connection(&mut g, StartMethod::Fork, sfx, child_cpu);
        by_queue(&mut g, sfx, child_cpu);
        by_send_handle(&mut g, sfx, child_cpu);
        raw(&mut g, sfx, child_cpu);
        pin(None);
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

/// The first operation, with a deadline: whether the mechanism works here.
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
    let name = format!("mp_send_{method}{sfx}");
    match works(send) {
        Ok(()) => {
            let id = format!("handles/{name}");
            g.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    timed(&id, iters, |n| {
                        for _ in 0..n {
                            once(send).unwrap();
                        }
                    })
                })
            });
        }
        Err(e) => eprintln!("{name}: skipped, a Connection cannot be sent after start here: {e}"),
    }
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
    let name = format!("mp_queue_fork{sfx}");
    match works(send) {
        Ok(()) => {
            let id = format!("handles/{name}");
            g.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    timed(&id, iters, |n| {
                        for _ in 0..n {
                            once(send).unwrap();
                        }
                    })
                })
            });
        }
        Err(e) => eprintln!("{name}: skipped, a Connection cannot be put on a Queue here: {e}"),
    }
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
    let name = format!("mp_send_handle_fork{sfx}");
    // The child answers or dies (then `theirs` has no other holder: end of
    // file), so the probe needs no deadline.
    match one() {
        Ok(()) => {
            let id = format!("handles/{name}");
            g.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    timed(&id, iters, |n| {
                        for _ in 0..n {
                            one().unwrap();
                        }
                    })
                })
            });
        }
        Err(e) => eprintln!("{name}: skipped, reduction::send_handle does not work here: {e}"),
    }
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

/// A raw child: for each byte on `ctl` it takes the descriptor that came
/// with it, writes one byte on it and closes it; it ends at end of file.
/// `parent` is the parent's end of `ctl`, which the child closes.
fn raw_fd_echo(ctl: OwnedFd, parent: &OwnedFd, cpu: Option<usize>) -> Pid {
    // Allocated before fork: the child only makes syscalls (nix's recvmsg
    // parses the descriptors into a Vec; glibc's fork leaves malloc usable).
    let mut space = nix::cmsg_space!([RawFd; 1]);
    // SAFETY: the child pins itself, makes close/recvmsg/write syscalls and
    // _exits; it never returns into the parent's code.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            // SAFETY: the child's copy of the parent's end; nothing else uses it here.
            unsafe { nix::libc::close(parent.as_raw_fd()) };
            pin_child(cpu);
            loop {
                let mut byte = [0u8; 1];
                let mut iov = [IoSliceMut::new(&mut byte)];
                let Ok(msg) = recvmsg::<()>(
                    ctl.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) else {
                    break;
                };
                if msg.bytes == 0 {
                    break;
                }
                let Ok(cmsgs) = msg.cmsgs() else { break };
                for cmsg in cmsgs {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        for fd in fds {
                            // SAFETY: the descriptor just received is ours alone.
                            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                            let _ = write(fd.as_fd(), b"x");
                        }
                    }
                }
            }
            // SAFETY: _exit ends a forked child at once.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn raw(g: &mut Group<'_>, sfx: &str, child_cpu: Option<usize>) {
    let (ctl, child_ctl) = socket_pair();
    let pid = raw_fd_echo(child_ctl, &ctl, child_cpu);
    support::measure(g, "handles", &format!("raw_scm_rights{sfx}"), |n| {
        for _ in 0..n {
            let (mine, theirs) = socket_pair();
            let fds = [theirs.as_raw_fd()];
            sendmsg::<()>(
                ctl.as_raw_fd(),
                &[IoSlice::new(b"h")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            drop(theirs);
            let mut byte = [0u8; 1];
            assert_eq!(read(mine.as_fd(), &mut byte).unwrap(), 1);
        }
    });
    drop(ctl);
    nix::sys::wait::waitpid(pid, None).unwrap();
}

// ---------------------------------------------------------------- the table

fn table(python: &support::Python) -> Table {
    let mut t = Table::new(
        "mp-proc: a handle sent to a running child (medians; CPython via python3 in the same run)",
    );
    let raw_what = "sendmsg(SCM_RIGHTS) of a fresh socketpair end, 1 B back";
    let raw = |sfx: &str| us(median_per_iter(&format!("handles/raw_scm_rights{sfx}")));
    let mut rows = Vec::new();
    for (sfx, _, _) in placements() {
        rows.push((
            format!("send a Connection after start, fork{sfx}"),
            format!("mp_send_fork{sfx}"),
            ("handle_send_rtt", format!("connection_fork{sfx}")),
            raw(sfx),
        ));
    }
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        rows.push((
            format!("send a Connection after start, {method}"),
            format!("mp_send_{method}"),
            ("handle_send_rtt", format!("connection_{method}")),
            raw(""),
        ));
    }
    for (sfx, _, _) in placements() {
        rows.push((
            format!("Queue.put(Connection) after start (a ticket), fork{sfx}"),
            format!("mp_queue_fork{sfx}"),
            ("handle_queue_rtt", format!("connection_fork{sfx}")),
            raw(sfx),
        ));
    }
    for (sfx, _, _) in placements() {
        rows.push((
            format!("reduction.send_handle + recv_handle (bare fd), fork{sfx}"),
            format!("mp_send_handle_fork{sfx}"),
            ("send_handle_rtt", format!("fork{sfx}")),
            raw(sfx),
        ));
    }
    for (name, id, (py_bench, py_param), raw) in rows {
        t.rows.push(Row::new(
            name,
            "us",
            Kind::Latency,
            us(median_per_iter(&format!("handles/{id}"))),
            py(python, py_bench, &py_param),
            raw,
            raw_what,
            None,
        ));
    }
    t
}
