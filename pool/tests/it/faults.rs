//! Faults, beyond CPython: a panicking task, a dying worker, values that do
//! not encode, bad settings, calls in the wrong state. Each fails what it
//! must, with an error that says why, and the pool goes on.

use mp_pool::{Error, Pool};
use mp_proc::StartMethod;
use mp_testkit::{exists, guard};
use serde::{Deserialize, Serialize};

use crate::tasks::{gated, pid, square};

mp_testkit::for_each_method!(
    a_task_that_panics_fails_alone_and_the_pool_goes_on,
    a_worker_that_dies_fails_only_its_task_and_is_replaced,
    a_worker_dying_in_a_long_map_fails_exactly_one_item,
    a_worker_killed_from_outside_fails_its_task,
    handles_in_task_arguments_reach_the_worker,
    values_that_do_not_encode_or_decode_fail_only_their_item,
    calls_after_close_or_terminate_are_errors,
    join_before_close_is_an_error,
    bad_settings_are_errors,
    a_panicking_initializer_breaks_the_pool_with_a_clear_error,
    terminate_stops_running_tasks,
    a_task_never_waits_behind_a_blocked_call_while_a_worker_is_idle,
);

fn unlucky(x: u64) -> u64 {
    if x == 13 {
        panic!("unlucky {x}");
    }
    x
}

fn a_task_that_panics_fails_alone_and_the_pool_goes_on(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    match pool.map_chunked(unlucky, 0..50, 1) {
        Err(Error::Panicked { message }) => assert_eq!(message, "unlucky 13"),
        other => panic!("expected the panic, got {other:?}"),
    }
    let outcomes: Vec<_> = pool.imap(unlucky, 0..50).collect();
    for (i, r) in outcomes.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v, i as u64),
            Err(Error::Panicked { message }) => {
                assert_eq!(i, 13);
                assert_eq!(message, "unlucky 13");
            }
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    // A panic in a chunk fails its item; the other items of the chunk are fine.
    let outcomes: Vec<_> = pool.imap_chunked(unlucky, 0..50, 10).collect();
    assert_eq!(outcomes.iter().filter(|r| r.is_err()).count(), 1);
    assert!(outcomes[13].is_err());
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

/// How a task makes its worker die.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
enum Death {
    Kill,
    Abort,
    Exit(i32),
}

fn die(how: Death) -> u32 {
    match how {
        Death::Kill => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        Death::Abort => std::process::abort(),
        Death::Exit(code) => mp_proc::exit(code),
    }
    0
}

fn a_worker_that_dies_fails_only_its_task_and_is_replaced(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    for (how, code) in [
        (Death::Kill, -libc::SIGKILL),
        (Death::Abort, -libc::SIGABRT),
        (Death::Exit(3), 3),
    ] {
        match pool.apply(die, how) {
            Err(Error::WorkerDied {
                worker,
                pid,
                exitcode,
            }) => {
                assert_eq!(exitcode, code, "{how:?}");
                assert!(worker.contains("PoolWorker-"), "{worker}");
                assert!(!exists(pid), "the dead worker {pid} was reaped");
            }
            other => panic!("{how:?}: expected WorkerDied, got {other:?}"),
        }
        // Replaced: the pool still runs everything, on two workers.
        assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
    }
    assert_eq!(pool.processes(), 2);
    pool.close();
    pool.join().unwrap();
}

fn square_or_die(x: u64) -> u64 {
    if x == 20 {
        die(Death::Kill);
    }
    x * x
}

fn a_worker_dying_in_a_long_map_fails_exactly_one_item(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    // The dying worker held tasks it had not started and some it had
    // finished without reporting yet: those run again, only item 20 fails.
    let outcomes: Vec<_> = pool.imap_chunked(square_or_die, 0..200, 1).collect();
    assert_eq!(outcomes.len(), 200);
    for (i, r) in outcomes.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v, (i * i) as u64),
            Err(Error::WorkerDied { exitcode, .. }) => {
                assert_eq!(i, 20);
                assert_eq!(exitcode, -libc::SIGKILL);
            }
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    assert!(matches!(
        pool.map_chunked(square_or_die, 0..200, 1),
        Err(Error::WorkerDied { .. })
    ));
}

fn a_worker_killed_from_outside_fails_its_task(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    let r = pool.apply_async(gated, 0);
    let worker = gate.started.get().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match r.get() {
        Err(Error::WorkerDied { pid, exitcode, .. }) => {
            assert_eq!(pid, worker);
            assert_eq!(exitcode, -libc::SIGKILL);
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// Issue 15: a handle in a task's arguments travels as a ticket that the
/// worker redeems (it was refused before).
fn handles_in_task_arguments_reach_the_worker(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let q = mp_proc::Queue::<u8>::new().unwrap();
    q.put(7).unwrap();
    assert_eq!(pool.apply(handle_arg, q.clone()).unwrap(), 7);
}

fn handle_arg(q: mp_proc::Queue<u8>) -> u8 {
    q.get().unwrap()
}

/// Encodes unless it is `Refuses`.
#[derive(Debug, Clone, Copy)]
enum Arg {
    Fine(u64),
    Refuses,
}

impl Serialize for Arg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Fine(v) => s.serialize_u64(*v),
            Arg::Refuses => Err(serde::ser::Error::custom("this argument refuses")),
        }
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Arg::Fine)
    }
}

/// Encodes unless it is 3; decodes unless it is 5.
#[derive(Debug, PartialEq)]
struct Out(u64);

impl Serialize for Out {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 3 {
            return Err(serde::ser::Error::custom("this result refuses"));
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Out {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            5 => Err(serde::de::Error::custom("five is refused")),
            v => Ok(Out(v)),
        }
    }
}

fn out(a: Arg) -> Out {
    match a {
        Arg::Fine(v) => Out(v),
        Arg::Refuses => Out(1000),
    }
}

fn values_that_do_not_encode_or_decode_fail_only_their_item(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let args: Vec<Arg> = (0..10)
        .map(|i| if i == 7 { Arg::Refuses } else { Arg::Fine(i) })
        .collect();
    for chunksize in [1, 4] {
        let outcomes: Vec<_> = pool.imap_chunked(out, args.clone(), chunksize).collect();
        for (i, r) in outcomes.into_iter().enumerate() {
            match (i, r) {
                (3, Err(Error::Encoding { message })) => {
                    assert!(message.contains("this result refuses"), "{message}")
                }
                (5, Err(Error::Encoding { message })) => {
                    assert!(
                        message.contains("does not decode as it::faults::Out"),
                        "{message}"
                    )
                }
                (7, Err(Error::Encoding { message })) => {
                    assert!(message.contains("this argument refuses"), "{message}")
                }
                (i, Ok(v)) if ![3, 5, 7].contains(&i) => assert_eq!(v, Out(i as u64)),
                (i, r) => panic!("item {i}: {r:?}"),
            }
        }
        // map: the first error; the workers survive.
        assert!(matches!(
            pool.map_chunked(out, args.clone(), chunksize),
            Err(Error::Encoding { .. })
        ));
    }
    assert!(matches!(
        pool.apply(out, Arg::Refuses),
        Err(Error::Encoding { .. })
    ));
    assert_eq!(pool.apply(out, Arg::Fine(9)).unwrap(), Out(9));
}

fn calls_after_close_or_terminate_are_errors(method: StartMethod) {
    let _g = guard();
    for end in [Pool::close, Pool::terminate] {
        let pool = crate::pool(method);
        end(&pool);
        assert!(matches!(pool.apply(square, 1), Err(Error::NotRunning)));
        assert!(matches!(
            pool.map_async(square, 0..3).get(),
            Err(Error::NotRunning)
        ));
        assert!(matches!(
            pool.apply_async(square, 3).get(),
            Err(Error::NotRunning)
        ));
        let mut it = pool.imap(square, 0..3);
        assert!(matches!(it.next(), Some(Err(Error::NotRunning))));
        assert!(it.next().is_none());
        pool.join().unwrap();
        assert!(matches!(pool.apply(square, 1), Err(Error::NotRunning)));
    }
}

fn join_before_close_is_an_error(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    assert!(matches!(pool.join(), Err(Error::StillRunning)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    pool.close();
    pool.join().unwrap();
    // Joining again is fine.
    pool.join().unwrap();
}

fn bad_settings_are_errors(method: StartMethod) {
    let _g = guard();
    assert!(matches!(
        crate::builder(method, 0).build(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        crate::builder(method, 1).maxtasksperchild(0).build(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Pool::new(Some(0)),
        Err(Error::InvalidArgument { .. })
    ));
    let pool = crate::builder(method, 1).build().unwrap();
    assert!(matches!(
        pool.imap_chunked(square, 0..3, 0).next(),
        Some(Err(Error::InvalidArgument { .. }))
    ));
}

fn bad_init(_: ()) {
    panic!("the initializer cannot go on");
}

fn a_panicking_initializer_breaks_the_pool_with_a_clear_error(method: StartMethod) {
    let _g = guard();
    let pool = crate::builder(method, 2)
        .initializer(bad_init, ())
        .build()
        .unwrap();
    let expected = |r: Result<_, Error>| match r {
        Err(Error::InitializerFailed { message }) => {
            assert_eq!(message, "the initializer cannot go on")
        }
        other => panic!("expected InitializerFailed, got {other:?}"),
    };
    expected(pool.map(square, 0..10).map(|_| ()));
    // Every later call fails at once: no workers start and die in a loop.
    expected(pool.apply(square, 1).map(|_| ()));
    expected(pool.imap(square, 0..3).next().unwrap().map(|_| ()));
    pool.close();
    pool.join().unwrap();
}

fn terminate_stops_running_tasks(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    let r = pool.map_async_chunked(gated, 0..1000, 1);
    // Both workers are inside a task that would wait forever.
    gate.started.get().unwrap();
    gate.started.get().unwrap();
    let later = pool.apply_async(pid, 0);
    pool.terminate();
    pool.join().unwrap();
    assert!(matches!(r.get(), Err(Error::Terminated)));
    assert!(matches!(later.get(), Err(Error::Terminated)));
}

/// A worker that ran fast tasks is estimated to finish what it holds
/// quickly, and the scheduler gives such a worker tasks ahead. A task
/// submitted while that worker is blocked in a call must go to the idle
/// worker, not wait behind the call (it did: the first worker of the round
/// got it, and it waited until the gate opened).
fn a_task_never_waits_behind_a_blocked_call_while_a_worker_is_idle(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    // Both workers learn that tasks are fast.
    assert_eq!(pool.map_chunked(square, 0..2000, 10).unwrap().len(), 2000);
    let blocked = pool.apply_async(gated, 1);
    gate.started.get().unwrap();
    let quick = pool.apply_async(square, 7);
    // The deadline only turns the bug into a failure instead of a hang.
    let got = quick.get_timeout(std::time::Duration::from_secs(60));
    gate.go.set();
    assert_eq!(got.unwrap(), 49);
    assert_eq!(blocked.get().unwrap(), 1);
}
