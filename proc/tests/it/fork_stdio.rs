//! A fork taken while another thread of the parent holds Rust's stdout or
//! stderr lock: the child's copy of the lock must not stay held (its final
//! flush, or its first print, would wait forever). Found as a rare hang of
//! the manager suite under `cargo test`: the harness thread printing its
//! progress while a test forked a child.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(a_child_forked_while_another_thread_holds_stdio_finishes);

/// Writes through Rust's stdout and stderr themselves (`println!` in a test
/// goes to the harness's capture instead, which takes neither lock).
fn prints(n: u32) {
    let _ = writeln!(std::io::stdout(), "child {n}");
    let _ = writeln!(std::io::stderr(), "child {n}");
}

/// A thread holds the stdout and stderr locks nearly all the time while
/// this thread starts children that print and flush. Each child must end
/// (a deadline turns a hang into a failure). It cannot fail falsely; a fork
/// that happens not to land while the lock is held proves nothing, so it
/// starts many.
fn a_child_forked_while_another_thread_holds_stdio_finishes(method: StartMethod) {
    let _g = guard();
    let stop = Arc::new(AtomicBool::new(false));
    let holder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = std::io::stdout().lock();
                let err = std::io::stderr().lock();
                for _ in 0..2000 {
                    std::hint::spin_loop();
                }
                drop(err);
                drop(out);
            }
        })
    };
    let mut hung = None;
    for n in 0..60 {
        let mut p = Process::new(prints, n).start_method(method);
        p.start().unwrap();
        match p.join_timeout(Duration::from_secs(30)).unwrap() {
            Some(code) => assert_eq!(code, 0),
            None => {
                let _ = p.kill();
                let _ = p.join();
                hung = Some(n);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    holder.join().unwrap();
    let _ = std::io::stdout().flush();
    assert_eq!(hung, None, "a child hung on a stdio lock it inherited held");
}
