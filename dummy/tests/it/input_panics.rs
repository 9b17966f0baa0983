//! `ThreadPool`'s closure calls over an input that panics: CPython's
//! `test_map_handle_iterable_exception`,
//! `test_imap_handle_iterable_exception` and
//! `test_imap_unordered_handle_iterable_exception` (the fn-pointer `Pool`
//! on threads runs them in the conformance suite).

use mp_conformance::pool::{SpecialIterable, said_when, throwing};
use mp_dummy::ThreadPool;
use mp_testkit::guard;

fn sqr(x: u64) -> u64 {
    x * x
}

#[test]
fn an_input_panic_is_the_calls_error_in_order() {
    let _g = guard();
    let pool = ThreadPool::new(Some(2)).unwrap();
    // test_map_handle_iterable_exception
    said_when(Some(pool.map_chunked(sqr, throwing(1, None), 1)));
    said_when(Some(pool.map_chunked(sqr, throwing(1, None), 1)));
    said_when(Some(pool.map_chunked(sqr, throwing(10, Some(3)), 1)));
    said_when(Some(pool.map_chunked(sqr, SpecialIterable, 1)));
    said_when(Some(pool.map(sqr, SpecialIterable)));
    said_when(Some(pool.map_async(sqr, throwing(10, Some(3))).get()));
    // test_imap_handle_iterable_exception
    for (total, when, chunksize, before) in [
        (1, None, 1, 0),
        (10, Some(3), 1, 3),
        (20, Some(7), 2, 6),
        (20, Some(7), 4, 4),
    ] {
        let mut it = pool.imap_chunked(sqr, throwing(total, when), chunksize);
        for i in 0..before {
            assert_eq!(it.next().unwrap().unwrap(), i * i);
        }
        said_when(it.next());
        assert!(it.next().is_none(), "the iterator ends after the error");
    }
    // test_imap_unordered_handle_iterable_exception
    for (total, when, chunksize, before) in
        [(1, None, 1, 0), (10, Some(3), 1, 3), (20, Some(7), 2, 6)]
    {
        let mut it = pool.imap_unordered_chunked(sqr, throwing(total, when), chunksize);
        let mut got: Vec<u64> = Vec::new();
        let error = loop {
            match it.next() {
                Some(Ok(v)) => got.push(v),
                other => break other,
            }
        };
        said_when(error);
        got.sort_unstable();
        assert_eq!(got, (0..before).map(sqr).collect::<Vec<_>>());
        assert!(it.next().is_none(), "the iterator ends after the error");
    }
    // The pool goes on, and ends cleanly (the guard counts descriptors).
    assert_eq!(
        pool.map(sqr, 0..10).unwrap(),
        (0..10).map(sqr).collect::<Vec<_>>()
    );
    pool.close();
    pool.join().unwrap();
}
