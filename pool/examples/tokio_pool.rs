//! A process pool driven from a tokio program:
//! `cargo run -q -p mp-pool --example tokio_pool --features async`
//! (without the feature, all but the stream).
//!
//! An `AsyncResult` is a future: awaiting it never blocks a runtime thread,
//! and mp-pool needs no runtime of its own. The pool's workers are
//! processes; the runtime only waits for their results.

use std::future::IntoFuture;
use std::time::Duration;

use mp_pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

/// A task slower than the caller is willing to wait for.
fn slow(seconds: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(seconds));
    seconds
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First thing, before the runtime starts its threads: a spawned worker
    // runs this same program and must become a worker here.
    mp_proc::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(Some(2))?;

    // Two calls in the pool at once, awaited together.
    let (one, many) = tokio::join!(
        pool.apply_async(square, 12).into_future(),
        pool.map_async(square, 0..10).into_future(),
    );
    println!("apply_async: {}", one?);
    println!("map_async: {:?}", many?);

    // The results of an imap as a stream, two tasks ahead of this consumer.
    #[cfg(feature = "async")]
    {
        use futures_core::Stream;
        let mut stream = pool.imap_buffered(square, 1..=5, 1, 2);
        let mut got = Vec::new();
        while let Some(r) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await
        {
            got.push(r?);
        }
        println!("imap stream: {got:?}");
    }

    // A deadline around a call. Dropping its future does not stop the task
    // (the pool's end does, below).
    let late = pool.apply_async(slow, 600).into_future();
    match tokio::time::timeout(Duration::from_millis(200), late).await {
        Ok(v) => println!("slow: {}", v?),
        Err(_) => println!("slow: no result within 200 ms"),
    }

    // Dropping the pool terminates it: the slow task's worker is ended.
    drop(pool);
    println!("done");
    Ok(())
}
