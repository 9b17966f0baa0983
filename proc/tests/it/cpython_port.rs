//! CPython's tests (Lib/test/_test_multiprocessing.py of 3.11) that had no
//! port: listeners and clients, `poll`, `wait` on sockets, `SimpleQueue`,
//! signals in the middle of blocking calls, a killed fork server, a
//! child's panic on its stderr. Same inputs and assertions; Python's
//! exceptions are `Err` variants. Where CPython sleeps to let a process
//! get somewhere, the port waits until that thread is asleep in the kernel
//! (its state in /proc), and a deadline only turns a bug into a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mp_proc::connection::{Address, Client, Listener, wait};
use mp_proc::{Connection, Context, Error, Event, Process, SimpleQueue, StartMethod, pipe};

use mp_testkit::guard;

mp_testkit::for_each_method!(
    test_listener_client,
    test_issue14725,
    test_strings,
    test_dont_merge,
    test_wait_socket,
    test_simple_queue_empty,
    test_poll_eintr,
    test_ignore,
    test_ignore_listener,
    test_stderr_flush,
    test_shared_memory_pickle_unpickle_dead_object,
);

/// Only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// CPython's `self.connection.families` on Linux, each a fresh address.
fn families(dir: &std::path::Path, tag: &str) -> Vec<Address> {
    vec![
        Address::Unix(dir.join(format!("listener-{tag}"))),
        Address::Abstract(format!("mp-cpython-{tag}-{}", std::process::id())),
        "127.0.0.1:0".parse().unwrap(),
    ]
}

/// `_TestListener.test_multiple_bind`: a second listener on an address in
/// use is an `OSError`.
#[test]
fn test_multiple_bind() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    for family in families(dir.path(), "bind") {
        let l = Listener::bind(family, None).unwrap();
        let again = Listener::bind(l.address().clone(), None);
        assert!(matches!(again, Err(Error::Os { .. })), "{again:?}");
    }
}

/// CPython's `_TestListenerClient._test`.
fn send_hello(address: String) {
    let conn = Client::connect(&address.parse().unwrap(), None).unwrap();
    conn.send("hello").unwrap();
}

/// CPython: `_TestListenerClient.test_listener_client`.
fn test_listener_client(method: StartMethod) {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    for family in families(dir.path(), "client") {
        let l = Listener::bind(family, None).unwrap();
        let mut p = Process::new(send_hello, l.address().to_string())
            .daemon(true)
            .start_method(method);
        p.start().unwrap();
        let conn = l.accept().unwrap();
        assert_eq!(conn.recv::<String>().unwrap(), "hello");
        assert_eq!(p.join().unwrap(), 0);
    }
}

/// CPython: `_TestListenerClient.test_issue14725`: the client has
/// connected, written and closed before the listener accepts (CPython
/// sleeps a second; here the client has ended).
fn test_issue14725(method: StartMethod) {
    let _g = guard();
    let l = Listener::bind(
        Address::Abstract(format!("mp-cpython-14725-{}", std::process::id())),
        None,
    )
    .unwrap();
    let mut p = Process::new(send_hello, l.address().to_string())
        .daemon(true)
        .start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let conn = l.accept().unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "hello");
}

/// CPython: `_TestListenerClient.test_issue16955`.
#[test]
fn test_issue16955() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    for family in families(dir.path(), "16955") {
        let l = Listener::bind(family, None).unwrap();
        let c = Client::connect(l.address(), None).unwrap();
        let a = l.accept().unwrap();
        a.send_bytes(b"hello").unwrap();
        assert!(c.poll(Some(Duration::from_secs(1))).unwrap());
    }
}

/// CPython: `_TestPoll.test_empty_string` (`poll()` is a poll of 0 s).
#[test]
fn test_empty_string() {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    b.send_bytes(b"").unwrap();
    assert!(a.poll(Some(Duration::ZERO)).unwrap());
    assert!(a.poll(Some(Duration::ZERO)).unwrap());
}

const STRINGS: [&[u8]; 8] = [b"hello", b"", b"a", b"b", b"", b"bye", b"", b"lop"];

/// CPython's `_TestPoll._child_strings` (without its sleeps).
fn child_strings(conn: Connection) {
    for s in STRINGS {
        conn.send_bytes(s).unwrap();
    }
}

/// CPython: `_TestPoll.test_strings`.
fn test_strings(method: StartMethod) {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    let mut p = Process::new(child_strings, b).start_method(method);
    p.start().unwrap();
    for s in STRINGS {
        // CPython polls 200 times 10 ms.
        assert!(a.poll(Some(Duration::from_secs(2))).unwrap());
        assert_eq!(a.recv_bytes().unwrap(), s);
    }
    assert_eq!(p.join().unwrap(), 0);
}

/// CPython's `_TestPoll._child_dont_merge`.
fn child_dont_merge(b: Connection) {
    for s in [&b"a"[..], b"b", b"cd"] {
        b.send_bytes(s).unwrap();
    }
}

/// CPython: `_TestPoll.test_dont_merge`.
fn test_dont_merge(method: StartMethod) {
    let _g = guard();
    let (a, b) = pipe(true).unwrap();
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    assert!(!a.poll(Some(Duration::from_millis(100))).unwrap());
    let mut p = Process::new(child_dont_merge, b).start_method(method);
    p.start().unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"a");
    assert!(a.poll(Some(Duration::from_secs(1))).unwrap());
    assert!(a.poll(Some(Duration::from_secs(1))).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"b");
    assert!(a.poll(Some(Duration::from_secs(1))).unwrap());
    assert!(a.poll(Some(Duration::from_secs(1))).unwrap());
    assert!(a.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"cd");
    assert_eq!(p.join().unwrap(), 0);
}

/// CPython's `TestWait._child_test_wait_socket`: ten lines to the listener.
fn child_test_wait_socket(address: String) {
    let s = Client::connect(&address.parse().unwrap(), None).unwrap();
    for i in 0..10 {
        s.send_bytes(format!("{i}\n").as_bytes()).unwrap();
    }
}

/// CPython: `TestWait.test_wait_socket` (and `test_wait_socket_slow`, whose
/// children only sleep between sends): `wait` on four accepted
/// connections until each has given its ten lines and ended.
fn test_wait_socket(method: StartMethod) {
    let _g = guard();
    let l = Listener::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let mut procs: Vec<Process> = (0..4)
        .map(|_| {
            Process::new(child_test_wait_socket, l.address().to_string())
                .daemon(true)
                .start_method(method)
        })
        .collect();
    for p in &mut procs {
        p.start().unwrap();
    }
    let mut readers: Vec<(Connection, Vec<u8>)> =
        (0..4).map(|_| (l.accept().unwrap(), Vec::new())).collect();
    let expected: String = (0..10).map(|i| format!("{i}\n")).collect();
    let mut done = Vec::new();
    while !readers.is_empty() {
        let ready = {
            let conns: Vec<&Connection> = readers.iter().map(|(c, _)| c).collect();
            wait(&conns, Some(HANG_GUARD)).unwrap()
        };
        assert!(!ready.is_empty(), "nothing arrived");
        for &i in ready.iter().rev() {
            match readers[i].0.recv_bytes() {
                Ok(msg) => readers[i].1.extend(msg),
                Err(Error::Eof) => done.push(readers.remove(i).1),
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(done.len(), 4);
    for v in done {
        assert_eq!(v, expected.as_bytes());
    }
    for p in &mut procs {
        assert_eq!(p.join().unwrap(), 0);
    }
}

/// CPython's `TestSimpleQueue._test_empty`.
fn put_empty((queue, child_can_start, parent_can_continue): (SimpleQueue<bool>, Event, Event)) {
    child_can_start.wait(None).unwrap();
    queue.put(queue.empty()).unwrap();
    queue.put(queue.empty()).unwrap();
    parent_can_continue.set();
}

/// CPython: `TestSimpleQueue.test_empty`.
fn test_simple_queue_empty(method: StartMethod) {
    let _g = guard();
    let queue = SimpleQueue::new().unwrap();
    let (child_can_start, parent_can_continue) = (Event::new().unwrap(), Event::new().unwrap());
    let mut proc = Process::new(
        put_empty,
        (
            queue.clone(),
            child_can_start.clone(),
            parent_can_continue.clone(),
        ),
    )
    .daemon(true)
    .start_method(method);
    proc.start().unwrap();
    assert!(queue.empty());
    child_can_start.set();
    parent_can_continue.wait(None).unwrap();
    assert!(!queue.empty());
    assert!(queue.get().unwrap());
    assert!(!queue.get().unwrap());
    assert!(queue.empty());
    assert_eq!(proc.join().unwrap(), 0);
}

/// CPython: `TestSimpleQueue.test_close`: closing a queue twice should not
/// fail.
#[test]
fn test_simple_queue_close() {
    let _g = guard();
    let queue = SimpleQueue::<u8>::new().unwrap();
    queue.close();
    queue.close();
    assert!(queue.is_closed());
}

// ---------------------------------------------------------------- signals

/// This thread's id, for `tgkill` and /proc/PID/task/TID.
fn tid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// Waits until thread `tid` of process `pid` sleeps in the kernel (state
/// `S`): blocked in the call CPython's sleep gave it time to reach.
fn until_asleep(pid: u32, tid: u32) {
    let start = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        if state == Some('S') {
            return;
        }
        assert!(start.elapsed() < HANG_GUARD, "thread {tid} never blocked");
        std::thread::yield_now();
    }
}

/// Sends `sig` to thread `tid` of process `pid`.
fn tgkill(pid: u32, tid: u32, sig: libc::c_int) {
    // SAFETY: tgkill only reads its three integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            pid as libc::pid_t,
            tid as libc::pid_t,
            sig,
        )
    };
    assert_eq!(r, 0, "tgkill: {}", std::io::Error::last_os_error());
}

static GOT_SIGNAL: AtomicBool = AtomicBool::new(false);

extern "C" fn record(_: libc::c_int) {
    GOT_SIGNAL.store(true, Ordering::SeqCst);
}

/// Installs `record` for SIGUSR1 without `SA_RESTART` (as Python's
/// `signal.signal` does): a blocking call it interrupts fails with EINTR,
/// which the library must retry. Gives back the old disposition.
fn catch_sigusr1() -> nix::sys::signal::SigAction {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(record),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR1, &action) }.unwrap()
}

/// CPython's `_TestPollEintr._killer`: SIGUSR1 to the parent's thread once
/// it sleeps (in `join`), then lets the joined child end.
fn killer((pid, tid, release): (u32, u32, Event)) {
    until_asleep(pid, tid);
    tgkill(pid, tid, libc::SIGUSR1);
    release.set();
}

fn wait_for_release(release: Event) {
    release.wait(None).unwrap();
}

/// CPython: `_TestPollEintr.test_poll_eintr`: a signal handled while
/// `join` waits does not end the wait.
fn test_poll_eintr(method: StartMethod) {
    let _g = guard();
    GOT_SIGNAL.store(false, Ordering::SeqCst);
    let old = catch_sigusr1();
    let release = Event::new().unwrap();
    let mut p = Process::new(wait_for_release, release.clone()).start_method(method);
    p.start().unwrap();
    let mut k = Process::new(killer, (std::process::id(), tid(), release)).start_method(method);
    k.start().unwrap();
    let code = p.join();
    assert_eq!(k.join().unwrap(), 0);
    // SAFETY: puts back the disposition this test found.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &old) }.unwrap();
    assert!(GOT_SIGNAL.load(Ordering::SeqCst));
    assert_eq!(code.unwrap(), 0);
}

/// CPython's `TestIgnoreEINTR.CONN_MAX_SIZE` (`support.SOCK_MAX_SIZE`).
const CONN_MAX_SIZE: usize = 16 * 1024 * 1024 + 1;

/// CPython's `TestIgnoreEINTR._test_ignore`.
fn ignore_child(conn: Connection) {
    catch_sigusr1();
    conn.send(&("ready", tid())).unwrap();
    let x: u32 = conn.recv().unwrap();
    conn.send(&x).unwrap();
    conn.send_bytes(&vec![b'x'; CONN_MAX_SIZE]).unwrap();
}

/// CPython: `TestIgnoreEINTR.test_ignore`: a handled signal interrupts
/// neither a `recv` nor a large `send_bytes`.
fn test_ignore(method: StartMethod) {
    let _g = guard();
    let (conn, child_conn) = pipe(true).unwrap();
    let mut p = Process::new(ignore_child, child_conn)
        .daemon(true)
        .start_method(method);
    p.start().unwrap();
    let (ready, child_tid): (String, u32) = conn.recv().unwrap();
    assert_eq!(ready, "ready");
    let pid = p.pid().unwrap();
    until_asleep(pid, child_tid); // in recv
    tgkill(pid, child_tid, libc::SIGUSR1);
    conn.send(&1234u32).unwrap();
    assert_eq!(conn.recv::<u32>().unwrap(), 1234);
    until_asleep(pid, child_tid); // in send_bytes, the pipe full
    tgkill(pid, child_tid, libc::SIGUSR1);
    assert_eq!(conn.recv_bytes().unwrap(), vec![b'x'; CONN_MAX_SIZE]);
    assert_eq!(p.join().unwrap(), 0);
}

/// CPython's `TestIgnoreEINTR._test_ignore_listener`.
fn ignore_listener_child(conn: Connection) {
    catch_sigusr1();
    let address = Address::Abstract(format!("mp-cpython-eintr-{}", std::process::id()));
    let l = Listener::bind(address, None).unwrap();
    conn.send(&(l.address().to_string(), tid())).unwrap();
    let a = l.accept().unwrap();
    a.send("welcome").unwrap();
}

/// CPython: `TestIgnoreEINTR.test_ignore_listener`: a handled signal does
/// not interrupt `accept`.
fn test_ignore_listener(method: StartMethod) {
    let _g = guard();
    let (conn, child_conn) = pipe(true).unwrap();
    let mut p = Process::new(ignore_listener_child, child_conn)
        .daemon(true)
        .start_method(method);
    p.start().unwrap();
    let (address, child_tid): (String, u32) = conn.recv().unwrap();
    let pid = p.pid().unwrap();
    until_asleep(pid, child_tid); // in accept
    tgkill(pid, child_tid, libc::SIGUSR1);
    let client = Client::connect(&address.parse().unwrap(), None).unwrap();
    assert_eq!(client.recv::<String>().unwrap(), "welcome");
    assert_eq!(p.join().unwrap(), 0);
}

// ---------------------------------------------------------------- the rest

/// CPython's `_TestSubclassingProcess._test_stderr_flush`: stderr goes to
/// a new file, then the target fails (CPython's `1/0 # MARKER`).
fn stderr_to_file_then_fail(path: String) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    nix::unistd::dup2_stderr(&file).unwrap();
    let zero = std::hint::black_box(0u32);
    let _ = 1 / zero; // MARKER
}

/// CPython: `_TestSubclassingProcess.test_stderr_flush`: the failure of a
/// child is written out on its stderr, whatever that is, before it ends
/// (Python's `ZeroDivisionError` is Rust's "attempt to divide by zero").
/// It runs in a re-run of this binary with `--nocapture`: the test
/// harness's capture of a test thread's output would hold the message of
/// a forked child of that thread instead of fd 2.
fn test_stderr_flush(method: StartMethod) {
    let _g = guard();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cpython_port::stderr_flush_rerun", "--nocapture"])
        .env(STDERR_FLUSH, method.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Selects the body of [`stderr_flush_rerun`] and its start method.
const STDERR_FLUSH: &str = "MP_CPYTHON_STDERR_FLUSH";

/// Not a test of its own: [`test_stderr_flush`]'s body, in a re-run.
#[test]
fn stderr_flush_rerun() {
    let Ok(method) = std::env::var(STDERR_FLUSH) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr");
    let mut p = Process::new(stderr_to_file_then_fail, path.to_str().unwrap().to_owned())
        .start_method(method.parse().unwrap());
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
    let err = std::fs::read_to_string(&path).unwrap();
    assert!(err.contains("attempt to divide by zero"), "{err}");
    assert!(err.contains("cpython_port.rs"), "{err}");
}

/// CPython's `_sleep_and_set_event`, its sleep a wait for `release`.
fn set_when_released((evt, release): (Event, Event)) {
    release.wait(None).unwrap();
    evt.set();
}

/// The fork server's pid: the child of this process that runs as one.
fn forkserver_pid() -> Option<u32> {
    let me = std::process::id();
    mp_testkit::processes()
        .into_iter()
        .find_map(|(pid, ppid, _)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (ppid == me
                && String::from_utf8_lossy(&cmdline).contains("--multiprocessing-forkserver"))
            .then_some(pid)
        })
}

/// CPython: `_TestProcess.test_forkserver_sigint` (`check_forkserver_death`
/// with SIGINT): after a SIGINT to the fork server, new processes still
/// start and run, and the one it had started ends with 0 or 255.
#[test]
fn test_forkserver_sigint() {
    let _g = guard();
    let (evt, release) = (Event::new().unwrap(), Event::new().unwrap());
    let mut proc = Process::new(set_when_released, (evt.clone(), release.clone()))
        .start_method(StartMethod::Forkserver);
    proc.start().unwrap();
    let server = forkserver_pid().expect("the guard started the fork server");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (evt2, release2) = (Event::new().unwrap(), Event::new().unwrap());
    release2.set();
    let mut proc2 = Process::new(set_when_released, (evt2.clone(), release2))
        .start_method(StartMethod::Forkserver);
    proc2.start().unwrap();
    assert_eq!(proc2.join().unwrap(), 0);
    assert!(evt2.is_set());
    release.set();
    let code = proc.join().unwrap();
    assert!(evt.is_set());
    assert!(code == 0 || code == 255, "{code}");
}

/// CPython: `TestResourceTracker.test_too_long_name_resource`: a name too
/// long for the system is an error (CPython's `ValueError`), and the
/// tracker goes on.
#[test]
fn test_too_long_name_resource() {
    let _g = guard();
    let r = mp_proc::SharedMemory::create(Some(&"a".repeat(512)), 16);
    assert!(r.is_err(), "{r:?}");
    let ok = mp_proc::SharedMemory::create(None, 16).unwrap();
    ok.unlink().unwrap();
}

fn put_one(q: mp_proc::Queue<u8>) {
    q.put(1).unwrap();
}

/// CPython: `TestStartMethod.test_mixed_startmethod`, its second half: a
/// queue made by one start method's context works with the processes of
/// every other. (Its first half, that a queue made by fork's context is
/// refused to spawn's processes, is a difference: mp's handles are the
/// same under every start method, so fork's work too.)
#[test]
fn test_mixed_startmethod() {
    let _g = guard();
    for queue_method in StartMethod::ALL {
        for process_method in StartMethod::ALL {
            let queue = mp_proc::get_context(queue_method).queue::<u8>().unwrap();
            let process_ctx = mp_proc::get_context(process_method);
            let mut p = process_ctx.process(put_one, queue.clone());
            p.start().unwrap();
            assert_eq!(queue.get().unwrap(), 1);
            assert_eq!(
                p.join().unwrap(),
                0,
                "{queue_method} queue, {process_method} process"
            );
        }
    }
}

/// Reads the first six bytes of `block` and sends them back.
fn read_six((block, report): (mp_proc::SharedMemory, Connection)) {
    let mut six = [0u8; 6];
    block.read_at(0, &mut six).unwrap();
    report.send(&six.to_vec()).unwrap();
}

/// CPython: `_TestSharedMemory.test_shared_memory_pickle_unpickle_dead_object`.
/// A pickled block is its name: once unlinked, unpickling it is
/// `FileNotFoundError`, as attaching by name is here. A difference: an mp
/// handle carries the block's descriptor, so a child it is passed to still
/// has the memory.
fn test_shared_memory_pickle_unpickle_dead_object(method: StartMethod) {
    let _g = guard();
    let sms = mp_proc::SharedMemory::create(None, 512).unwrap();
    sms.write_at(0, b"pickle").unwrap();
    let name = sms.name().to_owned();
    sms.unlink().unwrap();
    match mp_proc::SharedMemory::attach(&name) {
        Err(Error::Os { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{name} is still there: {other:?}"),
    }
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(read_six, (sms, there)).start_method(method);
    p.start().unwrap();
    assert_eq!(here.recv::<Vec<u8>>().unwrap(), b"pickle");
    assert_eq!(p.join().unwrap(), 0);
}
