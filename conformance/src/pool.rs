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
            pool_close_join_and_after, pool_initializer_and_maxtasksperchild);
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
