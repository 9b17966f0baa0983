//! mp-manager's benchmarks: dict set and get, list append, queue put+get,
//! and manager start + shutdown; beside CPython's `Manager()` (python3,
//! same run, fork context) and a raw Unix socket round trip (a forked echo
//! child in this very binary).

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use criterion::Criterion;
use mp_manager::SyncManager;
use mp_proc::StartMethod;
use support::{Kind, Row, Table, Target, median_per_iter, ms, pin, placements, py, us};

fn main() {
    mp_proc::init();
    // CPython's side runs with the fork context; so does ours.
    mp_proc::set_start_method(StartMethod::Fork).unwrap();
    let mut c = support::criterion();
    let placed = ops(&mut c);
    starts(&mut c);
    c.final_summary();
    let python = support::cpython("manager");
    table(&python, &placed).publish("4-manager");
}

/// The operations timed on one proxy each.
const OPS: [&str; 4] = ["dict_set", "dict_get", "list_append", "queue_put_get"];

/// Each op under each placement, and the raw socket round trip beside it;
/// returns the placements measured.
fn ops(c: &mut Criterion) -> Vec<&'static str> {
    let mut g = c.benchmark_group("manager");
    let mut placed = Vec::new();
    for (sfx, parent_cpu, child_cpu) in placements() {
        if sfx == "_xcpu" {
            continue; // the server's threads go where the scheduler puts them
        }
        placed.push(sfx);
        // The server process inherits the placement of the thread that
        // starts it.
        pin(parent_cpu);
        let m = SyncManager::start().unwrap();
        let d = m.dict::<u64, u64>().unwrap();
        let l = m.list::<u64>().unwrap();
        let q = m.queue::<u64>().unwrap();
        for i in 0..200 {
            d.insert(i % 100, i).unwrap();
        }
        for op in OPS {
            support::measure(&mut g, "manager", &format!("{op}{sfx}"), |n| {
                for i in 0..n {
                    match op {
                        "dict_set" => {
                            d.insert(i & 127, i).unwrap();
                        }
                        "dict_get" => {
                            std::hint::black_box(d.get(&(i & 127)).unwrap());
                        }
                        "list_append" => l.push(i).unwrap(),
                        _ => {
                            q.put(i).unwrap();
                            std::hint::black_box(q.get().unwrap());
                        }
                    }
                }
            });
        }
        drop((d, l, q));
        m.shutdown().unwrap();

        let (mine, theirs) = UnixStream::pair().unwrap();
        let (mine, theirs): (OwnedFd, OwnedFd) = (mine.into(), theirs.into());
        let pid = support::raw_echo(
            theirs.try_clone().unwrap(),
            theirs,
            child_cpu,
            [&mine, &mine],
        );
        support::measure(&mut g, "manager", &format!("raw_socket{sfx}"), |n| {
            support::round_trips(mine.as_fd(), mine.as_fd(), n)
        });
        drop(mine);
        nix::sys::wait::waitpid(pid, None).unwrap();
        pin(None);
    }
    g.finish();
    placed
}

fn starts(c: &mut Criterion) {
    let mut g = c.benchmark_group("start");
    for method in [
        StartMethod::Fork,
        StartMethod::Forkserver,
        StartMethod::Spawn,
    ] {
        support::measure(&mut g, "start", &format!("{method}"), |n| {
            for _ in 0..n {
                SyncManager::start_with(method).unwrap().shutdown().unwrap();
            }
        });
    }
    g.finish();
}

fn table(python: &support::Python, placed: &[&str]) -> Table {
    let mut t = Table::new(
        "mp-manager: SyncManager proxies (medians; CPython's Manager() via python3 in the same run)",
    );
    let cpython_of = [
        (
            "dict_set",
            "manager_dict_op",
            "__setitem__",
            "dict d[k] = v",
        ),
        ("dict_get", "manager_dict_op", "__getitem__", "dict d[k]"),
        ("list_append", "manager_list_op", "append", "list append"),
        (
            "queue_put_get",
            "manager_queue_op",
            "put+get",
            "queue put + get",
        ),
    ];
    for sfx in placed {
        let raw = us(median_per_iter(&format!("manager/raw_socket{sfx}")));
        for (op, bench, param, name) in cpython_of {
            let target = match op {
                "dict_set" | "dict_get" => Some(Target::raw(1.3)),
                _ => None,
            };
            t.rows.push(Row::new(
                format!("{name}{sfx}"),
                "us",
                Kind::Latency,
                us(median_per_iter(&format!("manager/{op}{sfx}"))),
                if sfx.is_empty() {
                    py(python, bench, param)
                } else {
                    None
                },
                raw,
                format!("1 B unix socket round trip{sfx}"),
                target,
            ));
        }
    }
    for method in [
        StartMethod::Fork,
        StartMethod::Forkserver,
        StartMethod::Spawn,
    ] {
        let fork = method == StartMethod::Fork;
        t.rows.push(Row::new(
            format!("Manager() start + shutdown, {method}"),
            "ms",
            Kind::Latency,
            ms(median_per_iter(&format!("start/{method}"))),
            if fork {
                py(python, "manager_start_shutdown", "start+shutdown")
            } else {
                None
            },
            None,
            String::new(),
            fork.then_some(Target::cpython(4.0)),
        ));
    }
    t
}
