//! Issue 17's results on a pool of threads: `IMap::next_timeout`, the
//! bounded window of `imap_buffered`, `AsyncResult` awaited as a future
//! (polling never runs a task on the executor's thread) and
//! `AsyncResult::cancel`.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mp_dummy::{Event, ThreadPool};
use mp_pool::Error;
use mp_testkit::guard;

/// A deadline only so that a bug shows as a failure instead of a hang.
const LONG: Duration = Duration::from_secs(120);

/// Unparks the thread that polls.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Counts its wakes.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `f` on this thread until it is ready, parking between polls: only
/// the pool's wake-up makes progress (the deadline is a guard against a
/// lost wake, which shows as `Err`).
fn block_on<F: Future>(f: F) -> Result<F::Output, &'static str> {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = mp_proc::plumbing::deadline_after(LONG).expect("a near deadline");
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Ok(v);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("never woken");
        }
        std::thread::park_timeout(left);
    }
}

#[test]
fn next_timeout_times_out_then_gives_the_same_item() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    let go = Event::new().unwrap();
    let gate = go.clone();
    let mut it = pool.imap(
        move |x: u32| {
            gate.wait(None).unwrap();
            x
        },
        0..4,
    );
    assert!(matches!(
        it.next_timeout(Duration::ZERO),
        Some(Err(Error::Timeout))
    ));
    assert!(matches!(
        it.next_timeout(Duration::from_millis(10)),
        Some(Err(Error::Timeout))
    ));
    go.set();
    let mut got = Vec::new();
    while let Some(r) = it.next_timeout(LONG) {
        got.push(r.unwrap());
    }
    assert_eq!(got, [0, 1, 2, 3]);
}

#[test]
fn a_buffered_imap_pulls_at_most_buffersize_tasks_ahead() {
    let _g = guard();
    let pool = ThreadPool::new(Some(3)).unwrap();
    for (ordered, chunksize, buffersize) in [(true, 1, 2), (false, 1, 2), (true, 4, 2)] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let input = (0u64..100).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let it = if ordered {
            pool.imap_buffered(|x: u64| x * x, input, chunksize, buffersize)
        } else {
            pool.imap_unordered_buffered(|x: u64| x * x, input, chunksize, buffersize)
        };
        let window = chunksize * buffersize;
        let mut got = Vec::new();
        for r in it {
            got.push(r.unwrap());
            let ahead = pulled.load(Ordering::SeqCst) - got.len();
            assert!(ahead <= window, "{ahead} items ahead, window {window}");
        }
        got.sort_unstable();
        assert_eq!(got, (0..100).map(|x| x * x).collect::<Vec<u64>>());
    }
    let mut zero = pool.imap_buffered(|x: u64| x, 0..3, 1, 0);
    assert!(matches!(
        zero.next(),
        Some(Err(Error::InvalidArgument { .. }))
    ));
}

#[test]
fn awaited_results_of_a_thread_pool_run_on_its_workers() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    let me = std::thread::current().id();
    let r = pool.apply_async(move |x: u64| (x * x, std::thread::current().id() != me), 7);
    assert_eq!(block_on(r.into_future()).unwrap().unwrap(), (49, true));
    let m = pool.map_async(
        move |x: u64| (x + 1, std::thread::current().id() != me),
        0..50,
    );
    let got = block_on(m.into_future()).unwrap().unwrap();
    assert!(
        got.iter().all(|&(_, elsewhere)| elsewhere),
        "a task ran on the executor's thread"
    );
    assert_eq!(
        got.iter().map(|&(v, _)| v).collect::<Vec<_>>(),
        (1..51).collect::<Vec<_>>()
    );
    // Not serializable values are fine.
    let rc = pool.apply_async(|_: ()| Box::new(5u8), ());
    assert_eq!(*block_on(rc.into_future()).unwrap().unwrap(), 5);
}

#[test]
fn a_dropped_future_of_a_thread_pool_does_not_cancel_and_termination_wakes() {
    let _g = guard();
    let pool = ThreadPool::new(Some(1)).unwrap();
    let go = Event::new().unwrap();
    let (ran, done) = mpsc::channel();
    let gate = go.clone();
    let mut fut = pool
        .apply_async(
            move |x: u32| {
                gate.wait(None).unwrap();
                ran.send(x).unwrap();
            },
            3,
        )
        .into_future();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    assert!(
        Pin::new(&mut fut)
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    drop(fut);
    go.set();
    assert_eq!(done.recv_timeout(LONG).unwrap(), 3);
    assert_eq!(count.0.load(Ordering::SeqCst), 0);

    go.clear();
    let gate = go.clone();
    let mut blocked = pool
        .apply_async(
            move |_: ()| {
                gate.wait(None).unwrap();
            },
            (),
        )
        .into_future();
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut blocked).poll(&mut cx).is_pending());
    let mut queued = pool.apply_async(|x: u32| x, 1).into_future();
    assert!(Pin::new(&mut queued).poll(&mut cx).is_pending());
    pool.terminate();
    // Both fail at once (the running closure cannot be stopped, but its
    // call is over) and their futures wake.
    assert!(mp_testkit::wait_until(LONG, || count
        .0
        .load(Ordering::SeqCst)
        >= 2));
    assert!(matches!(
        Pin::new(&mut queued).poll(&mut cx),
        Poll::Ready(Err(Error::Terminated))
    ));
    assert!(matches!(
        Pin::new(&mut blocked).poll(&mut cx),
        Poll::Ready(Err(Error::Terminated))
    ));
    go.set();
    pool.join().unwrap();
}

#[test]
fn a_queued_call_of_a_thread_pool_is_cancelled_and_never_runs() {
    let _g = guard();
    let pool = ThreadPool::new(Some(1)).unwrap();
    let go = Event::new().unwrap();
    let (started, running) = mpsc::channel();
    let gate = go.clone();
    let blocker = pool.apply_async(
        move |_: ()| {
            started.send(()).unwrap();
            gate.wait(None).unwrap();
            1
        },
        (),
    );
    running.recv_timeout(LONG).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let queued = pool
        .apply_async(move |_: ()| flag.store(true, Ordering::SeqCst), ())
        .on_error(move |e| seen.lock().unwrap().push(e.to_string()));
    assert!(queued.cancel());
    assert!(!queued.cancel());
    assert!(!blocker.cancel());
    assert_eq!(
        *errors.lock().unwrap(),
        ["the call was cancelled before it started"]
    );
    assert!(matches!(queued.get(), Err(Error::Cancelled)));
    go.set();
    assert_eq!(blocker.get().unwrap(), 1);
    pool.close();
    pool.join().unwrap();
    assert!(!ran.load(Ordering::SeqCst), "the cancelled closure ran");
}
