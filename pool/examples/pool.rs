//! A tour of mp-pool: `cargo run -q -p mp-pool --example pool`.
//!
//! `map`, `imap` over an endless input, an `apply_async` with a callback, a
//! task that panics and a worker that dies: the pool reports both and goes on.

use mp_pool::{Error, Pool};

fn square(x: u64) -> u64 {
    x * x
}

fn fragile(x: u64) -> u64 {
    match x {
        3 => panic!("three is not allowed"),
        5 => mp_proc::exit(7), // the worker process ends in the middle of a task
        x => x + 100,
    }
}

fn main() -> Result<(), Error> {
    mp_proc::init();
    let pool = Pool::new(Some(2))?;

    let squares = pool.map(square, 0..10)?;
    println!("map:        {squares:?}");

    // Pulled lazily: an endless input works.
    let first: Vec<u64> = pool.imap(square, 1..).take(5).collect::<Result<_, _>>()?;
    println!("imap:       {first:?}");

    let r = pool
        .apply_async(square, 12)
        .on_success(|v| println!("callback:   apply_async(square, 12) = {v}"));
    r.get()?;

    // Each item has its own outcome: a panic and a dead worker fail only
    // their own item; the dead worker is replaced.
    for (i, r) in pool.imap_chunked(fragile, 0..8, 1).enumerate() {
        match r {
            Ok(v) => println!("fragile({i}) = {v}"),
            Err(e) => println!("fragile({i}) failed: {e}"),
        }
    }
    println!("after:      {:?}", pool.map(square, 0..4)?);

    pool.close();
    pool.join()
}
