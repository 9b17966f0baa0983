//! The Pool API gives what sequential code gives (CPython's test_apply,
//! test_map, test_starmap, test_imap, test_imap_unordered, test_async, ...).

use std::sync::mpsc;
use std::time::Duration;

use mp_pool::Error;
use mp_proc::StartMethod;
use mp_testkit::guard;

use crate::tasks::{add, gated, name, square};

mp_testkit::for_each_method!(
    map_and_starmap_match_sequential_code,
    map_results_are_in_input_order_whatever_the_chunk_size,
    an_empty_input_gives_an_empty_result,
    apply_and_apply_async_return_the_value,
    get_timeout_expires_and_the_result_can_be_fetched_later,
    callbacks_run_once_before_get_returns,
    error_callbacks_get_the_error,
    imap_yields_in_order_and_imap_unordered_yields_everything,
    workers_are_named_after_the_start_method,
    big_arguments_and_results_flow_both_ways_at_once,
);

fn map_and_starmap_match_sequential_code(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let expected: Vec<u64> = (0..1000).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..1000).unwrap(), expected);
    assert_eq!(pool.map_async(square, 0..1000).get().unwrap(), expected);
    let f: fn(u64, u64) -> u64 = add;
    let pairs: Vec<(u64, u64)> = (0..100).map(|i| (i, 2 * i)).collect();
    let sums: Vec<u64> = (0..100).map(|i| 3 * i).collect();
    assert_eq!(pool.starmap(f, pairs.clone()).unwrap(), sums);
    assert_eq!(pool.starmap_async(f, pairs).get().unwrap(), sums);
    pool.close();
    pool.join().unwrap();
}

fn map_results_are_in_input_order_whatever_the_chunk_size(method: StartMethod) {
    let _g = guard();
    let pool = crate::builder(method, 3).build().unwrap();
    let expected: Vec<u64> = (0..500).map(|x| x * x).collect();
    for chunksize in [1, 2, 7, 64, 499, 500, 10_000] {
        assert_eq!(
            pool.map_chunked(square, 0..500, chunksize).unwrap(),
            expected,
            "chunksize {chunksize}"
        );
    }
    assert!(matches!(
        pool.map_chunked(square, 0..5, 0),
        Err(Error::InvalidArgument { .. })
    ));
}

fn an_empty_input_gives_an_empty_result(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    assert_eq!(pool.map(square, []).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.map_chunked(square, [], 1).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.imap(square, []).count(), 0);
    assert_eq!(pool.imap_unordered(square, []).count(), 0);
    let r = pool.map_async(square, []);
    assert!(r.ready());
    assert!(r.successful().unwrap());
}

fn apply_and_apply_async_return_the_value(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let results: Vec<_> = (0..20).map(|i| pool.apply_async(square, i)).collect();
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.wait(None));
        assert!(r.ready());
        assert!(r.successful().unwrap());
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
}

fn get_timeout_expires_and_the_result_can_be_fetched_later(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    let r = pool.apply_async(gated, 7);
    gate.started.get().unwrap();
    let early = r.get_timeout(Duration::from_millis(20));
    assert!(matches!(early, Err(Error::Timeout)), "{early:?}");
    assert!(!r.ready());
    assert!(!r.wait(Some(Duration::ZERO)));
    assert!(matches!(r.successful(), Err(Error::NotReady)));
    gate.go.set();
    assert_eq!(r.get_timeout(Duration::from_secs(60)).unwrap(), 7);
    // Again: get_timeout does not consume the result.
    assert_eq!(r.get_timeout(Duration::ZERO).unwrap(), 7);
    assert!(r.successful().unwrap());
    assert_eq!(r.get().unwrap(), 7);
}

fn callbacks_run_once_before_get_returns(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let r = pool
        .apply_async(square, 9)
        .on_success(move |v| tx.send(format!("apply {v}")).unwrap())
        .on_error(|e| panic!("no error expected: {e}"));
    assert_eq!(r.get().unwrap(), 81);
    // CPython runs the callback before it sets the result: it is there now.
    assert_eq!(rx.try_recv().unwrap(), "apply 81");
    let r = pool
        .map_async(square, 0..4)
        .on_success(move |v| tx2.send(format!("map {v:?}")).unwrap());
    assert_eq!(r.get().unwrap(), [0, 1, 4, 9]);
    assert_eq!(rx.try_recv().unwrap(), "map [0, 1, 4, 9]");
    // Each ran once, and the senders are gone with the callbacks.
    assert!(matches!(rx.recv(), Err(mpsc::RecvError)));
}

fn fails(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

fn error_callbacks_get_the_error(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let r = pool
        .map_async(fails, 0..10)
        .on_success(|_| panic!("the map must fail"))
        .on_error(move |e| tx.send(e.to_string()).unwrap());
    assert!(r.wait(None));
    assert!(!r.successful().unwrap());
    assert!(
        matches!(r.get(), Err(Error::Panicked { message }) if message == "three is not allowed")
    );
    assert_eq!(
        rx.try_recv().unwrap(),
        "the task panicked: three is not allowed"
    );
    // A callback that itself panics does not take the pool down.
    let r = pool.apply_async(square, 2).on_success(move |v| {
        tx2.send(v.to_string()).unwrap();
        panic!("a callback that panics");
    });
    assert_eq!(r.get().unwrap(), 4);
    assert_eq!(rx.recv().unwrap(), "4");
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
}

fn imap_yields_in_order_and_imap_unordered_yields_everything(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let expected: Vec<u64> = (0..300).map(|x| x * x).collect();
    let got: Vec<u64> = pool.imap(square, 0..300).map(Result::unwrap).collect();
    assert_eq!(got, expected);
    let got: Vec<u64> = pool
        .imap_chunked(square, 0..300, 7)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, expected);
    for chunksize in [1, 10] {
        let mut got: Vec<u64> = pool
            .imap_unordered_chunked(square, 0..300, chunksize)
            .map(Result::unwrap)
            .collect();
        got.sort_unstable();
        assert_eq!(got, expected);
    }
    let mut got: Vec<u64> = pool
        .imap_unordered(square, 0..300)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, expected);
}

fn workers_are_named_after_the_start_method(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let prefix = match method {
        StartMethod::Fork => "ForkPoolWorker-",
        StartMethod::Spawn => "SpawnPoolWorker-",
        StartMethod::Forkserver => "ForkServerPoolWorker-",
    };
    let names = pool.map_chunked(name, vec![(); 50], 1).unwrap();
    for n in names {
        assert!(n.starts_with(prefix), "{n} is not a {prefix}N");
    }
}

fn echo(v: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    v
}

/// Tasks and outcomes of a megabyte each, many of them in flight: the pool
/// writes tasks while the workers write outcomes, and neither side may
/// wait on the other's full buffer.
fn big_arguments_and_results_flow_both_ways_at_once(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let items: Vec<serde_bytes::ByteBuf> = (0..2000u32)
        .map(|i| serde_bytes::ByteBuf::from(vec![i as u8; 16 << 10]))
        .collect();
    for chunksize in [1, 8] {
        let got = pool.map_chunked(echo, items.clone(), chunksize).unwrap();
        assert_eq!(got, items);
    }
    let got: Vec<serde_bytes::ByteBuf> = pool
        .imap_unordered(echo, items.clone())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), items.len());
}
