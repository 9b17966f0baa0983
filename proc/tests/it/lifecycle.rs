//! The life of a process under each start method: start, join, exit codes,
//! signals, names, identity, and the errors of misuse.

use std::os::fd::AsFd;
use std::time::Duration;

use mp_proc::{Connection, Error, Process, StartMethod, pipe};

use mp_testkit::{Undecodable, Unserializable, guard};

mp_testkit::for_each_method!(
    returns_exit_code_zero,
    panic_gives_exit_code_one,
    exit_n_gives_n,
    abort_gives_minus_sigabrt,
    terminate_and_kill_give_minus_signal,
    misuse_is_a_clear_error,
    join_timeout_and_is_alive_follow_the_child,
    sentinel_becomes_readable_when_the_child_ends,
    names_count_up_and_nest,
    custom_name_and_identity_arrive_in_the_child,
    daemon_flag_arrives_and_forbids_children,
    active_children_lists_running_children_and_reaps,
    cpu_count_respects_the_affinity_mask,
    many_children_at_once,
    args_with_several_handles_arrive_intact,
    args_that_do_not_serialize_fail_in_start,
    args_that_do_not_deserialize_fail_in_the_child,
    child_can_start_children_of_every_method,
    a_dropped_running_process_is_reaped_when_it_ends,
);

/// Blocks until the other end of `conn` sends or closes.
fn block(conn: Connection) {
    let _ = conn.recv_bytes();
}

fn reply(conn: Connection) {
    conn.send(&"done").unwrap();
}

fn returns_exit_code_zero(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(reply, there).start_method(method);
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert!(p.pid().is_some());
    assert_eq!(here.recv::<String>().unwrap(), "done");
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert_eq!(p.join().unwrap(), 0, "join again returns the same code");
}

fn panics(_: ()) {
    panic!("deliberate panic in a child");
}

fn panic_gives_exit_code_one(method: StartMethod) {
    let _g = guard();
    let mut p = Process::new(panics, ()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
}

fn exits_with(code: i32) {
    mp_proc::exit(code);
}

fn exit_n_gives_n(method: StartMethod) {
    let _g = guard();
    for code in [0, 3, 8, 255] {
        let mut p = Process::new(exits_with, code).start_method(method);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), code);
    }
}

fn aborts(_: ()) {
    std::process::abort();
}

fn abort_gives_minus_sigabrt(method: StartMethod) {
    let _g = guard();
    let mut p = Process::new(aborts, ()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGABRT);
}

fn terminate_and_kill_give_minus_signal(method: StartMethod) {
    let _g = guard();
    let (_here, there) = pipe(true).unwrap();
    let mut p = Process::new(block, there.clone()).start_method(method);
    p.start().unwrap();
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGTERM);

    let mut p = Process::new(block, there).start_method(method);
    p.start().unwrap();
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGKILL);
    assert!(!p.is_alive());
}

fn misuse_is_a_clear_error(method: StartMethod) {
    let _g = guard();
    let mut p = Process::new(exits_with, 0).start_method(method);
    assert!(matches!(p.join(), Err(Error::NotStarted { .. })));
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(Error::NotStarted { .. })
    ));
    assert!(matches!(p.terminate(), Err(Error::NotStarted { .. })));
    assert!(matches!(p.kill(), Err(Error::NotStarted { .. })));
    assert!(p.sentinel().is_none());
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    assert_eq!(p.join().unwrap(), 0);
    match p.terminate() {
        Err(Error::AlreadyExited { name, exitcode: 0 }) => assert_eq!(name, p.get_name()),
        other => panic!("terminate of a finished process: {other:?}"),
    }
    assert!(matches!(p.kill(), Err(Error::AlreadyExited { .. })));
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
}

fn join_timeout_and_is_alive_follow_the_child(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(block, there).start_method(method);
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(p.is_alive());
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert_eq!(p.join_timeout(Duration::from_millis(20)).unwrap(), None);
    assert!(p.is_alive(), "join_timeout must not end the child");
    assert_eq!(p.exitcode(), None);
    drop(here);
    assert_eq!(p.join_timeout(Duration::from_secs(300)).unwrap(), Some(0));
    assert!(!p.is_alive());
}

fn sentinel_becomes_readable_when_the_child_ends(method: StartMethod) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(block, there).start_method(method);
    p.start().unwrap();
    let ready = |timeout: PollTimeout| {
        let mut fds = [PollFd::new(p.sentinel().unwrap(), PollFlags::POLLIN)];
        poll(&mut fds, timeout).unwrap() > 0
    };
    assert!(!ready(PollTimeout::ZERO));
    drop(here);
    assert!(ready(PollTimeout::NONE));
    assert_eq!(p.join().unwrap(), 0);
}

fn send_name(conn: Connection) {
    let me = mp_proc::current_process();
    let parent = mp_proc::parent_process().expect("a child has a parent");
    conn.send(&(
        me.name().to_string(),
        me.pid(),
        me.authkey().to_vec(),
        parent.name().to_string(),
        parent.pid(),
    ))
    .unwrap();
}

type Identity = (String, u32, Vec<u8>, String, u32);

fn names_count_up_and_nest(method: StartMethod) {
    let _g = guard();
    let a = Process::new(reply, pipe(true).unwrap().1);
    let b = Process::new(reply, pipe(true).unwrap().1);
    let na: u32 = a
        .get_name()
        .strip_prefix("Process-")
        .unwrap()
        .parse()
        .unwrap();
    let nb: u32 = b
        .get_name()
        .strip_prefix("Process-")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(nb, na + 1);

    let ctx = mp_proc::get_context(method);
    let c = ctx.process(reply, pipe(true).unwrap().1);
    let prefix = match method {
        StartMethod::Fork => "ForkProcess-",
        StartMethod::Spawn => "SpawnProcess-",
        StartMethod::Forkserver => "ForkServerProcess-",
    };
    assert!(c.get_name().starts_with(prefix), "{}", c.get_name());

    // A child's children are named after it: Process-N:M.
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(grandchild_names, (there, method)).start_method(method);
    p.start().unwrap();
    let (child_name, grandchild_name): (String, String) = here.recv().unwrap();
    assert_eq!(child_name, p.get_name());
    assert_eq!(grandchild_name, format!("{}:1", p.get_name()));
    assert_eq!(p.join().unwrap(), 0);
}

fn grandchild_names((conn, method): (Connection, StartMethod)) {
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(send_name, there).start_method(method);
    p.start().unwrap();
    let (name, ..): Identity = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    conn.send(&(mp_proc::current_process().name().to_string(), name))
        .unwrap();
}

fn custom_name_and_identity_arrive_in_the_child(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(send_name, there)
        .name("worker-7")
        .start_method(method);
    assert_eq!(p.get_name(), "worker-7");
    p.start().unwrap();
    let (name, pid, authkey, parent_name, parent_pid): Identity = here.recv().unwrap();
    assert_eq!(name, "worker-7");
    assert_eq!(Some(pid), p.pid());
    assert_eq!(
        authkey,
        mp_proc::current_process().authkey(),
        "the authkey is inherited"
    );
    assert_eq!(parent_name, "MainProcess");
    assert_eq!(
        parent_pid,
        std::process::id(),
        "the parent is this process, not a fork server"
    );
    assert_eq!(p.join().unwrap(), 0);
}

fn daemon_report((conn, method): (Connection, StartMethod)) {
    let me = mp_proc::current_process();
    let mut p = Process::new(reply, pipe(true).unwrap().1).start_method(method);
    let refused = matches!(p.start(), Err(Error::DaemonChildren));
    conn.send(&(me.daemon(), refused)).unwrap();
}

fn daemon_flag_arrives_and_forbids_children(method: StartMethod) {
    let _g = guard();
    for daemon in [false, true] {
        let (here, there) = pipe(true).unwrap();
        let mut p = Process::new(daemon_report, (there, method))
            .daemon(daemon)
            .start_method(method);
        assert_eq!(p.is_daemon(), daemon);
        p.start().unwrap();
        let (is_daemon, refused): (bool, bool) = here.recv().unwrap();
        assert_eq!(is_daemon, daemon);
        assert_eq!(refused, daemon, "only a daemon is refused children");
        assert_eq!(p.join().unwrap(), 0);
    }
}

fn active_children_lists_running_children_and_reaps(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut running = Process::new(block, there)
        .name("still-running")
        .start_method(method);
    running.start().unwrap();
    let (done_here, done_there) = pipe(true).unwrap();
    let mut done = Process::new(reply, done_there)
        .name("already-done")
        .start_method(method);
    done.start().unwrap();
    let done_pid = done.pid().unwrap();
    assert_eq!(done_here.recv::<String>().unwrap(), "done");
    // Wait until it has ended, without reaping it through the handle.
    drop(done_here);
    let mut sentinel = [nix::poll::PollFd::new(
        done.sentinel().unwrap(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut sentinel, nix::poll::PollTimeout::NONE).unwrap();
    let names: Vec<String> = mp_proc::active_children()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(names, ["still-running"]);
    assert!(
        !mp_testkit::zombies().contains(&done_pid),
        "active_children reaps"
    );
    assert_eq!(done.join().unwrap(), 0, "the exit code survives reaping");
    drop(here);
    assert_eq!(running.join().unwrap(), 0);
    assert!(mp_proc::active_children().is_empty());
}

fn cpu_count_on_one_cpu(conn: Connection) {
    let before = mp_proc::cpu_count();
    let mut one = nix::sched::CpuSet::new();
    one.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
    conn.send(&(before, mp_proc::cpu_count())).unwrap();
}

fn cpu_count_respects_the_affinity_mask(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(cpu_count_on_one_cpu, there).start_method(method);
    p.start().unwrap();
    let (before, after): (usize, usize) = here.recv().unwrap();
    assert_eq!(before, mp_proc::cpu_count());
    assert_eq!(after, 1);
    assert_eq!(p.join().unwrap(), 0);
}

fn echo_index((conn, i): (Connection, u32)) {
    conn.send(&i).unwrap();
}

fn many_children_at_once(method: StartMethod) {
    let _g = guard();
    let n = if method == StartMethod::Spawn { 8 } else { 40 };
    let (here, there) = pipe(true).unwrap();
    let mut procs: Vec<Process> = (0..n)
        .map(|i| Process::new(echo_index, (there.clone(), i)).start_method(method))
        .collect();
    drop(there);
    for p in &mut procs {
        p.start().unwrap();
    }
    let mut got: Vec<u32> = (0..n).map(|_| here.recv().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    for p in &mut procs {
        assert_eq!(p.join().unwrap(), 0);
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Bundle {
    label: String,
    numbers: Vec<u64>,
    input: Connection,
    output: Connection,
    same_output: Connection,
    nested: Option<Box<(Connection, bool)>>,
}

fn bundle_worker(b: Bundle) {
    let x: u64 = b.input.recv().unwrap();
    b.output
        .send(&(b.label.clone(), b.numbers.iter().sum::<u64>() + x))
        .unwrap();
    b.same_output.send(&"same descriptor").unwrap();
    let (conn, flag) = *b.nested.unwrap();
    conn.send(&flag).unwrap();
}

fn args_with_several_handles_arrive_intact(method: StartMethod) {
    let _g = guard();
    let (in_here, in_there) = pipe(false).unwrap();
    let (out_here, out_there) = pipe(false).unwrap();
    let (n_here, n_there) = pipe(true).unwrap();
    let bundle = Bundle {
        label: "bundle".into(),
        numbers: vec![1, 2, 3],
        input: in_here,
        output: out_there.clone(),
        same_output: out_there,
        nested: Some(Box::new((n_there, true))),
    };
    let mut p = Process::new(bundle_worker, bundle).start_method(method);
    p.start().unwrap();
    in_there.send(&100u64).unwrap();
    assert_eq!(
        out_here.recv::<(String, u64)>().unwrap(),
        ("bundle".to_string(), 106)
    );
    assert_eq!(out_here.recv::<String>().unwrap(), "same descriptor");
    assert!(n_here.recv::<bool>().unwrap());
    assert_eq!(p.join().unwrap(), 0);
    // The parent's copies went with the args: the child's exit is end of file.
    assert!(matches!(out_here.recv::<u8>(), Err(Error::Eof)));
}

fn take_unserializable(_: Unserializable) {}

fn args_that_do_not_serialize_fail_in_start(method: StartMethod) {
    let _g = guard();
    let mut p = Process::new(take_unserializable, Unserializable).start_method(method);
    match p.start() {
        Err(Error::Encode(e)) => assert!(e.to_string().contains("refuses"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(p.pid().is_none());
    assert!(mp_proc::active_children().is_empty());
}

fn take_undecodable(_: Undecodable) {
    unreachable!("the argument cannot be decoded");
}

fn args_that_do_not_deserialize_fail_in_the_child(method: StartMethod) {
    let _g = guard();
    let mut p = Process::new(take_undecodable, Undecodable).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
}

fn start_each_method(conn: Connection) {
    let mut codes = Vec::new();
    for method in StartMethod::ALL {
        let (here, there) = pipe(true).unwrap();
        let mut p = Process::new(reply, there).start_method(method);
        p.start().unwrap();
        let said: String = here.recv().unwrap();
        codes.push((method, said, p.join().unwrap()));
    }
    conn.send(&codes).unwrap();
}

fn child_can_start_children_of_every_method(method: StartMethod) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(start_each_method, there).start_method(method);
    p.start().unwrap();
    let codes: Vec<(StartMethod, String, i32)> = here.recv().unwrap();
    assert_eq!(codes.len(), 3);
    for (m, said, code) in codes {
        assert_eq!((said.as_str(), code), ("done", 0), "grandchild by {m}");
    }
    assert_eq!(p.join().unwrap(), 0);
    let _ = here.as_fd();
}

/// A target that lives in libc, not in this executable.
fn libc_target() -> fn(()) {
    let addr = libc::getpid as *const ();
    // SAFETY: the pointer is only given to start(), which must refuse it under
    // spawn and forkserver before anything calls it.
    unsafe { std::mem::transmute::<*const (), fn(())>(addr) }
}

#[test]
fn a_target_outside_the_executable_is_refused_by_spawn_and_forkserver() {
    let _g = guard();
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        let mut p = Process::new(libc_target(), ()).start_method(method);
        match p.start() {
            Err(Error::TargetNotInImage {
                what: "target",
                object,
                method: m,
                ..
            }) => {
                assert!(object.contains("libc"), "{object}");
                assert_eq!(m, method);
            }
            other => panic!("{method}: {other:?}"),
        }
        assert!(p.pid().is_none());
    }
}

#[test]
fn the_main_process_knows_itself() {
    let _g = guard();
    let me = mp_proc::current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id());
    assert!(!me.daemon());
    assert_eq!(me.authkey().len(), 32);
    assert_eq!(
        me.authkey(),
        mp_proc::current_process().authkey(),
        "one key per process"
    );
    let shown = format!("{me:?}");
    assert!(
        shown.contains("<hidden>") && !shown.contains(&format!("{:?}", me.authkey())),
        "{shown}"
    );
    assert!(mp_proc::parent_process().is_none());
    assert_eq!(
        mp_proc::get_context(StartMethod::Fork).get_start_method(),
        StartMethod::Fork
    );
}

fn a_dropped_running_process_is_reaped_when_it_ends(method: StartMethod) {
    let _g = guard();
    let fds_before = mp_testkit::open_fds().len();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(block, there).start_method(method);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p); // never blocks, although the child runs
    assert!(mp_testkit::exists(pid));
    drop(here); // the child ends now
    // Wait on the condition itself (bounded only as a guard against a hang):
    // the child is gone, not a zombie, and its descriptors are closed.
    let start = std::time::Instant::now();
    while mp_testkit::processes().iter().any(|(p, _, _)| *p == pid)
        || mp_testkit::open_fds().len() != fds_before
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the dropped child was never reaped"
        );
        std::thread::yield_now();
    }
}
