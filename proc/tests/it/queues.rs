//! Queues across processes of every start method, and their bad inputs.

use std::collections::BTreeMap;
use std::time::Duration;

use mp_proc::{Connection, Error, Event, Process, Queue, SimpleQueue, StartMethod, pipe};

use mp_testkit::{Undecodable, Unserializable, guard};

// FIFO order, many producers and consumers, bounds, timeouts and joinable
// queues are in the conformance suite; these are the process-specific ones.
mp_testkit::for_each_method!(
    a_producer_that_exits_with_items_queued_is_joined_at_once,
    close_wakes_a_blocked_getter,
    a_consumer_killed_while_getting_does_not_wedge_the_queue,
    a_bounded_queue_blocks_a_producer_until_a_get,
);

fn produce_bulk((q, n): (Queue<Vec<u8>>, usize)) {
    for i in 0..n {
        q.put(vec![(i % 256) as u8; 10_000]).unwrap();
    }
}

fn a_producer_that_exits_with_items_queued_is_joined_at_once(method: StartMethod) {
    let _g = guard();
    // 20 MB: far more than any pipe holds. CPython's producer could not exit.
    let q = Queue::new().unwrap();
    let mut p = Process::new(produce_bulk, (q.clone(), 2000)).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(q.qsize(), 2000);
    for i in 0..2000 {
        assert_eq!(q.get().unwrap(), vec![(i % 256) as u8; 10_000]);
    }
}

fn blocked_getter((q, ready, out): (Queue<u8>, Event, Connection)) {
    ready.set();
    let r = q.get();
    out.send(&matches!(r, Err(Error::Closed))).unwrap();
}

fn close_wakes_a_blocked_getter(method: StartMethod) {
    let _g = guard();
    let q = Queue::new().unwrap();
    let ready = Event::new().unwrap();
    let (here, there) = pipe(true).unwrap();
    let mut p =
        Process::new(blocked_getter, (q.clone(), ready.clone(), there)).start_method(method);
    p.start().unwrap();
    ready.wait(None).unwrap();
    q.close();
    assert!(
        here.recv::<bool>().unwrap(),
        "the blocked getter got Closed"
    );
    assert_eq!(p.join().unwrap(), 0);
    assert!(matches!(q.put(1), Err(Error::Closed)));
    assert!(q.is_closed());
}

#[test]
fn a_closed_queue_drains_then_fails() {
    let _g = guard();
    let q = SimpleQueue::new().unwrap();
    q.put(1u8).unwrap();
    q.put(2).unwrap();
    q.close();
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
    assert!(matches!(q.get(), Err(Error::Closed)));
    assert!(matches!(
        q.get_timeout(Duration::from_secs(60)),
        Err(Error::Closed)
    ));
}

fn hungry_consumer((q, started): (Queue<u64>, Event)) {
    started.set();
    loop {
        let _ = q.get();
    }
}

fn a_consumer_killed_while_getting_does_not_wedge_the_queue(method: StartMethod) {
    let _g = guard();
    let q = Queue::new().unwrap();
    for i in 0..200_000u64 {
        q.put(i).unwrap();
    }
    let started = Event::new().unwrap();
    let mut p = Process::new(hungry_consumer, (q.clone(), started.clone())).start_method(method);
    p.start().unwrap();
    started.wait(None).unwrap();
    // Kill it while it drains (usually inside get, holding the consumer lock).
    while q.qsize() > 100_000 {
        std::thread::yield_now();
    }
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGKILL);
    // What is left comes out in order; the queue works as before.
    let left = q.qsize();
    let mut prev = None;
    for _ in 0..left {
        let v = q
            .get_timeout(Duration::from_secs(120))
            .expect("the queue is wedged");
        assert!(prev.is_none_or(|p| v > p));
        prev = Some(v);
    }
    assert_eq!(prev, Some(199_999));
    q.put(7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
}

fn put_three((q, out): (Queue<u8>, Connection)) {
    for i in 0..3 {
        q.put(i).unwrap();
        out.send(&i).unwrap();
    }
}

fn a_bounded_queue_blocks_a_producer_until_a_get(method: StartMethod) {
    let _g = guard();
    let q = Queue::with_maxsize(2).unwrap();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(put_three, (q.clone(), there)).start_method(method);
    p.start().unwrap();
    assert_eq!(here.recv::<u8>().unwrap(), 0);
    assert_eq!(here.recv::<u8>().unwrap(), 1);
    assert!(
        !here.poll(Some(Duration::from_millis(20))).unwrap(),
        "the third put waits for room"
    );
    assert!(q.full());
    assert_eq!(q.get().unwrap(), 0);
    assert_eq!(here.recv::<u8>().unwrap(), 2);
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!((q.get().unwrap(), q.get().unwrap()), (1, 2));
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Item {
    Good(u32),
    Bad(Undecodable),
}

#[test]
fn bad_items_are_errors_and_the_queue_goes_on() {
    let _g = guard();
    let q: Queue<BTreeMap<u8, Unserializable>> = Queue::new().unwrap();
    let mut m = BTreeMap::new();
    m.insert(1, Unserializable);
    match q.put(m) {
        Err(Error::Encode(e)) => assert!(e.to_string().contains("refuses"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(q.empty(), "nothing half-put");

    let q: Queue<Item> = Queue::new().unwrap();
    q.put(Item::Bad(Undecodable)).unwrap();
    q.put(Item::Good(5)).unwrap();
    assert!(matches!(q.get(), Err(Error::Decode(_))));
    assert!(matches!(q.get(), Ok(Item::Good(5))));

    let small: Queue<Vec<u8>> = Queue::with_capacity(0, 64 << 10).unwrap();
    let max = small.max_item_size();
    match small.put(vec![0; 100 << 10]) {
        Err(Error::ItemTooLarge { max: m, .. }) => assert_eq!(m, max),
        other => panic!("{other:?}"),
    }
    small.put(vec![1; 1000]).unwrap();
    assert_eq!(small.get().unwrap(), vec![1; 1000]);
    // Many rounds through a small ring: wrapping records stay whole.
    for round in 0..200u32 {
        small
            .put(vec![(round % 251) as u8; 3000 + round as usize])
            .unwrap();
        assert_eq!(
            small.get().unwrap(),
            vec![(round % 251) as u8; 3000 + round as usize]
        );
    }
}
