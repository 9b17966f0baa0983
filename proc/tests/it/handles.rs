//! Handles after start (issue 15, items 1 and 2): every handle type sent to
//! a child that is already running arrives usable, through a duplex pipe
//! (the descriptors travel with the frame), a one-way pipe and a `Queue`
//! (the descriptors travel as tickets), under every start method. Each job
//! has an effect that the other process observes.
//!
//! The relays to a grandchild and the handles a child makes and sends back
//! are in `handles_relay.rs`; CPython's fd-transfer tests in
//! `handles_cpython.rs`; bad input and faults in `handles_faults.rs`.

use std::time::Duration;

use mp_proc::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, Error, Event, JoinableQueue, Lock,
    Process, Queue, RLock, Semaphore, ShareableItem as I, ShareableList, SharedMemory, SimpleQueue,
    StartMethod, Value, pipe,
};
use mp_testkit::guard;
use serde::{Deserialize, Serialize};

/// A deadline only so that a bug shows as a failure instead of a hang.
pub(crate) const LONG: Duration = Duration::from_secs(120);

/// A started child that is killed and reaped if the test fails, so that a
/// failure leaves no process behind to upset the tests that follow.
pub(crate) struct Child(pub(crate) Process);

impl Child {
    pub(crate) fn start<A: mp_proc::Payload>(method: StartMethod, f: fn(A), args: A) -> Child {
        let mut p = Process::new(f, args).start_method(method);
        p.start().unwrap();
        Child(p)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.kill();
            let _ = self.0.join();
        }
    }
}

/// Unlinks a block's name when dropped (also when the test fails), so that
/// a failure leaves nothing in /dev/shm to upset the tests that follow.
pub(crate) struct Unlink(pub(crate) String);

impl Drop for Unlink {
    fn drop(&mut self) {
        if let Ok(m) = SharedMemory::attach(&self.0) {
            let _ = m.unlink();
        }
    }
}

/// What the parent asks the running child to do with the handle(s) it sends.
#[derive(Serialize, Deserialize)]
enum Job {
    /// An end of `pipe(true)`: the child says hello on it, then answers
    /// `n + 1` to the `n` it gets.
    Duplex(Connection),
    /// The write end of `pipe(false)`: the child says hello on it and drops it.
    Writer(Connection),
    /// The child puts 1, 2, 3.
    Queue(Queue<u32>),
    /// The child puts 1, 2, 3.
    Simple(SimpleQueue<u32>),
    /// The child takes every item the parent put and marks each done.
    Joinable(JoinableQueue<u32>),
    /// The child holds the lock until the parent says go.
    Lock(Lock),
    /// The child holds the lock twice (re-entrant) until the parent says go.
    RLock(RLock),
    /// The child releases it twice.
    Semaphore(Semaphore),
    /// The child releases it once (the parent holds it), and a second
    /// release must be refused: answers 1 if it was.
    Bounded(BoundedSemaphore),
    /// The child sets it.
    Event(Event),
    /// The child waits on the condition until the flag is 1 (the parent
    /// sets it and notifies): answers 1 if the predicate came true.
    Condition(Condition, Value<u32>),
    /// The child waits at the barrier (two parties: it and the parent).
    Barrier(Barrier),
    /// The child adds 1 under the value's lock.
    Value(Value<u64>),
    /// The child writes 10, 20, 30, 40.
    Array(Array<u32>),
    /// The child writes `from child` at offset 0.
    Shm(SharedMemory),
    /// The child answers item 1 (an int) and writes item 0.
    List(ShareableList),
    /// Several handles in one message: the child sets the event, puts 5,
    /// sets the value to 9.
    Several(Event, Queue<u32>, Value<u64>),
    /// The same handle twice in one message: the child sets the first and
    /// answers whether the second is set (1: they are one event).
    Twice(Event, Event),
    /// Handles inside a struct, a `Vec` and `Option`s.
    Nested(Nest),
}

#[derive(Serialize, Deserialize)]
struct Nest {
    label: String,
    /// The child sets every `Some`.
    events: Vec<Option<Event>>,
    /// The child sends the label on it.
    conn: Option<Connection>,
}

#[derive(Serialize, Deserialize)]
enum Msg {
    Job(Job),
    /// The second step of a two-step job (release the lock).
    Go,
    Stop,
}

/// The child's answer to each job or step.
type Reply = Result<u64, String>;

/// Where the running child reads its messages.
#[derive(Serialize, Deserialize)]
enum Inbox {
    /// A duplex end: the handles' descriptors come with the frames.
    Socket(Connection),
    /// The read end of a one-way pipe: the handles come as tickets.
    Pipe(Connection),
    /// A queue: the handles come as tickets.
    Queue(Queue<Msg>),
}

impl Inbox {
    fn next(&self) -> mp_proc::Result<Msg> {
        match self {
            Inbox::Socket(c) | Inbox::Pipe(c) => c.recv(),
            // Bounded only so that the child ends if the parent failed.
            Inbox::Queue(q) => q.get_timeout(LONG),
        }
    }

    fn go(&self) -> Result<(), String> {
        match self.next() {
            Ok(Msg::Go) => Ok(()),
            Ok(_) => Err("expected Go".into()),
            Err(e) => Err(format!("waiting for Go: {e}")),
        }
    }
}

/// The running child: takes jobs until `Stop` (or the end of its inbox) and
/// answers each on `out` (or on the inbox's socket).
fn serve((inbox, out): (Inbox, Option<Connection>)) {
    let out = match (&inbox, out) {
        (_, Some(out)) => out,
        (Inbox::Socket(c), None) => c.clone(),
        _ => return,
    };
    loop {
        let reply = match inbox.next() {
            Ok(Msg::Job(job)) => run(job, &inbox, &out),
            Ok(Msg::Stop) | Err(Error::Eof) => return,
            Ok(Msg::Go) => Err("Go without a job".into()),
            Err(e) => Err(format!("receiving the job: {e}")),
        };
        let failed = reply.is_err();
        if out.send::<Reply>(&reply).is_err() || failed {
            return;
        }
    }
}

fn run(job: Job, inbox: &Inbox, out: &Connection) -> Reply {
    let e = |what: &str| {
        let what = what.to_owned();
        move |e: Error| format!("{what}: {e}")
    };
    match job {
        Job::Duplex(c) => {
            c.send("hello from the child").map_err(e("send"))?;
            let n: u32 = c.recv().map_err(e("recv"))?;
            c.send(&(n + 1)).map_err(e("send"))?;
        }
        Job::Writer(c) => c.send("hello from the child").map_err(e("send"))?,
        Job::Queue(q) => (1..=3).try_for_each(|i| q.put(i)).map_err(e("put"))?,
        Job::Simple(q) => (1..=3).try_for_each(|i| q.put(i)).map_err(e("put"))?,
        Job::Joinable(q) => {
            let mut sum = 0;
            for _ in 0..3 {
                sum += u64::from(q.get_timeout(LONG).map_err(e("get"))?);
                q.task_done().map_err(e("task_done"))?;
            }
            return Ok(sum);
        }
        Job::Lock(lock) => {
            let g = lock.acquire().map_err(e("acquire"))?;
            out.send::<Reply>(&Ok(0)).map_err(e("reply"))?;
            inbox.go()?;
            drop(g);
        }
        Job::RLock(lock) => {
            let a = lock.acquire().map_err(e("acquire"))?;
            let b = lock.acquire().map_err(e("acquire again"))?;
            out.send::<Reply>(&Ok(0)).map_err(e("reply"))?;
            inbox.go()?;
            drop((b, a));
        }
        Job::Semaphore(s) => {
            s.release().map_err(e("release"))?;
            s.release().map_err(e("release"))?;
        }
        Job::Bounded(s) => {
            s.release().map_err(e("release"))?;
            return Ok(u64::from(s.release().is_err()));
        }
        Job::Event(ev) => ev.set(),
        Job::Condition(cond, flag) => {
            let g = cond.acquire().map_err(e("acquire"))?;
            let (g, came) = cond
                .wait_for(g, || flag.get() == 1, Some(LONG))
                .map_err(e("wait_for"))?;
            drop(g);
            return Ok(u64::from(came));
        }
        Job::Barrier(b) => return b.wait().map(|i| i as u64).map_err(e("wait")),
        Job::Value(v) => *v.lock().map_err(e("lock"))? += 1,
        Job::Array(a) => {
            for i in 0..4 {
                a.set(i, (i as u32 + 1) * 10).map_err(e("set"))?;
            }
        }
        Job::Shm(m) => m.write_at(0, b"from child").map_err(e("write_at"))?,
        Job::List(l) => {
            let one = l.get(1).map_err(e("get"))?;
            l.set(0, "from child".into()).map_err(e("set"))?;
            return match one {
                I::Int(n) => Ok(n as u64),
                other => Err(format!("item 1 is {other:?}")),
            };
        }
        Job::Several(ev, q, v) => {
            ev.set();
            q.put(5).map_err(e("put"))?;
            v.set(9);
        }
        Job::Twice(first, second) => {
            first.set();
            return Ok(u64::from(second.is_set()));
        }
        Job::Nested(nest) => {
            for ev in nest.events.iter().flatten() {
                ev.set();
            }
            let conn = nest.conn.ok_or("no connection in the nest")?;
            conn.send(&nest.label).map_err(e("send"))?;
        }
    }
    Ok(0)
}

/// How the parent sends the jobs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Via {
    Socket,
    Pipe,
    Queue,
}

enum Tx {
    Conn(Connection),
    Queue(Queue<Msg>),
}

/// The parent's side: a running child and the way to it.
struct Link {
    tx: Tx,
    rx: Connection,
    p: Child,
}

impl Link {
    fn start(method: StartMethod, via: Via) -> Link {
        let (tx, rx, args) = match via {
            Via::Socket => {
                let (here, there) = pipe(true).unwrap();
                (Tx::Conn(here.clone()), here, (Inbox::Socket(there), None))
            }
            Via::Pipe => {
                let (jobs_r, jobs_w) = pipe(false).unwrap();
                let (replies_r, replies_w) = pipe(false).unwrap();
                (
                    Tx::Conn(jobs_w),
                    replies_r,
                    (Inbox::Pipe(jobs_r), Some(replies_w)),
                )
            }
            Via::Queue => {
                let q = Queue::new().unwrap();
                let (replies_r, replies_w) = pipe(false).unwrap();
                (
                    Tx::Queue(q.clone()),
                    replies_r,
                    (Inbox::Queue(q), Some(replies_w)),
                )
            }
        };
        let p = Child::start(method, serve, args);
        Link { tx, rx, p }
    }

    fn send(&self, msg: Msg) {
        let r = match &self.tx {
            Tx::Conn(c) => c.send(&msg),
            Tx::Queue(q) => q.put(msg),
        };
        if let Err(e) = r {
            panic!("sending to the running child: {e:?}");
        }
    }

    /// Sends `job` and returns the child's first answer.
    fn job(&self, job: Job) -> u64 {
        self.send(Msg::Job(job));
        self.reply()
    }

    fn go(&self) -> u64 {
        self.send(Msg::Go);
        self.reply()
    }

    fn reply(&self) -> u64 {
        assert!(
            self.rx.poll(Some(LONG)).unwrap(),
            "the child never answered"
        );
        match self.rx.recv::<Reply>() {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("the child failed: {e}"),
            Err(e) => panic!("no answer from the child: {e:?}"),
        }
    }

    fn stop(mut self) {
        self.send(Msg::Stop);
        assert_eq!(self.p.0.join().unwrap(), 0);
    }
}

macro_rules! through {
    ($module:ident = $via:expr; $($group:ident),* $(,)?) => {
        mod $module {
            $(
                fn $group(method: mp_proc::StartMethod) {
                    super::$group(method, $via)
                }
            )*
            mp_testkit::for_each_method!($($group),*);
        }
    };
}

through!(duplex_pipe = super::Via::Socket; connections, queues, locks, signals, memory, composites);
through!(one_way_pipe = super::Via::Pipe; connections, queues, locks, signals, memory, composites);
through!(queue = super::Via::Queue; connections, queues, locks, signals, memory, composites);

/// A `Connection` (both kinds of end) arrives usable: the child talks over it.
fn connections(method: StartMethod, via: Via) {
    let _g = guard();
    let link = Link::start(method, via);
    let (here, there) = pipe(true).unwrap();
    link.send(Msg::Job(Job::Duplex(there)));
    assert_eq!(here.recv::<String>().unwrap(), "hello from the child");
    here.send(&41u32).unwrap();
    assert_eq!(here.recv::<u32>().unwrap(), 42);
    assert_eq!(link.reply(), 0);

    let (r, w) = pipe(false).unwrap();
    assert_eq!(link.job(Job::Writer(w)), 0);
    assert_eq!(r.recv::<String>().unwrap(), "hello from the child");
    // The child dropped its end, and no copy stayed anywhere (not in this
    // process, not with a ticket's sender): end of file.
    assert!(matches!(r.recv::<String>(), Err(Error::Eof)));
    link.stop();
    // The child is gone and so is its end of `here`.
    assert!(matches!(here.recv::<u32>(), Err(Error::Eof)));
}

/// `Queue`, `SimpleQueue`, `JoinableQueue`: the child's puts and gets are
/// on the parent's queue.
fn queues(method: StartMethod, via: Via) {
    let _g = guard();
    let link = Link::start(method, via);
    let q = Queue::new().unwrap();
    link.job(Job::Queue(q.clone()));
    let got: Vec<u32> = (0..3).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(got, [1, 2, 3]);

    let q = SimpleQueue::new().unwrap();
    link.job(Job::Simple(q.clone()));
    let got: Vec<u32> = (0..3).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(got, [1, 2, 3]);

    let q = JoinableQueue::new().unwrap();
    for i in [1, 2, 3] {
        q.put(i).unwrap();
    }
    link.send(Msg::Job(Job::Joinable(q.clone())));
    // Returns only when the child has marked all three done.
    q.join_timeout(LONG).unwrap();
    assert_eq!(link.reply(), 6);
    assert!(q.empty());
    link.stop();
}

/// `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`.
fn locks(method: StartMethod, via: Via) {
    let _g = guard();
    let link = Link::start(method, via);
    let lock = Lock::new().unwrap();
    link.job(Job::Lock(lock.clone()));
    assert!(lock.locked(), "the child holds it");
    assert!(lock.try_acquire().unwrap().is_none());
    link.go();
    assert!(
        lock.try_acquire().unwrap().is_some(),
        "the child released it"
    );

    let rlock = RLock::new().unwrap();
    link.job(Job::RLock(rlock.clone()));
    assert!(rlock.try_acquire().unwrap().is_none(), "the child holds it");
    link.go();
    assert!(rlock.try_acquire().unwrap().is_some(), "released twice");

    let sem = Semaphore::new(0).unwrap();
    link.send(Msg::Job(Job::Semaphore(sem.clone())));
    assert!(
        sem.acquire_timeout(LONG).unwrap(),
        "the child's first release"
    );
    assert!(
        sem.acquire_timeout(LONG).unwrap(),
        "the child's second release"
    );
    assert_eq!(link.reply(), 0);
    assert!(!sem.try_acquire().unwrap());

    let bounded = BoundedSemaphore::new(1).unwrap();
    assert!(bounded.try_acquire().unwrap());
    assert_eq!(
        link.job(Job::Bounded(bounded.clone())),
        1,
        "a release past the bound is refused in the child"
    );
    assert!(bounded.try_acquire().unwrap(), "the child's release");
    assert!(!bounded.try_acquire().unwrap());
    link.stop();
}

/// `Event`, `Condition`, `Barrier`.
fn signals(method: StartMethod, via: Via) {
    let _g = guard();
    let link = Link::start(method, via);
    let ev = Event::new().unwrap();
    link.send(Msg::Job(Job::Event(ev.clone())));
    assert!(ev.wait(Some(LONG)).unwrap(), "the child set it");
    assert_eq!(link.reply(), 0);

    let cond = Condition::new(None).unwrap();
    let flag = Value::new(0u32).unwrap();
    link.send(Msg::Job(Job::Condition(cond.clone(), flag.clone())));
    {
        let _held = cond.acquire().unwrap();
        flag.set(1);
        cond.notify_all().unwrap();
    }
    assert_eq!(
        link.reply(),
        1,
        "the child saw the flag under the condition"
    );

    let barrier = Barrier::new(2, Some(LONG)).unwrap();
    link.send(Msg::Job(Job::Barrier(barrier.clone())));
    let mine = barrier.wait().unwrap();
    let theirs = link.reply();
    let mut both = [mine as u64, theirs];
    both.sort_unstable();
    assert_eq!(both, [0, 1], "both parties passed together");
    link.stop();
}

/// `Value`, `Array`, `SharedMemory`, `ShareableList`.
fn memory(method: StartMethod, via: Via) {
    let _g = guard();
    let link = Link::start(method, via);
    let v = Value::new(41u64).unwrap();
    link.job(Job::Value(v.clone()));
    assert_eq!(v.get(), 42);

    let a = Array::<u32>::new(4).unwrap();
    link.job(Job::Array(a.clone()));
    assert_eq!(a.to_vec(), [10, 20, 30, 40]);

    let m = SharedMemory::create(None, 64).unwrap();
    let _unlink = Unlink(m.name().to_owned());
    link.job(Job::Shm(m.clone()));
    let mut got = [0u8; 10];
    m.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"from child");

    let l = ShareableList::create(None, &["0123456789".into(), 7.into()]).unwrap();
    let name = l.name().to_owned();
    let _unlink_list = Unlink(name.clone());
    assert_eq!(link.job(Job::List(l)), 7);
    let l = ShareableList::attach(&name).unwrap();
    assert_eq!(l.get(0).unwrap(), I::Str("from child".into()));
    link.stop();
}

/// Several handles in one message, one handle twice, handles nested in a
/// struct, a `Vec` and `Option`s.
fn composites(method: StartMethod, via: Via) {
    let _g = guard();
    let link = Link::start(method, via);
    let (ev, q, v) = (
        Event::new().unwrap(),
        Queue::new().unwrap(),
        Value::new(0u64).unwrap(),
    );
    link.job(Job::Several(ev.clone(), q.clone(), v.clone()));
    assert!(ev.is_set());
    assert_eq!(q.get_timeout(LONG).unwrap(), 5);
    assert_eq!(v.get(), 9);

    let ev = Event::new().unwrap();
    assert_eq!(
        link.job(Job::Twice(ev.clone(), ev.clone())),
        1,
        "both copies are the one event"
    );
    assert!(ev.is_set());

    let (a, b) = (Event::new().unwrap(), Event::new().unwrap());
    let (here, there) = pipe(true).unwrap();
    link.job(Job::Nested(Nest {
        label: "nested".into(),
        events: vec![Some(a.clone()), None, Some(b.clone())],
        conn: Some(there),
    }));
    assert!(a.is_set() && b.is_set());
    assert_eq!(here.recv::<String>().unwrap(), "nested");
    link.stop();
}
