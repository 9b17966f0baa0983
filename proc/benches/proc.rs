//! mp-proc's benchmarks: process start + join per start method, pipe round
//! trips and pipe throughput, each beside CPython (run with python3 in the
//! same run) and beside a raw OS loop in this very binary.
//!
//! `cargo xtask bench` runs it and prints the table; `MP_BENCH_QUICK=1`
//! shortens every run.

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use std::hint::black_box;
use std::os::fd::{AsFd, OwnedFd};

use criterion::Criterion;
use mp_proc::{Connection, Process, StartMethod, pipe};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::unistd::{ForkResult, Pid, fork, read, write};
use support::{Kind, Row, Table, Target, median_per_iter, ms, pin, placements, py, timed, us};

/// Set in the environment of the raw posix_spawn child: exit at once.
const RAW_EXIT: &str = "MP_BENCH_RAW_EXIT";

fn main() {
    if std::env::var_os(RAW_EXIT).is_some() {
        return;
    }
    mp_proc::init();
    let mut c = support::criterion();
    start(&mut c);
    round_trip(&mut c);
    throughput(&mut c);
    c.final_summary();
    let python = support::cpython("proc_start,pipe_rtt,pipe_tput");
    table(&python).publish("1-proc");
}

// ---------------------------------------------------------------- start

fn noop(_: ()) {}

fn start(c: &mut Criterion) {
    let mut g = c.benchmark_group("start_join");
    for method in StartMethod::ALL {
        let id = format!("start_join/mp_{method}");
        g.bench_function(format!("mp_{method}"), |b| {
            b.iter_custom(|iters| {
                timed(&id, iters, |n| {
                    for _ in 0..n {
                        let mut p = Process::new(noop, ()).start_method(method);
                        p.start().unwrap();
                        assert_eq!(p.join().unwrap(), 0);
                    }
                })
            })
        });
    }
    g.bench_function("raw_fork_waitpid", |b| {
        b.iter_custom(|iters| {
            timed("start_join/raw_fork", iters, |n| {
                for _ in 0..n {
                    // SAFETY: the child calls only _exit.
                    match unsafe { fork() }.unwrap() {
                        ForkResult::Child => unsafe_exit(),
                        ForkResult::Parent { child } => {
                            nix::sys::wait::waitpid(child, None).unwrap();
                        }
                    }
                }
            })
        })
    });
    g.bench_function("raw_posix_spawn_self", |b| {
        let exe = std::env::current_exe().unwrap();
        b.iter_custom(|iters| {
            timed("start_join/raw_spawn", iters, |n| {
                for _ in 0..n {
                    let status = std::process::Command::new(&exe)
                        .env(RAW_EXIT, "1")
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
            })
        })
    });
    g.finish();
}

/// In a raw child: closes its copies of the parent's descriptors, so that the
/// parent closing them is end of file for the child.
fn close_copies(fds: &[&OwnedFd]) {
    use std::os::fd::AsRawFd;
    for fd in fds {
        let _ = nix::unistd::close(fd.as_raw_fd());
    }
}

fn unsafe_exit() -> ! {
    // SAFETY: _exit is async-signal-safe and ends the forked child at once.
    unsafe { nix::libc::_exit(0) }
}

// ---------------------------------------------------------------- round trip

fn pin_child(cpu: Option<usize>) {
    if cpu.is_some() {
        pin(cpu);
    }
}

fn echo_obj((rx, tx, cpu): (Connection, Connection, Option<usize>)) {
    pin_child(cpu);
    while let Ok(v) = rx.recv::<(String, u32)>() {
        tx.send(&v).unwrap();
    }
}

/// A raw echo child: one byte back for each byte, until end of file. The
/// child closes `parent_fds`, its copies of the parent's ends.
fn raw_pair(duplex: bool) -> ((OwnedFd, OwnedFd), (OwnedFd, OwnedFd)) {
    // Returns ((parent rx, parent tx), (child rx, child tx)).
    if duplex {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        ((a, a2), (b, b2))
    } else {
        let (r1, w1) = nix::unistd::pipe().unwrap();
        let (r2, w2) = nix::unistd::pipe().unwrap();
        ((r2, w1), (r1, w2))
    }
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    for (sfx, parent_cpu, child_cpu) in placements() {
        for (label, duplex) in [("socketpair", true), ("two_pipes", false)] {
            pin(parent_cpu);
            // mp: ("ping", 42) as a typed value, echoed by a child process.
            let (prx, ptx, crx, ctx) = if duplex {
                let (a, b) = pipe(true).unwrap();
                (a.clone(), a, b.clone(), b)
            } else {
                let (r1, w1) = pipe(false).unwrap();
                let (r2, w2) = pipe(false).unwrap();
                (r2, w1, r1, w2)
            };
            let mut child =
                Process::new(echo_obj, (crx, ctx, child_cpu)).start_method(StartMethod::Fork);
            child.start().unwrap();
            let id = format!("round_trip/mp_{label}{sfx}");
            let msg = ("ping".to_string(), 42u32);
            g.bench_function(format!("mp_{label}{sfx}"), |b| {
                b.iter_custom(|iters| {
                    timed(&id, iters, |n| {
                        for _ in 0..n {
                            ptx.send(&msg).unwrap();
                            black_box(prx.recv::<(String, u32)>().unwrap());
                        }
                    })
                })
            });
            drop((prx, ptx));
            child.join().unwrap();

            // raw: one byte, read and written with bare syscalls.
            let ((rx, tx), (crx, ctx)) = raw_pair(duplex);
            let pid = support::raw_echo(crx, ctx, child_cpu, [&rx, &tx]);
            support::measure(&mut g, "round_trip", &format!("raw_{label}{sfx}"), |n| {
                support::round_trips(tx.as_fd(), rx.as_fd(), n)
            });
            drop((rx, tx));
            nix::sys::wait::waitpid(pid, None).unwrap();
            pin(None);
        }
    }
    g.finish();
}

// ---------------------------------------------------------------- throughput

const SIZES: [(&str, usize); 3] = [("64B", 64), ("64KiB", 64 << 10), ("1MiB", 1 << 20)];

/// Receives messages; an empty one asks for an acknowledgement.
fn sink((rx, ack, cpu): (Connection, Connection, Option<usize>)) {
    pin_child(cpu);
    while let Ok(m) = rx.recv_bytes() {
        if m.is_empty() {
            ack.send_bytes(b"k").unwrap();
        }
    }
}

/// A raw sink: reads a count (8 bytes) on `ctl`, then that many messages of
/// `size` bytes on `rx`, then writes one byte on `ack`.
fn raw_sink(
    rx: OwnedFd,
    ctl: OwnedFd,
    ack: OwnedFd,
    parent_fds: [&OwnedFd; 3],
    size: usize,
    cpu: Option<usize>,
) -> Pid {
    // SAFETY: the child makes only syscalls and allocates one buffer before _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            close_copies(&parent_fds);
            pin_child(cpu);
            let mut buf = vec![0u8; size];
            let mut count = [0u8; 8];
            while let Ok(8) = read(ctl.as_fd(), &mut count) {
                for _ in 0..u64::from_ne_bytes(count) {
                    let mut got = 0;
                    while got < size {
                        match read(rx.as_fd(), &mut buf[got..]) {
                            Ok(0) | Err(_) => unsafe_exit(),
                            Ok(n) => got += n,
                        }
                    }
                }
                let _ = write(ack.as_fd(), b"k");
            }
            unsafe_exit()
        }
        ForkResult::Parent { child } => child,
    }
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    for (sfx, parent_cpu, child_cpu) in placements() {
        for (kind, duplex) in [("pipe", false), ("socketpair", true)] {
            for (label, size) in SIZES {
                pin(parent_cpu);
                let buf = vec![b'a'; size];
                // mp: send_bytes to a child that recv_bytes.
                let (rx, tx) = if duplex {
                    let (a, b) = pipe(true).unwrap();
                    (b, a)
                } else {
                    pipe(false).unwrap()
                };
                let (ack_rx, ack_tx) = pipe(false).unwrap();
                let mut child =
                    Process::new(sink, (rx, ack_tx, child_cpu)).start_method(StartMethod::Fork);
                child.start().unwrap();
                let id = format!("throughput/mp_{kind}_{label}{sfx}");
                g.throughput(criterion::Throughput::Bytes(size as u64));
                g.bench_function(format!("mp_{kind}_{label}{sfx}"), |b| {
                    b.iter_custom(|iters| {
                        timed(&id, iters, |n| {
                            for _ in 0..n {
                                tx.send_bytes(&buf).unwrap();
                            }
                            tx.send_bytes(b"").unwrap();
                            ack_rx.recv_bytes().unwrap();
                        })
                    })
                });
                drop(tx);
                child.join().unwrap();

                // raw: write(2) of whole messages, read(2) until each is complete.
                let (rx, tx) = if duplex {
                    socketpair(
                        AddressFamily::Unix,
                        SockType::Stream,
                        None,
                        SockFlag::SOCK_CLOEXEC,
                    )
                    .unwrap()
                } else {
                    nix::unistd::pipe().unwrap()
                };
                let (ctl_r, ctl_w) = nix::unistd::pipe().unwrap();
                let (ack_r, ack_w) = nix::unistd::pipe().unwrap();
                let pid = raw_sink(rx, ctl_r, ack_w, [&tx, &ctl_w, &ack_r], size, child_cpu);
                let id = format!("throughput/raw_{kind}_{label}{sfx}");
                g.bench_function(format!("raw_{kind}_{label}{sfx}"), |b| {
                    b.iter_custom(|iters| {
                        timed(&id, iters, |n| {
                            write(ctl_w.as_fd(), &n.to_ne_bytes()).unwrap();
                            for _ in 0..n {
                                let mut sent = 0;
                                while sent < size {
                                    sent += write(tx.as_fd(), &buf[sent..]).unwrap();
                                }
                            }
                            let mut k = [0u8; 1];
                            read(ack_r.as_fd(), &mut k).unwrap();
                        })
                    })
                });
                drop((tx, ctl_w));
                nix::sys::wait::waitpid(pid, None).unwrap();
                pin(None);
            }
        }
    }
    g.finish();
}

// ---------------------------------------------------------------- the table

fn table(python: &support::Python) -> Table {
    let mut t =
        Table::new("mp-proc: processes and pipes (medians; CPython 3 via python3 in the same run)");
    let raw_fork = ms(median_per_iter("start_join/raw_fork"));
    let raw_spawn = ms(median_per_iter("start_join/raw_spawn"));
    for (method, raw, raw_what, bound) in [
        (StartMethod::Fork, raw_fork, "fork+waitpid", 1.5),
        (
            StartMethod::Spawn,
            raw_spawn,
            "posix_spawn of this binary+waitpid",
            1.5,
        ),
        (StartMethod::Forkserver, raw_fork, "fork+waitpid", 3.0),
    ] {
        t.rows.push(Row {
            name: format!("Process start+join, {method}"),
            unit: "ms",
            kind: Kind::Latency,
            mp: ms(median_per_iter(&format!("start_join/mp_{method}"))),
            cpython: py(python, "process_start_join", method.name()),
            raw,
            raw_what: raw_what.into(),
            target: Some(Target::raw(bound)),
            other: None,
        });
    }
    for (sfx, _, _) in placements() {
        for (label, py_label, raw_what) in [
            (
                "socketpair",
                "obj_duplex_socketpair",
                "1 B over a socketpair",
            ),
            ("two_pipes", "obj_oneway_pipes", "1 B over two pipes"),
        ] {
            t.rows.push(Row {
                name: format!("round trip ('ping', 42), {label}{sfx}"),
                unit: "us",
                kind: Kind::Latency,
                mp: us(median_per_iter(&format!("round_trip/mp_{label}{sfx}"))),
                cpython: py(python, "pipe_rtt", &format!("{py_label}{sfx}")),
                raw: us(median_per_iter(&format!("round_trip/raw_{label}{sfx}"))),
                raw_what: raw_what.into(),
                target: Some(Target::raw(1.3)),
                other: None,
            });
        }
    }
    for (sfx, _, _) in placements() {
        for kind in ["pipe", "socketpair"] {
            for (label, size) in SIZES {
                let rate = |id: String| median_per_iter(&id).map(|d| 1.0 / d.as_secs_f64());
                let mp = rate(format!("throughput/mp_{kind}_{label}{sfx}"));
                let raw = rate(format!("throughput/raw_{kind}_{label}{sfx}"));
                let (unit, scale, py_bench, target) = if size == 64 {
                    (
                        "msgs/s",
                        1.0,
                        format!("send_bytes_tput_msgps_{kind}"),
                        Some(Target::raw(0.7)),
                    )
                } else {
                    let t = (size == 1 << 20).then_some(Target::raw(0.8));
                    (
                        "MB/s",
                        size as f64 / 1e6,
                        format!("send_bytes_tput_MBps_{kind}"),
                        t,
                    )
                };
                t.rows.push(Row {
                    name: format!("send_bytes {label}, {kind}{sfx}"),
                    unit,
                    kind: Kind::Rate,
                    mp: mp.map(|r| r * scale),
                    cpython: py(python, &py_bench, &format!("{label}{sfx}")),
                    raw: raw.map(|r| r * scale),
                    raw_what: "write(2)/read(2) loop".into(),
                    target,
                    other: None,
                });
            }
        }
    }
    t
}
