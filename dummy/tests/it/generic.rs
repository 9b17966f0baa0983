//! One generic function, with a queue and an event in its workers'
//! arguments, compiled for and run on processes and threads.

use mp_proc::{Context, EventLike, ProcessLike, QueueLike, StartMethod};
use mp_testkit::guard;

fn worker<C: Context>((q, go, id): (C::Queue<(u32, u64)>, C::Event, u32)) {
    go.wait(None).unwrap();
    let sum: u64 = (0..1000u64).map(|x| x * u64::from(id)).sum();
    q.put((id, sum)).unwrap();
}

/// Starts four workers that wait for `go`, then gathers their sums.
fn run<C: Context>(ctx: &C) -> Vec<(u32, u64)> {
    let q = ctx.queue().unwrap();
    let go = ctx.event().unwrap();
    let mut ps: Vec<C::Process> = (0..4)
        .map(|id| ctx.process(worker::<C>, (q.clone(), go.clone(), id)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    go.set().unwrap();
    let mut out: Vec<(u32, u64)> = (0..4).map(|_| q.get().unwrap()).collect();
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    out.sort_unstable();
    out
}

#[test]
fn the_same_generic_code_runs_on_threads_and_on_processes() {
    let _g = guard();
    let threads = run(&mp_dummy::ThreadContext::new());
    assert_eq!(threads.len(), 4);
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::Forkserver,
    ] {
        assert_eq!(run(&mp_proc::get_context(method)), threads, "{method}");
    }
}

/// Thread handles serialize as an id in this process: a pool initializer
/// gets them (as on processes), and another process cannot use the bytes.
#[test]
fn thread_handles_travel_by_id_and_not_across_processes() {
    let _g = guard();
    let q = mp_dummy::Queue::<u32>::new().unwrap();
    let bytes = mp_proc::codec::encode(&q).unwrap();
    let back: mp_dummy::Queue<u32> = mp_proc::codec::decode(&bytes).unwrap();
    back.put(3).unwrap();
    assert_eq!(q.get().unwrap(), 3, "the same queue");
    let elsewhere = mp_proc::codec::encode(&(std::process::id() + 1, 1u64)).unwrap();
    // (postcard keeps no message of a custom decoding error)
    assert!(mp_proc::codec::decode::<mp_dummy::Queue<u32>>(&elsewhere).is_err());
}
