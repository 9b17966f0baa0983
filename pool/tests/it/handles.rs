//! Handles after start to and from pool workers (issue 15, item 1): a
//! handle in a task's arguments (`apply`, `map`) reaches the worker already
//! running and works there; a handle in a task's result reaches the caller
//! and works there. They travel as tickets through the pool's channels.

use mp_proc::{Connection, Error as ProcError, Event, Lock, Queue, StartMethod, Value, pipe};
use mp_testkit::guard;

/// A deadline only so that a bug shows as a failure instead of a hang.
const LONG: std::time::Duration = std::time::Duration::from_secs(120);

mp_testkit::for_each_method!(
    apply_with_a_queue_and_a_connection_in_the_arguments,
    map_with_a_handle_in_every_item,
    handles_in_results_reach_the_caller,
);

/// Puts `x * 2` on the caller's queue.
fn put_double((q, x): (Queue<u64>, u64)) -> u32 {
    q.put(x * 2).unwrap();
    std::process::id()
}

/// Says hello on the caller's pipe, and sets the event.
fn say_hello((conn, ev): (Connection, Event)) -> u32 {
    conn.send("hello from a worker").unwrap();
    ev.set();
    std::process::id()
}

fn apply_with_a_queue_and_a_connection_in_the_arguments(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    // The workers are running before any handle is sent.
    let workers = pool.map_chunked(crate::tasks::pid, 0..4, 1).unwrap();

    let q = Queue::new().unwrap();
    let pid = pool.apply(put_double, (q.clone(), 21)).unwrap();
    assert!(workers.contains(&pid), "ran in a running worker");
    assert_eq!(q.get_timeout(LONG).unwrap(), 42);

    let (r, w) = pipe(false).unwrap();
    let ev = Event::new().unwrap();
    pool.apply(say_hello, (w, ev.clone())).unwrap();
    assert!(ev.is_set());
    assert_eq!(r.recv::<String>().unwrap(), "hello from a worker");
    // No copy of the write end stayed in the caller or the worker.
    assert!(matches!(r.recv::<String>(), Err(ProcError::Eof)));

    let (here, there) = pipe(true).unwrap();
    let ev = Event::new().unwrap();
    pool.apply_async(say_hello, (there, ev.clone()))
        .get()
        .unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "hello from a worker");
    pool.close();
    pool.join().unwrap();
}

/// Adds `x` to the shared value under the lock, and puts `x` on the queue.
fn add_under_lock((q, lock, total, x): (Queue<u64>, Lock, Value<u64>, u64)) -> u64 {
    let g = lock.acquire().unwrap();
    total.set(total.get() + x);
    drop(g);
    q.put(x).unwrap();
    x
}

fn map_with_a_handle_in_every_item(method: StartMethod) {
    let _g = guard();
    let pool = crate::builder(method, 3).build().unwrap();
    let q = Queue::new().unwrap();
    let lock = Lock::new().unwrap();
    let total = Value::new(0u64).unwrap();
    let items: Vec<_> = (1..=30)
        .map(|x| (q.clone(), lock.clone(), total.clone(), x))
        .collect();
    let got = pool.map_chunked(add_under_lock, items, 4).unwrap();
    assert_eq!(got, (1..=30).collect::<Vec<u64>>());
    let mut put: Vec<u64> = (0..30).map(|_| q.get_timeout(LONG).unwrap()).collect();
    put.sort_unstable();
    assert_eq!(put, (1..=30).collect::<Vec<u64>>());
    assert_eq!(total.get(), 465, "every worker used the one lock and value");
    pool.close();
    pool.join().unwrap();
}

/// Makes a value holding `x`, and a one-way pipe with a message in it whose
/// write end it drops; returns the value and the read end.
fn make_handles(x: u64) -> (Value<u64>, Connection) {
    let v = Value::new(x).unwrap();
    let (r, w) = pipe(false).unwrap();
    w.send(&format!("made by {}", std::process::id())).unwrap();
    (v, r)
}

/// Reads the value and adds one.
fn bump(v: Value<u64>) -> u64 {
    *v.lock().unwrap() += 1;
    v.get()
}

fn handles_in_results_reach_the_caller(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let (v, r) = pool.apply(make_handles, 41).unwrap();
    assert_eq!(v.get(), 41);
    let said = r.recv::<String>().unwrap();
    assert!(said.starts_with("made by "), "{said}");
    assert_ne!(said, format!("made by {}", std::process::id()));
    assert!(matches!(r.recv::<String>(), Err(ProcError::Eof)));
    v.set(1);
    // And back to a worker: the caller's copy of what a worker made.
    assert_eq!(pool.apply(bump, v.clone()).unwrap(), 2);
    assert_eq!(v.get(), 2);

    let made = pool.map(make_handles, 0..6).unwrap();
    for (i, (v, r)) in made.iter().enumerate() {
        assert_eq!(v.get(), i as u64);
        assert!(r.recv::<String>().unwrap().starts_with("made by "));
    }
    pool.close();
    pool.join().unwrap();
}
