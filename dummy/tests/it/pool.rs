//! `ThreadPool`: mp-pool's pool on threads, with closures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mp_dummy::ThreadPool;
use mp_testkit::guard;

#[test]
fn closures_capture_and_items_need_not_serialize() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let out = pool
        .map(
            move |x: u64| {
                c.fetch_add(1, Ordering::SeqCst);
                x * 2
            },
            0..1000,
        )
        .unwrap();
    assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(calls.load(Ordering::SeqCst), 1000);
    // Items and results that cannot be serialized: closures and channels.
    let items: Vec<Box<dyn Fn() -> u32 + Send>> =
        (0..10u32).map(|i| Box::new(move || i) as _).collect();
    let results = pool
        .map(|f: Box<dyn Fn() -> u32 + Send>| f(), items)
        .unwrap();
    assert_eq!(results, (0..10).collect::<Vec<_>>());
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    pool.apply(
        move |tx: std::sync::mpsc::Sender<u32>| tx.send(9).unwrap(),
        tx,
    )
    .unwrap();
    assert_eq!(rx.recv().unwrap(), 9);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_panicking_task_fails_its_call_and_the_pool_goes_on() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    let err = pool
        .map(|x: u32| if x == 7 { panic!("seven") } else { x }, 0..20)
        .unwrap_err();
    assert!(
        matches!(&err, mp_pool::Error::Panicked { message } if message.contains("seven")),
        "{err}"
    );
    assert!(pool.apply(|_: ()| panic!("boom"), ()).is_err());
    assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
    assert_eq!(pool.map(|x: u32| x, 0..5).unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn imap_is_lazy_and_ordered_and_imap_unordered_gets_all() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    let first: Vec<u64> = pool
        .imap(|x: u64| x * x, 0..)
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..10).map(|x| x * x).collect::<Vec<_>>());
    let mut all: Vec<u64> = pool
        .imap_unordered_chunked(|x: u64| x + 1, 0..500, 16)
        .map(Result::unwrap)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=500).collect::<Vec<_>>());
    let pending = pool.map_async(|x: u32| x * 3, 0..4);
    assert_eq!(pending.get().unwrap(), [0, 3, 6, 9]);
    let one = pool.apply_async(|s: String| s.len(), "four".to_owned());
    assert!(one.wait(None));
    assert_eq!(one.get().unwrap(), 4);
}

fn install(q: mp_dummy::Queue<&'static str>) {
    q.put("initialized").unwrap();
}

#[test]
fn the_initializer_gets_thread_handles_and_fn_tasks_work_too() {
    let _g = guard();
    let q = mp_dummy::Queue::new().unwrap();
    let pool = ThreadPool::from_builder(
        mp_pool::Pool::builder()
            .processes(2)
            .initializer(install, q.clone()),
    )
    .unwrap();
    fn square(x: u64) -> u64 {
        x * x
    }
    assert_eq!(pool.pool().map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    assert_eq!(q.get().unwrap(), "initialized");
    assert_eq!(q.get().unwrap(), "initialized");
    assert_eq!(pool.processes(), 2);
    pool.terminate();
    pool.join().unwrap();
}

/// While a caller waits in `get` (`map`, `apply`), it runs the chunks no
/// worker has started, as one of the pool's threads: never more than
/// `processes` tasks run at once, whichever threads run them.
#[test]
fn callers_that_help_never_run_more_than_processes_tasks_at_once() {
    let _g = guard();
    for n in [1, 2] {
        let pool = ThreadPool::new(Some(n)).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let task = move |x: u64| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            // Some work, so that tasks on different threads would overlap.
            let y = (0..2_000u64).fold(x, |a, b| std::hint::black_box(a ^ b));
            r.fetch_sub(1, Ordering::SeqCst);
            y
        };
        for _ in 0..20 {
            assert_eq!(pool.map_chunked(task.clone(), 0..64, 4).unwrap().len(), 64);
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=n).contains(&most),
            "{most} tasks at once in a pool of {n}"
        );
    }
}

/// A task may map on its own pool, even a pool of one thread that is busy
/// running it (CPython's `ThreadPool(1)` deadlocks here): the task runs the
/// inner map's chunks itself, under the place in the pool it has.
#[test]
fn a_task_may_map_on_its_own_pool() {
    let _g = guard();
    let pool = Arc::new(ThreadPool::new(Some(1)).unwrap());
    let p = pool.clone();
    let inner = pool
        .apply(move |k: u64| p.map(move |x: u64| x * k, 0..10).unwrap(), 3)
        .unwrap();
    assert_eq!(inner, (0..10).map(|x| x * 3).collect::<Vec<_>>());
    // And from a worker thread: the outer task waits behind another one.
    let p = pool.clone();
    let busy = pool.apply_async(|_: ()| 1u64, ());
    let outer = pool.apply_async(move |_: ()| p.map(|x: u64| x + 1, 0..5).unwrap(), ());
    assert_eq!(busy.get().unwrap(), 1);
    assert_eq!(outer.get().unwrap(), [1, 2, 3, 4, 5]);
}

thread_local! {
    static INITIALIZED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn mark(_: ()) {
    INITIALIZED.with(|i| i.set(true));
}

/// A pool with an initializer runs every task on its workers (which ran
/// the initializer), never on a caller that waits.
#[test]
fn with_an_initializer_every_task_runs_on_an_initialized_worker() {
    let _g = guard();
    let pool =
        ThreadPool::from_builder(mp_pool::Pool::builder().processes(2).initializer(mark, ()))
            .unwrap();
    let seen = pool
        .map(|_: u32| INITIALIZED.with(|i| i.get()), 0..1000)
        .unwrap();
    assert!(seen.iter().all(|&s| s));
    assert!(
        pool.apply(|_: ()| INITIALIZED.with(|i| i.get()), ())
            .unwrap()
    );
    assert!(!INITIALIZED.with(|i| i.get()));
}

/// Chunks that finish out of order (the first one waits for the last) still
/// give the results in input order.
#[test]
fn chunks_that_finish_out_of_order_give_results_in_order() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    for _ in 0..10 {
        let last_done = mp_dummy::Event::new().unwrap();
        let e = last_done.clone();
        let out = pool
            .map_chunked(
                move |x: u64| {
                    match x {
                        0 => assert!(e.wait(None).unwrap()),
                        31 => e.set(),
                        _ => {}
                    }
                    x * 10
                },
                0..32,
                4,
            )
            .unwrap();
        assert_eq!(out, (0..32).map(|x| x * 10).collect::<Vec<_>>());
    }
}

/// The names of this process's threads (`comm`, at most 15 bytes).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim_end().to_owned())
        .collect()
}

/// The pool's worker threads still listed: after `join` of a thread has
/// returned, the kernel may list it for a moment more (its tid is cleared,
/// which wakes the join, before the task is released), so a count above 0
/// is read again until it is 0 or a deadline passes (the deadline only
/// turns a leak into a failure instead of a hang).
fn workers_alive() -> usize {
    let count = || {
        thread_names()
            .iter()
            .filter(|n| n.starts_with("ThreadPoolWork"))
            .count()
    };
    mp_testkit::wait_until(std::time::Duration::from_secs(10), || count() == 0);
    count()
}

fn pid(_: u32) -> u32 {
    std::process::id()
}

fn thread_name(_: u32) -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

fn nothing(_: ()) {}

/// mp-pool's `Pool` over `ThreadContext` runs on the thread transport: its
/// workers are threads of this process, with no scheduler thread between
/// them and the callers (the `mp-pool` thread of a process pool), and none
/// of them outlives the pool, whether it is dropped, closed or terminated,
/// or its workers were replaced (`maxtasksperchild`).
#[test]
fn a_pool_of_threads_has_its_workers_only_and_leaves_no_thread() {
    let _g = guard();
    assert_eq!(workers_alive(), 0);
    // With an initializer, every task runs on a worker (no caller helps).
    let pool = mp_pool::Pool::builder()
        .processes(3)
        .initializer(nothing, ())
        .context(mp_dummy::ThreadContext)
        .build()
        .unwrap();
    assert_eq!(pool.map(pid, 0..100).unwrap(), [std::process::id(); 100]);
    let names = pool.map_chunked(thread_name, 0..100, 1).unwrap();
    assert!(
        names.iter().all(|n| n.starts_with("ThreadPoolWorker-")),
        "{names:?}"
    );
    assert!(!thread_names().iter().any(|n| n == "mp-pool"));
    drop(pool);
    assert_eq!(workers_alive(), 0, "dropped");

    let pool = ThreadPool::from_builder(mp_pool::Pool::builder().processes(2).maxtasksperchild(1))
        .unwrap();
    assert_eq!(pool.map_chunked(|x: u32| x, 0..50, 1).unwrap().len(), 50);
    pool.close();
    pool.join().unwrap();
    assert_eq!(workers_alive(), 0, "closed and joined, after replacements");

    let pool = ThreadPool::new(Some(2)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let stuck = pool.apply_async(move |_: ()| rx.recv().is_ok(), ());
    let queued = pool.map_async(|x: u32| x, 0..10);
    pool.terminate();
    let _ = tx.send(()); // the task may never have started (then it is gone)
    pool.join().unwrap();
    assert_eq!(workers_alive(), 0, "terminated and joined");
    drop((stuck, queued));

    let pool = ThreadPool::new(Some(2)).unwrap();
    assert_eq!(pool.map(|x: u32| x, 0..10).unwrap().len(), 10);
    drop(pool);
    assert_eq!(workers_alive(), 0, "a ThreadPool dropped");
}

/// A `map` whose input says it has more items than it yields (a wrong
/// `size_hint`) still gives exactly the items it yielded.
#[test]
fn a_map_gets_what_its_input_yields_whatever_its_size_hint_says() {
    let _g = guard();
    struct Liar(std::ops::Range<u32>);
    impl Iterator for Liar {
        type Item = u32;
        fn next(&mut self) -> Option<u32> {
            self.0.next()
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (1000, Some(1000))
        }
    }
    let pool = ThreadPool::new(Some(2)).unwrap();
    assert_eq!(
        pool.map(|x: u32| x * 2, Liar(0..5)).unwrap(),
        [0, 2, 4, 6, 8]
    );
    assert!(pool.map(|x: u32| x, Liar(0..0)).unwrap().is_empty());
}

fn bad_init(_: ()) {
    panic!("the initializer cannot go on");
}

/// A panicking initializer breaks a pool of threads as it breaks a pool of
/// processes: every call fails with its message, none hangs.
#[test]
fn a_panicking_initializer_breaks_a_pool_of_threads() {
    let _g = guard();
    let pool = ThreadPool::from_builder(
        mp_pool::Pool::builder()
            .processes(2)
            .initializer(bad_init, ()),
    )
    .unwrap();
    let failed = |r: mp_pool::Result<Vec<u32>>| {
        matches!(r, Err(mp_pool::Error::InitializerFailed { message })
            if message == "the initializer cannot go on")
    };
    assert!(failed(pool.map(|x: u32| x, 0..10)));
    assert!(failed(pool.map(|x: u32| x, 0..10)), "and again");
    pool.terminate();
    pool.join().unwrap();
}
