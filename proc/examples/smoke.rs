//! A quick timing smoke test (temporary).
use mp_proc::{Process, StartMethod};
use std::time::Instant;

fn noop(_: ()) {}

fn main() {
    for m in StartMethod::ALL {
        let n = if m == StartMethod::Spawn { 50 } else { 300 };
        let mut p = Process::new(noop, ()).start_method(m);
        p.start().unwrap();
        p.join().unwrap();
        let t = Instant::now();
        for _ in 0..n {
            let mut p = Process::new(noop, ()).start_method(m);
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), 0);
        }
        println!("{m}: {:?} per start+join", t.elapsed() / n);
    }
    let t = Instant::now();
    for _ in 0..300 {
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            pid => unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            },
        };
    }
    println!("raw fork: {:?}", t.elapsed() / 300);
}
