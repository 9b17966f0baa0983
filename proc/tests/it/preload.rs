//! Forkserver preloading (issue 16, CPython's `set_forkserver_preload`):
//! functions the fork server runs once before it serves, so that its
//! children start with what they set up. Each case needs a process whose
//! fork server has not started yet: a scenario (a fresh run of this binary).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use mp_logging::Level;
use mp_proc::{Connection, Error, Process, StartMethod, pipe, set_forkserver_preload};
use mp_testkit::{guard, records, scenario as run};

/// Set by [`warm_up`]: a static a preload initialises.
static WARM: AtomicBool = AtomicBool::new(false);
/// Counts the runs of [`count_runs`]: a preload runs once per server.
static RUNS: AtomicU32 = AtomicU32::new(0);
/// Set by [`after_the_panic`], the preload after the one that panics.
static AFTER: AtomicBool = AtomicBool::new(false);

fn warm_up() {
    WARM.store(true, Ordering::Relaxed);
}

fn count_runs() {
    RUNS.fetch_add(1, Ordering::Relaxed);
}

fn panics() {
    panic!("the preload failed");
}

fn after_the_panic() {
    AFTER.store(true, Ordering::Relaxed);
}

/// What a child sees of the preloads' statics.
type Seen = (bool, u32, bool);

fn report_statics(conn: Connection) {
    conn.send::<Seen>(&(
        WARM.load(Ordering::Relaxed),
        RUNS.load(Ordering::Relaxed),
        AFTER.load(Ordering::Relaxed),
    ))
    .unwrap();
}

fn seen_by(method: StartMethod) -> Seen {
    let (here, there) = pipe(false).unwrap();
    let mut p = Process::new(report_statics, there).start_method(method);
    p.start().unwrap();
    let seen = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    seen
}

/// The scenario: preloads set, then children of every start method report
/// what they see.
pub(crate) fn scenario() {
    mp_logging::log_to_stderr(Some(Level::Warning));
    let too_many = vec![warm_up as fn(); 65];
    assert!(matches!(
        set_forkserver_preload(&too_many),
        Err(Error::Invalid { .. })
    ));
    set_forkserver_preload(&[warm_up, count_runs, panics, after_the_panic]).unwrap();
    // Two forkserver children: both forked from the one warmed-up server, where
    // each preload ran once, the one after the panic included.
    assert_eq!(seen_by(StartMethod::Forkserver), (true, 1, true));
    assert_eq!(seen_by(StartMethod::Forkserver), (true, 1, true));
    // Spawn and fork children, and this process, never ran them.
    assert_eq!(seen_by(StartMethod::Spawn), (false, 0, false));
    assert_eq!(seen_by(StartMethod::Fork), (false, 0, false));
    assert_eq!(
        (
            WARM.load(Ordering::Relaxed),
            RUNS.load(Ordering::Relaxed),
            AFTER.load(Ordering::Relaxed)
        ),
        (false, 0, false)
    );
    // The server runs: the list cannot change under it.
    assert!(matches!(
        set_forkserver_preload(&[]),
        Err(Error::Invalid { .. })
    ));
}

/// A preload sets a static that every forkserver child sees and no spawn or
/// fork child does; a panicking preload does not break the server, the
/// preloads after it still run, and the program is warned once.
#[test]
fn forkserver_children_start_with_what_the_preloads_set_up() {
    let _g = guard();
    let out = run("preload");
    assert_eq!(
        records(&out)
            .into_iter()
            .filter(|l| !l.contains("multi-threaded"))
            .collect::<Vec<_>>(),
        ["[WARNING/MainProcess] fork server: preload function 2 panicked: the preload failed"]
    );
}

/// This process's fork server already runs (the guard started it): the list
/// is refused, not silently kept for a later server.
#[test]
fn a_running_fork_server_refuses_a_preload_list() {
    let _g = guard();
    assert!(matches!(
        set_forkserver_preload(&[warm_up]),
        Err(Error::Invalid { .. })
    ));
    assert!(!seen_by(StartMethod::Forkserver).0);
}
