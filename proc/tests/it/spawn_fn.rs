//! `mp_proc::spawn`: return values, panics and early exits coming back.

use mp_proc::{Connection, Error, StartMethod, get_context};

use mp_testkit::{Undecodable, guard};

mp_testkit::for_each_method!(
    returns_the_value,
    a_panic_comes_back_with_its_message,
    exit_and_signals_come_back_as_no_result,
    large_values_come_back_whole,
    undecodable_args_come_back_as_decode_errors,
);

fn describe((name, n): (String, u32)) -> (String, Vec<u32>) {
    (format!("{name}:{n}"), (0..n).collect())
}

fn returns_the_value(method: StartMethod) {
    let _g = guard();
    let handle = get_context(method)
        .spawn(describe, ("x".to_string(), 4))
        .unwrap();
    assert!(handle.process().pid().is_some());
    assert_eq!(
        handle.join().unwrap(),
        ("x:4".to_string(), vec![0, 1, 2, 3])
    );
}

fn panicking(n: i32) -> i32 {
    if n > 0 {
        panic!("n was {n}, which is too many");
    }
    n
}

fn a_panic_comes_back_with_its_message(method: StartMethod) {
    let _g = guard();
    match get_context(method).spawn(panicking, 3).unwrap().join() {
        Err(Error::Panicked { name, message }) => {
            assert!(name.starts_with("Process-"), "{name}");
            assert_eq!(message, "n was 3, which is too many");
        }
        other => panic!("{other:?}"),
    }
}

fn exits(code: i32) -> u8 {
    mp_proc::exit(code)
}

fn waits_then_returns(conn: Connection) -> u8 {
    let _ = conn.recv_bytes();
    1
}

fn exit_and_signals_come_back_as_no_result(method: StartMethod) {
    let _g = guard();
    match get_context(method).spawn(exits, 9).unwrap().join() {
        Err(Error::NoResult { exitcode: 9, .. }) => {}
        other => panic!("{other:?}"),
    }
    let (here, there) = mp_proc::pipe(true).unwrap();
    let handle = get_context(method)
        .spawn(waits_then_returns, there)
        .unwrap();
    handle.process().kill().unwrap();
    match handle.join() {
        Err(Error::NoResult { exitcode, .. }) => assert_eq!(exitcode, -libc::SIGKILL),
        other => panic!("{other:?}"),
    }
    drop(here);
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn large_values_come_back_whole(method: StartMethod) {
    let _g = guard();
    let n = 3 << 20;
    let value = get_context(method).spawn(big, n).unwrap().join().unwrap();
    assert_eq!(value, big(n));
}

fn undecodable(_: Undecodable) -> u8 {
    unreachable!("the argument cannot be decoded")
}

fn undecodable_args_come_back_as_decode_errors(method: StartMethod) {
    let _g = guard();
    let handle = get_context(method).spawn(undecodable, Undecodable).unwrap();
    match handle.join() {
        Err(Error::Decode(e)) => assert!(!e.to_string().is_empty()),
        other => panic!("{other:?}"),
    }
}
