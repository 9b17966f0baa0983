//! `Process::interrupt()` right after `start()` (issue 16): the `SIGINT` is
//! never lost, under fork, spawn and forkserver. Under forkserver the child
//! is forked by a server that must not die of Ctrl-C: a server that ignored
//! `SIGINT` handed that to its children, who dropped a `SIGINT` sent before
//! their bootstrap restored the default action.

use std::time::Duration;

use mp_proc::{Event, Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    an_interrupt_right_after_start_ends_the_child,
    an_interrupt_right_after_start_ends_or_reaches_the_handler,
);

/// How many children each test interrupts: the window (before the child's
/// bootstrap runs) is short, so one child may miss it.
const ROUNDS: usize = 20;

/// A deadline that only a lost signal reaches (the child then waits for
/// ever on its event).
const LONG: Duration = Duration::from_secs(120);

fn wait_for_ever(never: Event) {
    let _ = never.wait(None);
}

extern "C" fn exit_as_keyboard_interrupt(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(1) }
}

fn wait_with_int_handler(never: Event) {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: the handler only calls _exit, which is async-signal-safe.
    unsafe {
        signal(
            Signal::SIGINT,
            SigHandler::Handler(exit_as_keyboard_interrupt),
        )
    }
    .unwrap();
    wait_for_ever(never);
}

/// Starts a child running `target`, interrupts it at once, and returns its
/// exit code (`None`: still running at the deadline, the signal was lost;
/// the child is then killed).
fn interrupt_at_once(method: StartMethod, target: fn(Event)) -> Option<i32> {
    let never = Event::new().unwrap();
    let mut p = Process::new(target, never).start_method(method);
    p.start().unwrap();
    p.interrupt().unwrap();
    let code = p.join_timeout(LONG).unwrap();
    if code.is_none() {
        p.kill().unwrap();
        p.join().unwrap();
    }
    code
}

/// With no handler, the default action ends the child: `-SIGINT`.
fn an_interrupt_right_after_start_ends_the_child(method: StartMethod) {
    let _g = guard();
    for round in 0..ROUNDS {
        assert_eq!(
            interrupt_at_once(method, wait_for_ever),
            Some(-libc::SIGINT),
            "round {round}"
        );
    }
}

/// With a handler the target installs, the signal either comes before it
/// (the default action: `-SIGINT`) or runs it (exit code 1); never neither.
fn an_interrupt_right_after_start_ends_or_reaches_the_handler(method: StartMethod) {
    let _g = guard();
    for round in 0..ROUNDS {
        let code = interrupt_at_once(method, wait_with_int_handler);
        assert!(
            matches!(code, Some(1)) || code == Some(-libc::SIGINT),
            "round {round}: {code:?}"
        );
    }
}

fn exit_zero(_: ()) {}

/// Ctrl-C (a `SIGINT` to the whole process group) does not end the fork
/// server, as CPython's, and the `SIGINT` it holds pending never reaches
/// the children it forks afterwards.
#[test]
fn a_sigint_to_the_fork_server_neither_ends_it_nor_reaches_its_children() {
    let _g = guard();
    let server = super::scenarios::forkserver_pid().expect("the guard started the fork server");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    for _ in 0..2 {
        let mut p = Process::new(exit_zero, ()).start_method(StartMethod::Forkserver);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(
        super::scenarios::forkserver_pid(),
        Some(server),
        "the fork server was replaced"
    );
    let status = std::fs::read_to_string(format!("/proc/{server}/status")).unwrap();
    assert!(!status.contains("State:\tZ"), "the fork server died");
}

fn wait_for_ever_in<C: mp_proc::Context>(never: C::Event) {
    use mp_proc::EventLike;
    let _ = never.wait(None);
}

/// Code generic over a `Context` interrupts through `ProcessLike`.
fn interrupted_through_process_like<C: mp_proc::Context>(ctx: &C) -> Option<i32> {
    use mp_proc::ProcessLike;
    let mut p = ctx.process(wait_for_ever_in::<C>, ctx.event().unwrap());
    p.start().unwrap();
    p.interrupt().unwrap();
    let code = p.join_timeout(LONG).unwrap();
    if code.is_none() {
        p.kill().unwrap();
        p.join().unwrap();
    }
    code
}

#[test]
fn process_like_interrupt_sends_sigint_under_every_method() {
    let _g = guard();
    for method in StartMethod::ALL {
        assert_eq!(
            interrupted_through_process_like(&mp_proc::get_context(method)),
            Some(-libc::SIGINT),
            "{method}"
        );
    }
}
