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
