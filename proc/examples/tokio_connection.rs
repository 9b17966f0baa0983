//! An async program waiting on mp's descriptors without blocking its thread
//! (`cargo run -q -p mp-proc --example tokio_connection`).
//!
//! mp's `recv` and `join` block. A tokio program instead waits with
//! `tokio::io::unix::AsyncFd` for a descriptor to be readable: the
//! `Connection`'s, then takes what is there with `try_recv`, which never
//! blocks; and the child's `sentinel()`, which becomes readable when the
//! child ends (a pidfd under fork and spawn, the fork server's status pipe
//! under forkserver: epoll wakes on both). Only tokio's `rt`, `net` and
//! `macros` features are needed.
//!
//! Registering a descriptor with tokio is `unsafe` (tokio cannot check that
//! it stays open while registered): here each `AsyncFd` owns what it waits
//! on, a clone of the `Connection` or a duplicate of the sentinel.

use std::os::fd::OwnedFd;

use mp_proc::{Connection, Error, Process, StartMethod};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How many messages the child sends.
const N: u64 = 10_000;

/// Sends `0..N` as fast as it can, then ends (its end is the stream's).
fn producer(conn: Connection) {
    for i in 0..N {
        conn.send(&i).expect("the parent went away");
    }
}

/// Receives every message until the child hangs up; returns how many came.
async fn receive_all(conn: Connection) -> Result<u64, Box<dyn std::error::Error>> {
    // SAFETY: the `AsyncFd` owns `conn`, whose descriptor stays open (and
    // its `as_raw_fd` the same) until the `AsyncFd` drops it.
    let fd = unsafe { AsyncFd::register_with_interest(conn, Interest::READABLE)? };
    let mut count = 0;
    loop {
        // Drain BEFORE each wait. One read takes many small messages into
        // the connection's buffer, and bytes already read never make the
        // descriptor readable again: a loop that waited first would sleep
        // with messages in hand (for ever, after the peer's last one).
        // `try_recv` returns `None` only once the descriptor has nothing.
        loop {
            match fd.get_ref().try_recv::<u64>() {
                Ok(Some(n)) => {
                    assert_eq!(n, count, "in order, none lost");
                    count += 1;
                }
                Ok(None) => break,
                Err(Error::Eof) => return Ok(count),
                Err(e) => return Err(e.into()),
            }
        }
        // Nothing whole is here: wait for the descriptor. Clearing the
        // readiness is safe after a drain; tokio keeps any that came since.
        fd.readable().await?.clear_ready();
    }
}

/// Waits for the process behind `sentinel` (a duplicate of its sentinel) to end.
async fn ended(sentinel: OwnedFd) -> std::io::Result<()> {
    // SAFETY: the `AsyncFd` owns `sentinel`, open until the `AsyncFd` drops it.
    let fd = unsafe { AsyncFd::register_with_interest(sentinel, Interest::READABLE)? };
    fd.readable().await?.retain_ready();
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::Forkserver,
    ] {
        let (here, there) = mp_proc::pipe(false)?;
        let mut child = Process::new(producer, there).start_method(method);
        child.start()?;
        let sentinel = child.sentinel().expect("started").try_clone_to_owned()?;
        // Both at once on one thread: the messages, and the child's end.
        let (count, end) = tokio::join!(receive_all(here), ended(sentinel));
        end?;
        // It has ended: `join` does not wait.
        let code = child.join()?;
        println!(
            "{method}: received {} messages; the child exited with {code}",
            count?
        );
    }
    Ok(())
}
