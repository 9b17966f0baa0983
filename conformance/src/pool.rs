//! The pool's behaviours every backend shares, written once, generic over
//! [`Context`]: mp-pool runs them for fork, spawn and forkserver, mp-dummy
//! for threads (its `ThreadPool` is this `Pool` over `ThreadContext`).
//! [`pool_conformance_tests!`](crate::pool_conformance_tests) makes a
//! `#[test]` of each.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use mp_proc::Context;

use mp_pool::{Error, Pool};

/// Generates one `#[test]` per pool conformance check for the context
/// `$ctx`; `$setup` is evaluated first and kept for the test's duration.
#[macro_export]
macro_rules! pool_conformance_tests {
    ($ctx:expr, $setup:expr) => {
        $crate::pool_conformance_tests!(@each $ctx, $setup;
            pool_map_apply_starmap, pool_imap_in_order_and_unordered, pool_a_panicking_task_fails_only_its_call,
            pool_close_join_and_after, pool_initializer_and_maxtasksperchild,
            pool_map_handle_iterable_exception, pool_imap_handle_iterable_exception,
            pool_imap_unordered_handle_iterable_exception, pool_starmap, pool_starmap_async);
    };
    (@each $ctx:expr, $setup:expr; $($name:ident),*) => {
        $( #[test] fn $name() { let _setup = $setup; $crate::pool::$name($ctx) } )*
    };
}

fn pool<C: Context>(ctx: C) -> Pool {
    Pool::builder().processes(2).context(ctx).build().unwrap()
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

pub fn pool_map_apply_starmap<C: Context>(ctx: C) {
    let p = pool(ctx);
    let expected: Vec<u64> = (0..500).map(square).collect();
    assert_eq!(p.map(square, 0..500).unwrap(), expected);
    assert_eq!(p.map_chunked(square, 0..500, 7).unwrap(), expected);
    assert_eq!(p.apply(square, 12).unwrap(), 144);
    assert_eq!(p.apply_async(square, 3).get().unwrap(), 9);
    let add: fn(u64, u64) -> u64 = add;
    assert_eq!(p.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    assert!(p.map(square, Vec::new()).unwrap().is_empty());
}

pub fn pool_imap_in_order_and_unordered<C: Context>(ctx: C) {
    let p = pool(ctx);
    let ordered: Vec<u64> = p.imap(square, 0..300).map(Result::unwrap).collect();
    assert_eq!(ordered, (0..300).map(square).collect::<Vec<_>>());
    let mut any: Vec<u64> = p
        .imap_unordered_chunked(square, 0..300, 10)
        .map(Result::unwrap)
        .collect();
    any.sort_unstable();
    assert_eq!(any, ordered);
    // Lazy: an endless input, taken as far as it is read.
    let first: Vec<u64> = p.imap(square, 0..).take(5).map(Result::unwrap).collect();
    assert_eq!(first, [0, 1, 4, 9, 16]);
}

fn fail_on_three(x: u32) -> u32 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

pub fn pool_a_panicking_task_fails_only_its_call<C: Context>(ctx: C) {
    let p = pool(ctx);
    match p.map(fail_on_three, 0..6) {
        Err(Error::Panicked { message }) => assert!(message.contains("three"), "{message}"),
        other => panic!("expected the task's panic, got {other:?}"),
    }
    let results: Vec<_> = p.imap(fail_on_three, 0..6).collect();
    assert!(
        results[3].is_err() && results[4].is_ok(),
        "only item 3 fails"
    );
    assert_eq!(
        p.map(fail_on_three, [1, 2]).unwrap(),
        [1, 2],
        "the pool goes on"
    );
}

pub fn pool_close_join_and_after<C: Context>(ctx: C) {
    let p = pool(ctx);
    assert!(matches!(p.join(), Err(Error::StillRunning)));
    let pending = p.map_async(square, 0..100);
    p.close();
    assert_eq!(pending.get().unwrap().len(), 100, "queued work finishes");
    p.join().unwrap();
    assert!(matches!(p.apply(square, 1), Err(Error::NotRunning)));
}

static SEEN: AtomicU32 = AtomicU32::new(0);

fn init(n: u32) {
    SEEN.store(n, Ordering::SeqCst);
}

fn seen(_: u32) -> u32 {
    SEEN.load(Ordering::SeqCst)
}

pub fn pool_initializer_and_maxtasksperchild<C: Context>(ctx: C) {
    let p = Pool::builder()
        .processes(2)
        .initializer(init, 7)
        .maxtasksperchild(2)
        .context(ctx)
        .build()
        .unwrap();
    // Every task runs in a worker that ran the initializer, however many
    // workers were replaced on the way.
    assert_eq!(p.map_chunked(seen, 0..20, 1).unwrap(), [7; 20]);
    p.close();
    p.join().unwrap();
}

/// CPython's `exception_throwing_generator(total, when)`: `0..total`, whose
/// item `when` panics (`None`: the first pull panics, CPython's `-1`).
pub fn throwing(total: u64, when: Option<u64>) -> impl Iterator<Item = u64> + Send + 'static {
    (0..total).inspect(move |&i| {
        if when.is_none_or(|w| w == i) {
            panic!("Somebody said when");
        }
    })
}

/// CPython's `SpecialIterable`: says it has one item, panics on the first pull.
#[derive(Debug)]
pub struct SpecialIterable;

impl Iterator for SpecialIterable {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        panic!("Somebody said when")
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (1, Some(1))
    }
}

/// `SayWhenError`, as mp reports it: the input's panic.
pub fn said_when<T: std::fmt::Debug>(r: Option<Result<T, Error>>) {
    match r {
        Some(Err(Error::InputPanicked { message })) => assert_eq!(message, "Somebody said when"),
        other => panic!("expected the input's panic, got {other:?}"),
    }
}

/// The pool is unharmed by its inputs' panics: it runs more work, then
/// closes and joins (the test's guard then finds no descriptor leaked).
fn still_usable(p: Pool) {
    let expected: Vec<u64> = (0..50).map(square).collect();
    assert_eq!(p.map(square, 0..50).unwrap(), expected);
    let lazy: Vec<u64> = p.imap(square, 0..50).map(Result::unwrap).collect();
    assert_eq!(lazy, expected);
    p.close();
    p.join().unwrap();
}

/// CPython's `_TestPool.test_map_handle_iterable_exception`.
pub fn pool_map_handle_iterable_exception<C: Context>(ctx: C) {
    let p = pool(ctx);
    // SayWhenError seen at the very first of the iterable; again, to make
    // sure it's reentrant.
    said_when(Some(p.map_chunked(square, throwing(1, None), 1)));
    said_when(Some(p.map_chunked(square, throwing(1, None), 1)));
    said_when(Some(p.map_chunked(square, throwing(10, Some(3)), 1)));
    said_when(Some(p.map_chunked(square, SpecialIterable, 1)));
    said_when(Some(p.map_chunked(square, SpecialIterable, 1)));
    // The same through map's default chunksize, map_async and starmap.
    said_when(Some(p.map(square, throwing(10, Some(3)))));
    said_when(Some(p.map_async(square, throwing(10, Some(3))).get()));
    let add: fn(u64, u64) -> u64 = add;
    said_when(Some(p.starmap(add, throwing(10, Some(3)).map(|i| (i, i)))));
    still_usable(p);
}

/// CPython's `_TestPool.test_imap_handle_iterable_exception`; beyond it,
/// the iterator ends after the error.
pub fn pool_imap_handle_iterable_exception<C: Context>(ctx: C) {
    let p = pool(ctx);
    // SayWhenError seen at the very first of the iterable; again, to make
    // sure it's reentrant.
    for _ in 0..2 {
        let mut it = p.imap_chunked(square, throwing(1, None), 1);
        said_when(it.next());
        assert!(it.next().is_none(), "the iterator ends after the error");
    }
    let mut it = p.imap_chunked(square, throwing(10, Some(3)), 1);
    for i in 0..3 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    said_when(it.next());
    assert!(it.next().is_none(), "the iterator ends after the error");
    // SayWhenError seen at start of problematic chunk's results.
    for (chunksize, before) in [(2, 6), (4, 4)] {
        let mut it = p.imap_chunked(square, throwing(20, Some(7)), chunksize);
        for i in 0..before {
            assert_eq!(it.next().unwrap().unwrap(), i * i);
        }
        said_when(it.next());
        assert!(it.next().is_none(), "the iterator ends after the error");
    }
    still_usable(p);
}

/// CPython's `_TestPool.test_imap_unordered_handle_iterable_exception`;
/// beyond it, the error comes after every item before the failing task,
/// then the iterator ends.
pub fn pool_imap_unordered_handle_iterable_exception<C: Context>(ctx: C) {
    let p = pool(ctx);
    for _ in 0..2 {
        let mut it = p.imap_unordered_chunked(square, throwing(1, None), 1);
        said_when(it.next());
        assert!(it.next().is_none(), "the iterator ends after the error");
    }
    for (total, when, chunksize, before) in [(10, 3, 1, 3), (20, 7, 2, 6)] {
        let mut it = p.imap_unordered_chunked(square, throwing(total, Some(when)), chunksize);
        let mut expected: Vec<u64> = (0..total).map(square).collect();
        let mut got = Vec::new();
        let error = loop {
            match it.next() {
                Some(Ok(value)) => {
                    let at = expected.iter().position(|&v| v == value);
                    let at = at.unwrap_or_else(|| panic!("unexpected or repeated value {value}"));
                    expected.remove(at);
                    got.push(value);
                }
                other => break other,
            }
        };
        said_when(error);
        got.sort_unstable();
        assert_eq!(got, (0..before).map(square).collect::<Vec<_>>());
        assert!(it.next().is_none(), "the iterator ends after the error");
    }
    still_usable(p);
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

/// `list(zip(range(n), range(n - 1, -1, -1)))`.
fn tuples(n: u64) -> Vec<(u64, u64)> {
    (0..n).zip((0..n).rev()).collect()
}

/// `list(itertools.starmap(mul, tuples))`.
fn products(tuples: &[(u64, u64)]) -> Vec<u64> {
    tuples.iter().map(|&(a, b)| a * b).collect()
}

/// CPython's `_TestPool.test_starmap`.
pub fn pool_starmap<C: Context>(ctx: C) {
    let p = pool(ctx);
    let mul: fn(u64, u64) -> u64 = mul;
    let t = tuples(10);
    assert_eq!(p.starmap(mul, t.clone()).unwrap(), products(&t));
    let t = tuples(100);
    assert_eq!(p.starmap_chunked(mul, t.clone(), 20).unwrap(), products(&t));
    assert!(matches!(
        p.starmap_chunked(mul, t, 0),
        Err(Error::InvalidArgument { .. })
    ));
}

/// CPython's `_TestPool.test_starmap_async`; and chunked.
pub fn pool_starmap_async<C: Context>(ctx: C) {
    let p = pool(ctx);
    let mul: fn(u64, u64) -> u64 = mul;
    let t = tuples(100);
    assert_eq!(p.starmap_async(mul, t.clone()).get().unwrap(), products(&t));
    for chunksize in [1, 7, 20, 100, 1000] {
        let r = p.starmap_async_chunked(mul, t.clone(), chunksize);
        assert_eq!(r.get().unwrap(), products(&t), "chunksize {chunksize}");
    }
}
