//! mp-proc's sync benchmarks: queues, locks, shared values, and event and
//! semaphore ping-pong, each beside CPython (python3, same run) and beside a
//! raw loop in this binary (a pipe, a `sem_t` in shared memory).

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use mp_testkit::bench as support;

use std::hint::black_box;
use std::os::fd::AsFd;

use criterion::Criterion;
use mp_proc::{Event, Process, Queue, Semaphore, StartMethod, Value};
use nix::unistd::{ForkResult, fork, read, write};
use support::{Kind, Row, Table, Target, median_per_iter, pin, placements, py, timed, us};

fn main() {
    mp_proc::init();
    let mut c = support::criterion();
    queues(&mut c);
    locks(&mut c);
    pingpong(&mut c);
    c.final_summary();
    let mut python = support::cpython("queue,value");
    python.extend(support::cpython_script("mp_bench_sync.py", ""));
    table(&python).publish("2-sync");
}

fn exit_child() -> ! {
    // SAFETY: _exit ends a forked child at once.
    unsafe { nix::libc::_exit(0) }
}

// ---------------------------------------------------------------- queues

fn producer((q, go, n): (Queue<u64>, Event, u64)) {
    go.wait(None).unwrap();
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.put(u64::MAX).unwrap();
}

fn consumer(q: Queue<u64>) {
    while q.get().unwrap() != u64::MAX {}
}

fn queues(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.bench_function("mp_1to1", |b| {
        b.iter_custom(|iters| {
            let q = Queue::new().unwrap();
            let go = Event::new().unwrap();
            let mut p = Process::new(producer, (q.clone(), go.clone(), iters))
                .start_method(StartMethod::Fork);
            p.start().unwrap();
            let d = timed("queue/mp_1to1", iters, |_| {
                go.set();
                while q.get().unwrap() != u64::MAX {}
            });
            p.join().unwrap();
            d
        })
    });
    g.bench_function("mp_2to2", |b| {
        b.iter_custom(|iters| {
            let q = Queue::new().unwrap();
            let go = Event::new().unwrap();
            let half = iters.div_ceil(2);
            let mut ps: Vec<Process> = (0..2)
                .map(|_| {
                    Process::new(producer, (q.clone(), go.clone(), half))
                        .start_method(StartMethod::Fork)
                })
                .chain(
                    (0..2)
                        .map(|_| Process::new(consumer, q.clone()).start_method(StartMethod::Fork)),
                )
                .collect();
            for p in &mut ps {
                p.start().unwrap();
            }
            timed("queue/mp_2to2", iters, |_| {
                go.set();
                for p in &mut ps[2..] {
                    p.join().unwrap();
                }
            })
        })
    });
    // raw: 64-byte messages through a pipe, one write and one read each.
    g.bench_function("raw_pipe_64B", |b| {
        b.iter_custom(|iters| {
            let (r, w) = nix::unistd::pipe().unwrap();
            let (done_r, done_w) = nix::unistd::pipe().unwrap();
            // SAFETY: the child makes only read/write syscalls before _exit.
            match unsafe { fork() }.unwrap() {
                ForkResult::Child => {
                    drop(w);
                    drop(done_r);
                    let mut buf = [0u8; 64];
                    for _ in 0..iters {
                        let mut got = 0;
                        while got < 64 {
                            match read(r.as_fd(), &mut buf[got..]) {
                                Ok(0) | Err(_) => exit_child(),
                                Ok(n) => got += n,
                            }
                        }
                    }
                    let _ = write(done_w.as_fd(), b"k");
                    exit_child()
                }
                ForkResult::Parent { child } => {
                    drop((r, done_w));
                    let d = timed("queue/raw_pipe_64B", iters, |n| {
                        let msg = [7u8; 64];
                        for _ in 0..n {
                            write(w.as_fd(), &msg).unwrap();
                        }
                        read(done_r.as_fd(), &mut [0u8; 1]).unwrap();
                    });
                    nix::sys::wait::waitpid(child, None).unwrap();
                    d
                }
            }
        })
    });
    g.finish();
}

// ---------------------------------------------------------------- raw sem_t

/// A page of anonymous shared memory holding `sem_t`s (and a counter).
struct RawSems {
    base: *mut u8,
}

impl RawSems {
    fn new(values: &[u32]) -> RawSems {
        // SAFETY: a fresh anonymous shared page; each sem_t is initialised
        // process-shared before use and lives as long as the mapping.
        unsafe {
            let base = nix::libc::mmap(
                std::ptr::null_mut(),
                4096,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_SHARED | nix::libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert!(base as isize != -1);
            for (i, v) in values.iter().enumerate() {
                nix::libc::sem_init(base.add(64 * i).cast(), 1, *v);
            }
            RawSems { base }
        }
    }

    fn sem(&self, i: usize) -> *mut nix::libc::sem_t {
        // SAFETY: in the page, at a sem_t initialised by new.
        unsafe { self.base.add(64 * i).cast() }
    }

    fn wait(&self, i: usize) {
        // SAFETY: an initialised process-shared semaphore.
        while unsafe { nix::libc::sem_wait(self.sem(i)) } != 0 {}
    }

    fn post(&self, i: usize) {
        // SAFETY: as above.
        unsafe { nix::libc::sem_post(self.sem(i)) };
    }

    fn counter(&self) -> *mut u64 {
        // SAFETY: the last 8 bytes of the page, used only under sem 0.
        unsafe { self.base.add(4088).cast() }
    }
}

impl Drop for RawSems {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new.
        unsafe { nix::libc::munmap(self.base.cast(), 4096) };
    }
}

fn raw_locked_increments(sems: &RawSems, n: u64) {
    for _ in 0..n {
        sems.wait(0);
        // SAFETY: the counter is only touched with sem 0 held.
        unsafe { *sems.counter() += 1 };
        sems.post(0);
    }
}

// ---------------------------------------------------------------- locks and values

fn add((v, go, n): (Value<u64>, Event, u64)) {
    go.wait(None).unwrap();
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
}

fn locks(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock");
    let lock = mp_proc::Lock::new().unwrap();
    g.bench_function("mp_lock_uncontended", |b| {
        b.iter_custom(|iters| {
            timed("lock/mp_uncontended", iters, |n| {
                for _ in 0..n {
                    let held = lock.acquire().unwrap();
                    drop(black_box(held));
                }
            })
        })
    });
    let sems = RawSems::new(&[1]);
    g.bench_function("raw_sem_uncontended", |b| {
        b.iter_custom(|iters| {
            timed("lock/raw_uncontended", iters, |n| {
                for _ in 0..n {
                    sems.wait(0);
                    sems.post(0);
                }
            })
        })
    });
    for procs in [1u64, 2] {
        g.bench_function(format!("mp_value_{procs}proc"), |b| {
            b.iter_custom(|iters| {
                let v = Value::new(0u64).unwrap();
                let go = Event::new().unwrap();
                let each = iters.div_ceil(procs);
                let mut ps: Vec<Process> = (0..procs)
                    .map(|_| {
                        Process::new(add, (v.clone(), go.clone(), each))
                            .start_method(StartMethod::Fork)
                    })
                    .collect();
                for p in &mut ps {
                    p.start().unwrap();
                }
                let d = timed(&format!("value/mp_{procs}proc"), iters, |_| {
                    go.set();
                    for p in &mut ps {
                        p.join().unwrap();
                    }
                });
                assert_eq!(v.get(), each * procs);
                d
            })
        });
        g.bench_function(format!("raw_value_{procs}proc"), |b| {
            b.iter_custom(|iters| {
                let sems = RawSems::new(&[1, 0]);
                let each = iters.div_ceil(procs);
                let kids: Vec<nix::unistd::Pid> = (0..procs)
                    .map(|_| {
                        // SAFETY: the child waits on a semaphore, increments, and _exits.
                        match unsafe { fork() }.unwrap() {
                            ForkResult::Child => {
                                sems.wait(1);
                                raw_locked_increments(&sems, each);
                                exit_child()
                            }
                            ForkResult::Parent { child } => child,
                        }
                    })
                    .collect();
                timed(&format!("value/raw_{procs}proc"), iters, |_| {
                    for _ in 0..procs {
                        sems.post(1);
                    }
                    for k in &kids {
                        nix::sys::wait::waitpid(*k, None).unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- ping-pong

fn pong_events((a, b, cpu): (Event, Event, Option<usize>)) {
    if cpu.is_some() {
        pin(cpu);
    }
    loop {
        a.wait(None).unwrap();
        a.clear();
        b.set();
    }
}

fn pong_sems((a, b, cpu): (Semaphore, Semaphore, Option<usize>)) {
    if cpu.is_some() {
        pin(cpu);
    }
    loop {
        a.acquire().unwrap();
        b.release().unwrap();
    }
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");
    for (sfx, pcpu, ccpu) in placements() {
        pin(pcpu);
        let (a, b) = (Event::new().unwrap(), Event::new().unwrap());
        let mut p =
            Process::new(pong_events, (a.clone(), b.clone(), ccpu)).start_method(StartMethod::Fork);
        p.start().unwrap();
        let id = format!("pingpong/mp_event{sfx}");
        g.bench_function(format!("mp_event{sfx}"), |bn| {
            bn.iter_custom(|iters| {
                timed(&id, iters, |n| {
                    for _ in 0..n {
                        a.set();
                        b.wait(None).unwrap();
                        b.clear();
                    }
                })
            })
        });
        p.kill().unwrap();
        p.join().unwrap();

        let (a, b) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
        let mut p =
            Process::new(pong_sems, (a.clone(), b.clone(), ccpu)).start_method(StartMethod::Fork);
        p.start().unwrap();
        let id = format!("pingpong/mp_semaphore{sfx}");
        g.bench_function(format!("mp_semaphore{sfx}"), |bn| {
            bn.iter_custom(|iters| {
                timed(&id, iters, |n| {
                    for _ in 0..n {
                        a.release().unwrap();
                        b.acquire().unwrap();
                    }
                })
            })
        });
        p.kill().unwrap();
        p.join().unwrap();

        let sems = RawSems::new(&[0, 0]);
        // SAFETY: the child pins itself and loops on two semaphores until killed.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                if ccpu.is_some() {
                    pin(ccpu);
                }
                loop {
                    sems.wait(0);
                    sems.post(1);
                }
            }
            ForkResult::Parent { child } => child,
        };
        let id = format!("pingpong/raw_sem{sfx}");
        g.bench_function(format!("raw_sem{sfx}"), |bn| {
            bn.iter_custom(|iters| {
                timed(&id, iters, |n| {
                    for _ in 0..n {
                        sems.post(0);
                        sems.wait(1);
                    }
                })
            })
        });
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(child, None).unwrap();
        pin(None);
    }
    g.finish();
}

// ---------------------------------------------------------------- the table

fn rate(id: &str) -> Option<f64> {
    median_per_iter(id).map(|d| 1.0 / d.as_secs_f64())
}

fn table(python: &support::Python) -> Table {
    let mut t = Table::new(
        "mp-proc: queues, locks, values, ping-pong (medians; CPython via python3 in the same run)",
    );
    let raw_pipe = rate("queue/raw_pipe_64B");
    t.rows.push(Row::new(
        "Queue, 1 producer -> 1 consumer, u64 items",
        "items/s",
        Kind::Rate,
        rate("queue/mp_1to1"),
        py(python, "queue_tput", "Queue"),
        raw_pipe,
        "64 B pipe messages",
        Some(Target::raw(1.0)),
    ));
    t.rows.push(Row::new(
        "Queue, 2 producers -> 2 consumers",
        "items/s",
        Kind::Rate,
        rate("queue/mp_2to2"),
        py(python, "queue_tput_2to2", "Queue"),
        raw_pipe,
        "64 B pipe messages",
        None,
    ));
    t.rows.push(Row::new(
        "Lock acquire+release, uncontended",
        "ops/s",
        Kind::Rate,
        rate("lock/mp_uncontended"),
        py(python, "lock_uncontended", "Lock"),
        rate("lock/raw_uncontended"),
        "sem_t in shared memory",
        Some(Target::raw(0.5)),
    ));
    for procs in [1, 2] {
        t.rows.push(Row::new(
            format!("Value += 1 under its lock, {procs} process(es)"),
            "ops/s",
            Kind::Rate,
            rate(&format!("value/mp_{procs}proc")),
            py(python, "value_lock_incr", &format!("{procs}proc")),
            rate(&format!("value/raw_{procs}proc")),
            "sem_t lock in shared memory",
            None,
        ));
    }
    for (sfx, _, _) in placements() {
        let raw = us(median_per_iter(&format!("pingpong/raw_sem{sfx}")));
        for (kind, py_kind) in [("event", "Event"), ("semaphore", "Semaphore")] {
            t.rows.push(Row::new(
                format!("{py_kind} ping-pong between 2 processes{sfx}"),
                "us",
                Kind::Latency,
                us(median_per_iter(&format!("pingpong/mp_{kind}{sfx}"))),
                py(python, "pingpong_rtt", &format!("{py_kind}{sfx}")),
                raw,
                "sem_t ping-pong",
                Some(Target::raw(1.5)),
            ));
        }
    }
    t
}
