//! Handles after start, further along the tree (issue 15, item 1): the
//! parent's handles relayed by a child to a grandchild it starts, and handles
//! a child makes and sends back to the parent; through sockets (descriptors
//! with the frame) and through queues (tickets), under every start method.

use mp_proc::{Connection, Error, Event, Lock, Process, Queue, StartMethod, Value, pipe};
use mp_testkit::guard;
use serde::{Deserialize, Serialize};

use crate::handles::{Child, LONG};

mp_testkit::for_each_method!(
    handles_relayed_over_sockets_reach_a_grandchild,
    handles_relayed_through_queues_reach_a_grandchild,
    handles_a_child_makes_reach_the_parent_over_a_socket,
    handles_a_child_makes_reach_the_parent_through_a_queue,
);

/// What the parent hands down the tree.
#[derive(Serialize, Deserialize)]
struct Bundle {
    /// The grandchild sets it.
    event: Event,
    /// The grandchild puts its pid.
    queue: Queue<u32>,
    /// The grandchild says hello on it.
    conn: Connection,
    /// The grandchild adds 1.
    value: Value<u64>,
}

/// How the bundle travels at each hop.
#[derive(Serialize, Deserialize)]
enum Hop {
    Socket(Connection),
    Queue(Queue<Bundle>),
}

impl Hop {
    fn take(&self) -> mp_proc::Result<Bundle> {
        match self {
            Hop::Socket(c) => c.recv(),
            Hop::Queue(q) => q.get_timeout(LONG),
        }
    }

    fn give(&self, b: Bundle) -> mp_proc::Result<()> {
        match self {
            Hop::Socket(c) => c.send(&b),
            Hop::Queue(q) => q.put(b),
        }
    }

    fn is_queue(&self) -> bool {
        matches!(self, Hop::Queue(_))
    }
}

/// Two ends of a new hop: a duplex pipe, or one queue.
fn pair(queue: bool) -> (Hop, Hop) {
    if queue {
        let q = Queue::new().unwrap();
        (Hop::Queue(q.clone()), Hop::Queue(q))
    } else {
        let (a, b) = pipe(true).unwrap();
        (Hop::Socket(a), Hop::Socket(b))
    }
}

/// The grandchild: uses every handle of the bundle, reports on `done`.
fn grandchild((hop, done): (Hop, Connection)) {
    let r = hop.take().and_then(|b| {
        b.event.set();
        b.queue.put(std::process::id())?;
        b.conn.send("hello from the grandchild")?;
        *b.value.lock()? += 1;
        Ok(())
    });
    let _ = done.send(&r.map_err(|e| e.to_string()));
}

/// The child: takes the bundle, starts the grandchild, forwards it as it
/// came (a socket or a queue), and reports what the grandchild reported.
fn relay((hop, done, method): (Hop, Connection, StartMethod)) {
    let r = (|| -> Result<(), String> {
        let bundle = hop
            .take()
            .map_err(|e| format!("the child's receive: {e}"))?;
        let (near, far) = pair(hop.is_queue());
        let (done_r, done_w) = pipe(false).map_err(|e| e.to_string())?;
        let mut p = Process::new(grandchild, (far, done_w)).start_method(method);
        p.start().map_err(|e| e.to_string())?;
        near.give(bundle)
            .map_err(|e| format!("the child's forward: {e}"))?;
        // The child lives until the grandchild has used the bundle (a
        // ticket is redeemed from the process that issued it).
        let got = done_r
            .recv::<Result<(), String>>()
            .map_err(|e| format!("from the grandchild: {e}"))?;
        let code = p.join().map_err(|e| e.to_string())?;
        got.map_err(|e| format!("the grandchild: {e}"))?;
        if code != 0 {
            return Err(format!("the grandchild exited with {code}"));
        }
        Ok(())
    })();
    let _ = done.send(&r);
}

fn relay_to_a_grandchild(method: StartMethod, queue: bool) {
    let _g = guard();
    let (near, far) = pair(queue);
    let (done_r, done_w) = pipe(false).unwrap();
    let mut p = Child::start(method, relay, (far, done_w, method));
    let (here, there) = pipe(true).unwrap();
    let bundle = Bundle {
        event: Event::new().unwrap(),
        queue: Queue::new().unwrap(),
        conn: there,
        value: Value::new(1).unwrap(),
    };
    let (event, queue, value) = (
        bundle.event.clone(),
        bundle.queue.clone(),
        bundle.value.clone(),
    );
    if let Err(e) = near.give(bundle) {
        panic!("sending to the child: {e:?}");
    }
    // The grandchild uses the bundle without waiting for this process, and
    // the child reports once the grandchild did (or what went wrong).
    assert!(done_r.poll(Some(LONG)).unwrap(), "the child never reported");
    assert_eq!(done_r.recv::<Result<(), String>>().unwrap(), Ok(()));
    assert!(event.is_set(), "the grandchild set it");
    let pid = queue.get_timeout(LONG).unwrap();
    assert_ne!(pid, std::process::id());
    assert_ne!(Some(pid), p.0.pid(), "it came from the grandchild");
    assert_eq!(here.recv::<String>().unwrap(), "hello from the grandchild");
    assert_eq!(value.get(), 2);
    assert_eq!(p.0.join().unwrap(), 0);
    // Every copy of the connection's other end is gone with the processes.
    assert!(matches!(here.recv::<String>(), Err(Error::Eof)));
}

fn handles_relayed_over_sockets_reach_a_grandchild(method: StartMethod) {
    relay_to_a_grandchild(method, false);
}

fn handles_relayed_through_queues_reach_a_grandchild(method: StartMethod) {
    relay_to_a_grandchild(method, true);
}

/// What a child makes and sends to the parent.
#[derive(Serialize, Deserialize)]
struct Made {
    /// An end of a duplex pipe the child made; the child waits on the other.
    conn: Connection,
    /// A queue the child made, with 5 in it.
    queue: Queue<u32>,
    /// A lock the child made and holds until the event is set.
    lock: Lock,
    /// The parent sets it when done.
    event: Event,
}

#[derive(Serialize, Deserialize)]
enum Back {
    Socket(Connection),
    Queue(Queue<Made>, Connection),
}

fn make_and_send(back: Back) {
    let r = (|| -> mp_proc::Result<String> {
        let (mine, theirs) = pipe(true)?;
        let made = Made {
            conn: theirs,
            queue: Queue::new()?,
            lock: Lock::new()?,
            event: Event::new()?,
        };
        made.queue.put(5)?;
        let (lock, event) = (made.lock.clone(), made.event.clone());
        let held = lock.acquire()?;
        let report = match &back {
            Back::Socket(c) => {
                c.send(&Ok::<Made, String>(made))?;
                c.clone()
            }
            Back::Queue(q, c) => {
                q.put(made)?;
                c.send(&Ok::<(), String>(()))?;
                c.clone()
            }
        };
        let said: String = mine.recv()?;
        // The child lives (and holds the lock) until the parent is done.
        let set = event.wait(Some(LONG))?;
        drop(held);
        report.send(&set)?;
        Ok(said)
    })();
    if let Err(e) = r {
        let conn = match &back {
            Back::Socket(c) | Back::Queue(_, c) => c,
        };
        // The parent expects a `Result` of the same layout either way: an
        // `Err` of a string.
        let _ = conn.send(&Err::<(), String>(format!("the child failed: {e}")));
        mp_proc::exit(3);
    }
}

fn from_a_child(method: StartMethod, via_queue: bool) {
    let _g = guard();
    let (here, there) = pipe(true).unwrap();
    let q = Queue::new().unwrap();
    let back = if via_queue {
        Back::Queue(q.clone(), there)
    } else {
        Back::Socket(there)
    };
    let mut p = Child::start(method, make_and_send, back);
    assert!(here.poll(Some(LONG)).unwrap(), "the child never reported");
    let made: Made = if via_queue {
        match here.recv::<Result<(), String>>() {
            Ok(Ok(())) => {}
            other => panic!("the child: {other:?}"),
        }
        q.get_timeout(LONG)
            .unwrap_or_else(|e| panic!("receiving the child's handles: {e:?}"))
    } else {
        match here.recv::<Result<Made, String>>() {
            Ok(Ok(made)) => made,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("receiving the child's handles: {e:?}"),
        }
    };
    assert_eq!(made.queue.get_timeout(LONG).unwrap(), 5);
    assert!(
        made.lock.try_acquire().unwrap().is_none(),
        "the child holds its lock"
    );
    made.conn.send("hello from the parent").unwrap();
    made.event.set();
    assert!(here.poll(Some(LONG)).unwrap());
    assert!(here.recv::<bool>().unwrap(), "the child saw the event set");
    assert!(
        made.lock.acquire_timeout(LONG).unwrap().is_some(),
        "the child released its lock"
    );
    assert_eq!(p.0.join().unwrap(), 0);
}

fn handles_a_child_makes_reach_the_parent_over_a_socket(method: StartMethod) {
    from_a_child(method, false);
}

fn handles_a_child_makes_reach_the_parent_through_a_queue(method: StartMethod) {
    from_a_child(method, true);
}
