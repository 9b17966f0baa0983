//! `IMap::next_timeout` (Python's `it.next(timeout)`) and the bounded
//! in-flight window of `imap_buffered` (CPython 3.14's `buffersize`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_pool::Error;
use mp_proc::StartMethod;
use mp_testkit::guard;

use crate::tasks::{gated, square};

/// A deadline only so that a bug shows as a failure instead of a hang.
const LONG: Duration = Duration::from_secs(120);

mp_testkit::for_each_method!(
    next_timeout_times_out_then_gives_the_same_item,
    a_buffered_imap_pulls_at_most_buffersize_tasks_ahead,
    a_zero_buffersize_is_an_invalid_argument,
);

fn next_timeout_times_out_then_gives_the_same_item(method: StartMethod) {
    let _g = guard();
    let (pool, gate) = crate::gated(method, 2);
    for ordered in [true, false] {
        gate.go.clear();
        let mut it = if ordered {
            pool.imap(gated, 0..4)
        } else {
            pool.imap_unordered(gated, 0..4)
        };
        gate.started.get_timeout(LONG).unwrap();
        // Nothing can arrive while the gate is shut.
        assert!(matches!(
            it.next_timeout(Duration::ZERO),
            Some(Err(Error::Timeout))
        ));
        assert!(matches!(
            it.next_timeout(Duration::from_millis(10)),
            Some(Err(Error::Timeout))
        ));
        gate.go.set();
        let mut got = Vec::new();
        while let Some(r) = it.next_timeout(LONG) {
            got.push(r.unwrap());
        }
        if !ordered {
            got.sort_unstable();
        }
        // Nothing lost or skipped by the timeouts, in order for imap.
        assert_eq!(got, [0, 1, 2, 3], "ordered: {ordered}");
        assert!(it.next_timeout(Duration::ZERO).is_none());
        // The other three tasks' starts, for the next round.
        for _ in 0..3 {
            gate.started.get_timeout(LONG).unwrap();
        }
    }
    // No limit at all is a plain `next`.
    let mut it = pool.imap(square, 0..3);
    assert_eq!(it.next_timeout(Duration::MAX).unwrap().unwrap(), 0);
    assert_eq!(it.collect::<Result<Vec<_>, _>>().unwrap(), [1, 4]);
    pool.close();
    pool.join().unwrap();
}

fn a_buffered_imap_pulls_at_most_buffersize_tasks_ahead(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    for (ordered, chunksize, buffersize) in
        [(true, 1, 2), (false, 1, 2), (true, 3, 2), (false, 5, 1)]
    {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let input = (0u64..100).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let it = if ordered {
            pool.imap_buffered(square, input, chunksize, buffersize)
        } else {
            pool.imap_unordered_buffered(square, input, chunksize, buffersize)
        };
        let window = chunksize * buffersize;
        assert!(pulled.load(Ordering::SeqCst) <= window);
        let mut got = Vec::new();
        for r in it {
            got.push(r.unwrap());
            // The consumer holds: the workers have had all the time they
            // want, and still the input is only `window` items ahead.
            let ahead = pulled.load(Ordering::SeqCst) - got.len();
            assert!(ahead <= window, "{ahead} items ahead, window {window}");
        }
        if !ordered {
            got.sort_unstable();
        }
        assert_eq!(got, (0..100).map(|x| x * x).collect::<Vec<u64>>());
        assert_eq!(pulled.load(Ordering::SeqCst), 100);
    }
    pool.close();
    pool.join().unwrap();
}

fn a_zero_buffersize_is_an_invalid_argument(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    for ordered in [true, false] {
        let mut it = if ordered {
            pool.imap_buffered(square, 0..3, 1, 0)
        } else {
            pool.imap_unordered_buffered(square, 0..3, 1, 0)
        };
        assert!(
            matches!(it.next(), Some(Err(Error::InvalidArgument { what })) if what.contains("buffersize"))
        );
        assert!(it.next().is_none());
    }
    assert!(matches!(
        pool.imap_buffered(square, 0..3, 0, 1).next(),
        Some(Err(Error::InvalidArgument { .. }))
    ));
    // A huge window is as the default one (no overflow).
    let got = pool
        .imap_buffered(square, 0..3, usize::MAX, usize::MAX)
        .collect::<Result<Vec<_>, _>>();
    assert_eq!(got.unwrap(), [0, 1, 4]);
    pool.close();
    pool.join().unwrap();
}
