//! Lazy input: `imap` and `imap_unordered` pull their input as results are
//! taken, a bounded number of items ahead (CPython reads it all first).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mp_pool::Error;
use mp_proc::StartMethod;
use mp_testkit::guard;

use crate::tasks::square;

mp_testkit::for_each_method!(
    imap_runs_over_an_endless_iterator,
    imap_reads_a_bounded_number_of_items_ahead,
    a_dropped_imap_leaves_the_pool_usable,
);

fn imap_runs_over_an_endless_iterator(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let first: Vec<u64> = pool
        .imap(square, 0u64..)
        .take(2000)
        .collect::<Result<_, Error>>()
        .unwrap();
    assert_eq!(first, (0..2000).map(|x| x * x).collect::<Vec<u64>>());
    let mut got: Vec<u64> = pool
        .imap_unordered_chunked(square, 0u64.., 16)
        .take(2000)
        .collect::<Result<_, Error>>()
        .unwrap();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 2000);
}

fn imap_reads_a_bounded_number_of_items_ahead(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    for (ordered, chunksize) in [(true, 1), (false, 1), (true, 10)] {
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = pulled.clone();
        let input = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut it = if ordered {
            pool.imap_chunked(square, input, chunksize)
        } else {
            pool.imap_unordered_chunked(square, input, chunksize)
        };
        for _ in 0..100 {
            it.next().unwrap().unwrap();
        }
        let ahead = pulled.load(Ordering::Relaxed) - 100;
        // The read-ahead is max(processes * 4 * chunksize, 256) items.
        let bound = (2 * 4 * chunksize as u64).max(256);
        assert!(ahead <= bound, "{ahead} items read ahead, bound {bound}");
        assert!(ahead > 0, "no read-ahead at all: the workers would idle");
    }
}

fn a_dropped_imap_leaves_the_pool_usable(method: StartMethod) {
    let _g = guard();
    let pool = crate::pool(method);
    let mut it = pool.imap(square, 0u64..);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    drop(it);
    assert_eq!(pool.apply(square, 6).unwrap(), 36);
    // What the dropped iterator had queued is dropped with it: close and
    // join do not wait for it.
    pool.close();
    pool.join().unwrap();
}
