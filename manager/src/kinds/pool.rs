//! A `multiprocessing.Pool` in the manager's server (Python's
//! `Manager().Pool()`): its requests and its server side. Its proxy is in
//! [`pool_proxy`](super::pool_proxy).
//!
//! The pool's workers are children of the server process. A call carries
//! its function as a signed reference (mp-proc's `ErasedFunction`), which
//! the server decodes only if a process of its own tree made it, and its
//! items encoded; it goes through mp-pool's one job path
//! (`mp_pool::plumbing::submit_erased`). The results of calls that a client
//! collects later (`apply_async`, `map_async`) are kept per client session,
//! at most [`MAX_PENDING`] each, and dropped with the session.

use std::any::Any;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mp_pool::plumbing::Outcomes;
use mp_pool::{AsyncResult, Pool};
use mp_proc::plumbing::ErasedFunction;
use mp_proc::{Connection, StartMethod};
use serde::{Deserialize, Serialize};

use crate::protocol::{Bytes, Reply, SessionId, Wait};
use crate::server::object::{Call, Handler, Object};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Runs `func` (an encoded `ErasedFunction`) on `items` (each its
    /// argument, encoded), `chunksize` items per task (`None`: CPython's
    /// default). With `wait`, the reply is the outcomes ([`Answer`]);
    /// without, the call's job number ([`Reply::Id`]) for
    /// [`Get`](Op::Get), or its failure.
    Submit {
        func: Bytes,
        items: Vec<Bytes>,
        chunksize: Option<u64>,
        wait: bool,
    },
    /// The outcomes of job `job` ([`Answer`]), waiting at most `wait`;
    /// with `take`, the job is forgotten once they are sent.
    Get {
        job: u64,
        wait: Wait,
        take: bool,
    },
    /// Whether job `job` is done, waiting at most `wait`.
    Ready {
        job: u64,
        wait: Wait,
    },
    /// The client drops its handle to job `job`.
    Forget(u64),
    /// The number of workers, or why the pool could not start.
    Processes,
    Close,
    Terminate,
    /// Waits for the workers to exit (after `Close` or `Terminate`).
    Join,
}

/// Why a pool call failed: `mp_pool::Error` on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Fault {
    Panicked(String),
    InputPanicked(String),
    WorkerDied {
        worker: String,
        pid: u32,
        exitcode: i32,
    },
    Encoding(String),
    NotRunning,
    StillRunning,
    Terminated,
    Interrupted,
    Timeout,
    NotReady,
    InitializerFailed(String),
    InvalidArgument(String),
    /// Any other error, as its message.
    Other(String),
}

impl From<&mp_pool::Error> for Fault {
    fn from(e: &mp_pool::Error) -> Fault {
        use mp_pool::Error as E;
        match e {
            E::Panicked { message } => Fault::Panicked(message.clone()),
            E::InputPanicked { message } => Fault::InputPanicked(message.clone()),
            E::WorkerDied {
                worker,
                pid,
                exitcode,
            } => Fault::WorkerDied {
                worker: worker.clone(),
                pid: *pid,
                exitcode: *exitcode,
            },
            E::Encoding { message } => Fault::Encoding(message.clone()),
            E::NotRunning => Fault::NotRunning,
            E::StillRunning => Fault::StillRunning,
            E::Terminated => Fault::Terminated,
            E::Interrupted => Fault::Interrupted,
            E::Timeout => Fault::Timeout,
            E::NotReady => Fault::NotReady,
            E::InitializerFailed { message } => Fault::InitializerFailed(message.clone()),
            E::InvalidArgument { what } => Fault::InvalidArgument(what.clone()),
            e => Fault::Other(e.to_string()),
        }
    }
}

impl Fault {
    /// The error the client's call returns.
    pub(crate) fn into_error(self) -> mp_pool::Error {
        use mp_pool::Error as E;
        match self {
            Fault::Panicked(message) => E::Panicked { message },
            Fault::InputPanicked(message) => E::InputPanicked { message },
            Fault::WorkerDied {
                worker,
                pid,
                exitcode,
            } => E::WorkerDied {
                worker,
                pid,
                exitcode,
            },
            Fault::Encoding(message) => E::Encoding { message },
            Fault::NotRunning => E::NotRunning,
            Fault::StillRunning => E::StillRunning,
            Fault::Terminated => E::Terminated,
            Fault::Interrupted => E::Interrupted,
            Fault::Timeout => E::Timeout,
            Fault::NotReady => E::NotReady,
            Fault::InitializerFailed(message) => E::InitializerFailed { message },
            Fault::InvalidArgument(what) => E::InvalidArgument { what },
            Fault::Other(message) => E::from(mp_proc::Error::Remote { message }),
        }
    }
}

/// A call's outcomes as they travel: one per item, or why the call failed
/// as a whole (it never ran, or [`Fault::Timeout`]: not done yet).
pub(crate) type Answer = Result<Vec<Result<Bytes, Fault>>, Fault>;

/// The most results a pool keeps for one client to collect: a client that
/// submits and never collects gets [`Fault::InvalidArgument`] past it (the
/// others are not held up).
pub(crate) const MAX_PENDING: usize = 1 << 16;

/// The most workers a client may ask a manager's pool for (each is a
/// process of the server's machine).
pub(crate) const MAX_PROCESSES: usize = 1024;

/// The longest a waiting call goes without checking its client.
const CHECK_CLIENT: Duration = Duration::from_millis(200);

/// A kept result: the session that submitted it, and its handle.
type Kept = (SessionId, Arc<AsyncResult<Outcomes>>);

/// The results a pool keeps, by job, and how many each session has: a
/// submission checks its session's count at no cost (counting a session's
/// results by scanning them all made `n` submissions cost `n²`, under the
/// lock the other clients' calls take), and reserves its place in the same
/// step (so concurrent submissions of one session cannot pass the bound).
#[derive(Default)]
struct Pending {
    jobs: HashMap<u64, Kept>,
    /// Results kept or reserved, per session (no entry: none).
    counts: HashMap<SessionId, usize>,
}

impl Pending {
    /// Reserves a place for one more result of `session`, if it has fewer
    /// than [`MAX_PENDING`].
    fn reserve(&mut self, session: SessionId) -> bool {
        let n = self.counts.entry(session).or_default();
        if *n >= MAX_PENDING {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a place of `session` (a reserved one, or its result's).
    fn unreserve(&mut self, session: SessionId) {
        if let Some(n) = self.counts.get_mut(&session) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&session);
            }
        }
    }

    /// Keeps a result in a place reserved for its session.
    fn keep(&mut self, job: u64, kept: Kept) {
        self.jobs.insert(job, kept);
    }

    fn get(&self, job: u64) -> Option<&Kept> {
        self.jobs.get(&job)
    }

    /// Forgets job `job`.
    fn remove(&mut self, job: u64) -> Option<Kept> {
        let kept = self.jobs.remove(&job)?;
        self.unreserve(kept.0);
        Some(kept)
    }

    /// Forgets every result of `session` (all of them: one kept in a
    /// place reserved before the session's `Leave` has no count left).
    fn remove_session(&mut self, session: SessionId) -> Vec<Kept> {
        self.counts.remove(&session);
        let jobs: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, (s, _))| *s == session)
            .map(|(&job, _)| job)
            .collect();
        jobs.into_iter()
            .filter_map(|job| self.jobs.remove(&job))
            .collect()
    }
}

/// The most workers of all the pools of this process together: without
/// it, a client (any holder of the manager's key, of any process tree)
/// that asks for pool after pool starts [`MAX_PROCESSES`] processes each,
/// without end.
pub(crate) const MAX_WORKERS: usize = MAX_PROCESSES;

/// Workers that pools may still start: of `max`, those the live pools'
/// [`Seat`]s do not hold.
pub(crate) struct Budget {
    used: Mutex<usize>,
    max: usize,
}

/// The workers a live pool holds of its [`Budget`], given back when the
/// pool is dropped (after its workers are joined).
pub(crate) struct Seat {
    budget: Arc<Budget>,
    workers: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: Mutex::new(0),
            max,
        })
    }

    /// `workers` more of the budget, or why not.
    fn take(self: &Arc<Self>, workers: usize) -> Result<Seat, mp_pool::Error> {
        let mut used = mp_proc::plumbing::lock(&self.used);
        match used.checked_add(workers) {
            Some(total) if total <= self.max => {
                *used = total;
                Ok(Seat {
                    budget: self.clone(),
                    workers,
                })
            }
            _ => Err(mp_pool::Error::InvalidArgument {
                what: format!(
                    "the manager's pools have {used} workers of at most {} together: {workers} \
                     more are refused (close and drop a pool first)",
                    self.max
                ),
            }),
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        *mp_proc::plumbing::lock(&self.budget.used) -= self.workers;
    }
}

/// The budget of this process's pools.
fn budget() -> &'static Arc<Budget> {
    static BUDGET: std::sync::LazyLock<Arc<Budget>> =
        std::sync::LazyLock::new(|| Budget::new(MAX_WORKERS));
    &BUDGET
}

/// A pool in the server, or why it could not start.
pub(crate) struct PoolObject {
    pool: Result<Pool, mp_pool::Error>,
    /// Its workers' place in the budget (after `pool`: given back once the
    /// pool's drop has joined them).
    _seat: Option<Seat>,
    /// Results to collect: the session that submitted each, and its handle.
    pending: Mutex<Pending>,
    next: AtomicU64,
}

/// A new pool of `processes` workers (`None`: one per CPU), descendants
/// of this process, started by `method` (`None`: this process's default).
pub(crate) fn make(processes: Option<u64>, method: Option<StartMethod>) -> Arc<PoolObject> {
    make_within(budget(), processes, method)
}

/// [`make`], its workers taken from `budget` first.
pub(crate) fn make_within(
    budget: &Arc<Budget>,
    processes: Option<u64>,
    method: Option<StartMethod>,
) -> Arc<PoolObject> {
    let method = method.unwrap_or_else(mp_proc::get_start_method);
    let context = mp_proc::get_context(method);
    let cpus = context.available_cpus();
    let builder = Pool::builder().context(context);
    let workers = match processes.map(usize::try_from) {
        None => Ok(cpus),
        Some(Ok(n)) if n <= MAX_PROCESSES => Ok(n),
        Some(_) => Err(mp_pool::Error::InvalidArgument {
            what: format!("a manager's pool has at most {MAX_PROCESSES} processes"),
        }),
    };
    let (pool, seat) = match workers.and_then(|n| Ok((n, budget.take(n)?))) {
        // A pool that did not start holds no workers.
        Ok((n, seat)) => match builder.processes(n).build() {
            Ok(pool) => (Ok(pool), Some(seat)),
            Err(e) => (Err(e), None),
        },
        Err(e) => (Err(e), None),
    };
    Arc::new(PoolObject {
        pool,
        _seat: seat,
        pending: Mutex::default(),
        next: AtomicU64::new(0),
    })
}

/// Terminates the pools among a server's `objects` and waits for their
/// workers (the server stops: clients still holding one see their calls
/// fail).
pub(crate) fn terminate_all(objects: Vec<Arc<dyn Object>>) {
    for object in objects {
        let object: &dyn Any = &*object;
        if let Some(PoolObject { pool: Ok(p), .. }) = object.downcast_ref::<PoolObject>() {
            p.terminate();
            let _ = p.join();
        }
    }
}

/// The pools a server made, whoever holds them now: a pool whose last
/// reference was dropped while a call on it runs is out of the server's
/// table but alive, and the server's end must reach it too.
#[derive(Default)]
pub(crate) struct Pools(Mutex<Vec<Weak<dyn Object>>>);

impl Pools {
    /// Notes `object` if it is a pool (the others are not kept).
    pub(crate) fn note(&self, object: &Arc<dyn Object>) {
        let any: &dyn Any = &**object;
        if any.is::<PoolObject>() {
            let mut pools = mp_proc::plumbing::lock(&self.0);
            // Bounded by the live pools: the dead are forgotten here.
            pools.retain(|w| w.strong_count() > 0);
            pools.push(Arc::downgrade(object));
        }
    }

    /// The pools still alive.
    pub(crate) fn live(&self) -> Vec<Arc<dyn Object>> {
        mp_proc::plumbing::lock(&self.0)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

impl Object for PoolObject {
    /// A gone client's uncollected results are dropped.
    fn release_session(&self, session: SessionId) {
        let dropped: Vec<_> = { mp_proc::plumbing::lock(&self.pending).remove_session(session) };
        drop(dropped);
    }
}

fn value<T: Serialize>(v: &T) -> Reply {
    match mp_proc::codec::encode(v) {
        Ok(b) => Reply::Value(Bytes::from(b)),
        Err(e) => crate::server::object::fail(crate::protocol::Failure::of(&e)),
    }
}

fn failed(f: Fault) -> Reply {
    value::<Answer>(&Err(f))
}

/// The outcomes of a done call, as they travel.
fn answer(r: &AsyncResult<Outcomes>) -> Answer {
    match r.get_timeout(Duration::ZERO) {
        Ok(outcomes) => Ok(outcomes
            .into_iter()
            .map(|o| o.map(Bytes::from).map_err(|e| Fault::from(&e)))
            .collect()),
        Err(e) => Err(Fault::from(&e)),
    }
}

/// Waits at most `wait` for `r` to be done, and gives up if `client` hangs
/// up meanwhile; whether it is done.
fn wait_for(r: &AsyncResult<Outcomes>, wait: Wait, client: &Connection) -> bool {
    wait_unless_hung_up(wait, client, |slice| r.wait(Some(slice)))
}

/// Waits at most `wait` for `done` (which waits at most the time it is
/// given) to say yes, checking every [`CHECK_CLIENT`] that `client` is
/// still there (giving up if it hung up); whether `done` said yes.
fn wait_unless_hung_up(
    wait: Wait,
    client: &Connection,
    mut done: impl FnMut(Duration) -> bool,
) -> bool {
    // A deadline too far to represent is none.
    let deadline: Option<Instant> = wait.and_then(mp_proc::plumbing::deadline_after);
    loop {
        let slice = match deadline {
            None => CHECK_CLIENT,
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .min(CHECK_CLIENT),
        };
        if done(slice) {
            return true;
        }
        if deadline.is_some_and(|t| Instant::now() >= t) {
            return false;
        }
        // A client sends nothing while it waits for a reply, so a readable
        // connection means it hung up.
        let hung_up = mp_proc::connection::wait_fds(&[client.as_fd()], Some(Duration::ZERO))
            .map(|r| !r.is_empty())
            .unwrap_or(true);
        if hung_up {
            return false;
        }
    }
}

/// Joins `pool` for `client`: gives up (with the reply nobody reads) if the
/// client hangs up meanwhile, as the other waiting calls do, so that a dead
/// client's references are dropped without waiting for the pool's work.
fn join(pool: &Pool, client: &Connection) -> Reply {
    let mut failure = None;
    let joined = wait_unless_hung_up(None, client, |slice| {
        match mp_pool::plumbing::join_until(pool, mp_proc::plumbing::deadline_after(slice)) {
            Ok(joined) => joined,
            Err(e) => {
                failure = Some(e);
                true
            }
        }
    });
    match failure {
        Some(e) => failed(Fault::from(&e)),
        None if joined => Reply::Ok,
        None => failed(Fault::Other("the client hung up".into())),
    }
}

/// The function of a call: a reference this server's process tree made.
fn function(bytes: &[u8]) -> Result<ErasedFunction, Fault> {
    mp_proc::codec::decode::<ErasedFunction>(bytes).map_err(|e| {
        Fault::InvalidArgument(format!(
            "the pool's function is refused: {e}. A manager's pool runs only functions sent by \
             processes of the program and process tree that started the manager"
        ))
    })
}

impl PoolObject {
    fn no_such_job(job: u64) -> Reply {
        failed(Fault::InvalidArgument(format!(
            "no pool result {job} of this client: it was collected, or never existed"
        )))
    }

    /// Job `job` of `session`.
    fn job(&self, job: u64, session: SessionId) -> Option<Arc<AsyncResult<Outcomes>>> {
        match mp_proc::plumbing::lock(&self.pending).get(job) {
            Some((s, r)) if *s == session => Some(r.clone()),
            _ => None,
        }
    }

    fn submit(
        &self,
        pool: &Pool,
        func: &[u8],
        items: Vec<Bytes>,
        chunksize: Option<u64>,
        wait: bool,
        call: &Call<'_>,
    ) -> Reply {
        let func = match function(func) {
            Ok(f) => f,
            Err(f) => return failed(f),
        };
        let chunksize = match chunksize.map(usize::try_from) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => return failed(Fault::InvalidArgument("chunksize too large".into())),
        };
        if !wait && !mp_proc::plumbing::lock(&self.pending).reserve(call.session) {
            return failed(Fault::InvalidArgument(format!(
                "this pool holds {MAX_PENDING} results of this client not collected: get() or \
                 drop some first"
            )));
        }
        let items = items.into_iter().map(|b| b.into_vec()).collect();
        let r = mp_pool::plumbing::submit_erased(pool, func, items, chunksize);
        if wait {
            if !wait_for(&r, None, call.client) {
                return failed(Fault::Other("the client hung up".into()));
            }
            return value(&answer(&r));
        }
        let job = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        // In the place reserved above.
        mp_proc::plumbing::lock(&self.pending).keep(job, (call.session, Arc::new(r)));
        Reply::Id(job)
    }
}

impl Handler<Op> for PoolObject {
    fn serve(self: Arc<Self>, op: Op, call: &mut Call<'_>) -> Reply {
        let pool = match &self.pool {
            Ok(p) => p,
            // Forgetting needs no pool; anything else reports why there is none.
            Err(_) if matches!(op, Op::Forget(_)) => return Reply::Ok,
            Err(e) => return failed(Fault::from(e)),
        };
        match op {
            Op::Submit {
                func,
                items,
                chunksize,
                wait,
            } => self.submit(pool, &func, items, chunksize, wait, call),
            Op::Get { job, wait, take } => {
                let Some(r) = self.job(job, call.session) else {
                    return Self::no_such_job(job);
                };
                if !wait_for(&r, wait, call.client) {
                    return failed(Fault::Timeout);
                }
                let reply = value(&answer(&r));
                if take {
                    mp_proc::plumbing::lock(&self.pending).remove(job);
                }
                reply
            }
            Op::Ready { job, wait } => match self.job(job, call.session) {
                Some(r) => Reply::Bool(wait_for(&r, wait, call.client)),
                None => Self::no_such_job(job),
            },
            Op::Forget(job) => {
                let mut pending = mp_proc::plumbing::lock(&self.pending);
                if pending.get(job).is_some_and(|(s, _)| *s == call.session) {
                    let r = pending.remove(job);
                    drop(pending);
                    drop(r);
                }
                Reply::Ok
            }
            Op::Processes => Reply::Count(pool.processes() as u64),
            Op::Close => {
                pool.close();
                Reply::Ok
            }
            Op::Terminate => {
                pool.terminate();
                Reply::Ok
            }
            Op::Join => join(pool, call.client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(p: &PoolObject) -> bool {
        p.pool.is_ok()
    }

    /// A pool out of the server's table (its last reference dropped) but
    /// held by a running call is still reached by the server's end.
    #[test]
    fn the_servers_end_reaches_a_pool_only_a_call_holds() {
        let _g = mp_testkit::guard();
        let pools = Pools::default();
        let budget = Budget::new(2);
        let pool: Arc<dyn Object> = make_within(&budget, Some(1), Some(StartMethod::Fork));
        pools.note(&pool);
        let other: Arc<dyn Object> = Arc::new(crate::kinds::event::Event::new());
        pools.note(&other);
        let call = pool.clone();
        drop(pool);
        let live = pools.live();
        assert_eq!(live.len(), 1, "only the pool is kept");
        terminate_all(live);
        let any: &dyn Any = &*call;
        let Some(PoolObject { pool: Ok(p), .. }) = any.downcast_ref::<PoolObject>() else {
            panic!("not a started pool");
        };
        // Terminated (a running pool's join is refused), its workers gone.
        assert!(p.join().is_ok());
        assert!(matches!(
            p.apply(double, 1),
            Err(mp_pool::Error::NotRunning)
        ));
        drop(call);
        assert!(pools.live().is_empty(), "a dropped pool is not kept alive");
        assert_eq!(*mp_proc::plumbing::lock(&budget.used), 0);
    }

    /// A client that asks for pool after pool gets workers up to the
    /// budget of all the pools together, then a refusal (no process
    /// started for it); a dropped pool gives its workers back.
    #[test]
    fn the_pools_of_a_server_have_a_bounded_number_of_workers_together() {
        let _g = mp_testkit::guard();
        let budget = Budget::new(3);
        let first = make_within(&budget, Some(2), Some(StartMethod::Fork));
        assert!(started(&first));
        let refused = make_within(&budget, Some(2), Some(StartMethod::Fork));
        match &refused.pool {
            Err(mp_pool::Error::InvalidArgument { what }) => {
                assert!(what.contains("at most 3 together"), "{what}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a pool past the budget started"),
        }
        drop(refused);
        let one_more = make_within(&budget, Some(1), Some(StartMethod::Fork));
        assert!(started(&one_more));
        drop(first);
        let again = make_within(&budget, Some(2), Some(StartMethod::Fork));
        assert!(started(&again), "a dropped pool gives its workers back");
        drop((one_more, again));
        assert_eq!(*mp_proc::plumbing::lock(&budget.used), 0);
        // More than a usize can count is refused, not wrapped.
        assert!(budget.take(usize::MAX).is_err());
        assert_eq!(*mp_proc::plumbing::lock(&budget.used), 0);
    }

    fn double(x: u32) -> u32 {
        2 * x
    }

    #[test]
    fn a_changed_function_reference_is_refused_with_a_clear_error() {
        let f = mp_proc::codec::encode(&mp_proc::Function::new(double).erased()).unwrap();
        assert!(function(&f).is_ok());
        for i in 0..f.len() {
            let mut changed = f.clone();
            changed[i] ^= 1;
            match function(&changed) {
                Err(Fault::InvalidArgument(m)) => assert!(m.contains("refused"), "{m}"),
                Err(other) => panic!("byte {i}: {other:?}"),
                // A flip that postcard reads as the same value (none
                // expected: the encoding is checked to be canonical).
                Ok(_) => panic!("byte {i} changed and still accepted"),
            }
        }
    }

    /// A session's places are counted as its results come and go, bounded
    /// at [`MAX_PENDING`] (reserved ones included), and all given back with
    /// the session.
    #[test]
    fn a_sessions_kept_results_are_counted_and_bounded() {
        let _g = mp_testkit::guard();
        let pool = Pool::new(Some(1)).unwrap();
        let result = || {
            let f = mp_proc::Function::new(double).erased();
            Arc::new(mp_pool::plumbing::submit_erased(&pool, f, Vec::new(), None))
        };
        let (a, b): (SessionId, SessionId) = (1, 2);
        let mut p = Pending::default();
        for job in 0..MAX_PENDING as u64 {
            assert!(p.reserve(a));
            if job < 3 {
                p.keep(job, (a, result()));
            }
        }
        assert!(!p.reserve(a), "past the bound, reserved places included");
        assert!(p.reserve(b), "another session has its own");
        p.keep(u64::MAX, (b, result()));
        assert!(p.remove(0).is_some());
        assert!(p.remove(0).is_none());
        assert!(p.reserve(a), "a collected result gives its place back");
        assert!(!p.reserve(a));
        assert_eq!(p.remove_session(a).len(), 2);
        assert!(p.reserve(a), "a gone session's places are all given back");
        // A result kept in a place reserved before its session left is
        // still forgotten with the session.
        p.keep(7, (a, result()));
        assert_eq!(p.remove_session(a).len(), 1);
        p.keep(8, (a, result()));
        assert_eq!(p.remove_session(a).len(), 1);
        assert!(p.remove(8).is_none());
        assert!(!p.counts.contains_key(&a));
        assert_eq!(p.counts[&b], 1);
        assert_eq!(p.get(u64::MAX).map(|k| k.0), Some(b));
    }

    #[test]
    fn errors_travel_as_their_variant() {
        let e = mp_pool::Error::Panicked {
            message: "boom".into(),
        };
        let back = Fault::from(&e).into_error();
        assert!(matches!(back, mp_pool::Error::Panicked { message } if message == "boom"));
        let died = mp_pool::Error::WorkerDied {
            worker: "w".into(),
            pid: 7,
            exitcode: -9,
        };
        assert!(matches!(
            Fault::from(&died).into_error(),
            mp_pool::Error::WorkerDied {
                pid: 7,
                exitcode: -9,
                ..
            }
        ));
    }
}
