//! Huge timeouts (`Duration::MAX`): a call waits as long as it takes, never
//! failing the server's thread of its session, and the session goes on;
//! and what a session held comes back when its process is killed in such
//! a wait.

use std::sync::mpsc;
use std::time::Duration;

use mp_manager::{EventProxy, LockProxy, QueueProxy, SyncManager};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    calls_with_a_huge_timeout_wait_until_done_and_the_session_goes_on,
    a_lock_holder_killed_in_a_huge_wait_gives_the_lock_back,
    a_manager_whose_owner_is_killed_in_a_huge_wait_exits,
);

/// Only so that a bug shows as a failure instead of a hang.
const BOUND: Duration = Duration::from_secs(30);

/// Runs `call` on a thread, then `finish` (what lets the call end), and
/// returns the call's result (a failure if it did not end within `BOUND`).
fn ends<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static, finish: impl FnOnce()) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    finish();
    rx.recv_timeout(BOUND)
        .expect("a call with a huge timeout did not end")
}

fn calls_with_a_huge_timeout_wait_until_done_and_the_session_goes_on(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let kept = m.dict::<u8, u8>().unwrap();
    kept.insert(1, 2).unwrap();

    // Queue: get, put on a full queue, join.
    let q = m.queue::<u32>().unwrap();
    let q2 = q.clone();
    let got = ends(move || q2.get_timeout(Duration::MAX), || q.put(7).unwrap());
    assert_eq!(got.unwrap(), 7);
    let full = m.queue_with_maxsize::<u32>(1).unwrap();
    full.put(1).unwrap();
    let full2 = full.clone();
    let put = ends(
        move || full2.put_timeout(2, Duration::MAX),
        || assert_eq!(full.get().unwrap(), 1),
    );
    put.unwrap();
    assert_eq!(full.get().unwrap(), 2);
    let jq = m.joinable_queue::<u32>().unwrap();
    jq.put(1).unwrap();
    let jq2 = jq.clone();
    let joined = ends(
        move || jq2.join_timeout(Duration::MAX),
        || {
            jq.get().unwrap();
            jq.task_done().unwrap();
        },
    );
    joined.unwrap();

    // Lock and RLock held by this thread, acquired by another.
    let lock = m.lock().unwrap();
    let held = lock.acquire().unwrap();
    let lock2 = lock.clone();
    let taken = ends(
        move || lock2.acquire_timeout(Duration::MAX).map(|g| g.is_some()),
        || drop(held),
    );
    assert!(taken.unwrap());
    let rlock = m.rlock().unwrap();
    let held = rlock.acquire().unwrap();
    let rlock2 = rlock.clone();
    let taken = ends(
        move || rlock2.acquire_timeout(Duration::MAX).map(|g| g.is_some()),
        || drop(held),
    );
    assert!(taken.unwrap());

    // Semaphore, Event.
    let sem = m.semaphore(0).unwrap();
    let sem2 = sem.clone();
    let acquired = ends(
        move || sem2.acquire_timeout(Duration::MAX),
        || sem.release().unwrap(),
    );
    assert!(acquired.unwrap());
    let event = m.event().unwrap();
    let event2 = event.clone();
    let set = ends(
        move || event2.wait(Some(Duration::MAX)),
        || event.set().unwrap(),
    );
    assert!(set.unwrap());

    // Condition: the waiter holds the lock until its wait releases it, so
    // the notification comes after the wait began.
    let cond = m.condition().unwrap();
    let waiting = m.event().unwrap();
    let (cond2, waiting2) = (cond.clone(), waiting.clone());
    let notified = ends(
        move || {
            let g = cond2.acquire()?;
            waiting2.set()?;
            cond2.wait_timeout(g, Duration::MAX).map(|(_, n)| n)
        },
        || {
            assert!(waiting.wait(Some(BOUND)).unwrap());
            let g = cond.acquire().unwrap();
            cond.notify_all().unwrap();
            drop(g);
        },
    );
    assert!(notified.unwrap());

    // Barrier: a huge timeout per call, and as the barrier's own.
    for own in [None, Some(Duration::MAX)] {
        let barrier = m.barrier(2, own).unwrap();
        let barrier2 = barrier.clone();
        let passed = ends(
            move || match own {
                None => barrier2.wait_timeout(Duration::MAX),
                Some(_) => barrier2.wait(),
            },
            || {
                barrier.wait().unwrap();
            },
        );
        passed.unwrap();
    }

    // The session is whole: its objects, and the server, still answer.
    assert_eq!(kept.get(&1).unwrap(), Some(2));
    assert!(m.number_of_objects().unwrap() > 0);
    m.shutdown().unwrap();
}

/// Takes the lock, and tells the parent after a huge wait (which needs
/// the parent's item, so the server has served it) ; then waits without end.
fn hold_in_huge_waits((lock, go, locked): (LockProxy, QueueProxy<u8>, EventProxy)) {
    let _held = lock.acquire().unwrap();
    go.get_timeout(Duration::MAX).unwrap();
    locked.set().unwrap();
    let _ = go.get_timeout(Duration::MAX);
}

/// The session of a process killed while it holds a lock and waits with a
/// huge timeout ends, and gives the lock back.
fn a_lock_holder_killed_in_a_huge_wait_gives_the_lock_back(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let lock = m.lock().unwrap();
    let go = m.queue::<u8>().unwrap();
    let locked = m.event().unwrap();
    let mut p = Process::new(
        hold_in_huge_waits,
        (lock.clone(), go.clone(), locked.clone()),
    )
    .start_method(method);
    p.start().unwrap();
    go.put(1).unwrap();
    let in_time = locked.wait(Some(BOUND)).unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    assert!(in_time, "the child's huge wait failed");
    let mine = lock.acquire_timeout(BOUND).unwrap();
    assert!(
        mine.is_some(),
        "the killed child's lock was never given back"
    );
    drop(mine);
    m.shutdown().unwrap();
}

/// Scenario `owner_waiting`: the owner of a manager gets an item with a
/// huge timeout, then waits again so, on its own connection to the server
/// (its only one, idle until then); reports; and dies by SIGKILL.
pub(crate) fn owner_killed_in_a_huge_wait(method: StartMethod) {
    mp_proc::set_start_method(method).unwrap();
    let m = SyncManager::start().unwrap();
    let q = m.queue::<u8>().unwrap();
    q.put(7).unwrap();
    let q2 = q.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(q2.get_timeout(Duration::MAX));
        let _ = q2.get_timeout(Duration::MAX);
    });
    let got = rx.recv_timeout(BOUND);
    let pid = mp_proc::active_children()[0].pid();
    println!("manager {pid} at {} got {got:?}", m.address());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// The server watches its owner through the owner's connection: when the
/// owner dies in a huge wait on it, the server notices and exits.
fn a_manager_whose_owner_is_killed_in_a_huge_wait_exits(method: StartMethod) {
    let _g = guard();
    let out = mp_testkit::scenario_output(&format!("owner_waiting:{method}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .lines()
        .find_map(|l| l.split_once("manager ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    let (pid, rest) = report.split_once(" at ").unwrap();
    let (socket, got) = rest.split_once(" got ").unwrap();
    let pid: u32 = pid.parse().unwrap();
    // It is reparented, so its end can only be watched for.
    let deadline = std::time::Instant::now()
        .checked_add(BOUND)
        .expect("a deadline in range");
    while mp_testkit::exists(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "manager {pid} outlived its owner"
        );
        std::thread::yield_now();
    }
    assert_eq!(got, "Ok(Ok(7))", "the owner's huge wait failed");
    let socket = std::path::Path::new(socket);
    assert!(!socket.exists(), "the socket is left behind");
}
