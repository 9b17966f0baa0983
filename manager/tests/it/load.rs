//! Load: 16 client processes × 10,000 operations on one shared dict and
//! one queue; the final state is exact and no call fails.

use std::collections::HashSet;

use mp_manager::{DictProxy, QueueProxy, SyncManager};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

const CLIENTS: u32 = 16;
const EACH: u32 = 5_000; // dict inserts, and as many queue puts: 10,000 operations

fn client((who, d, q): (u32, DictProxy<(u32, u32), u32>, QueueProxy<u32>)) {
    for j in 0..EACH {
        d.insert((who, j), who * j).unwrap();
        q.put(who * EACH + j).unwrap();
    }
}

#[test]
fn sixteen_processes_times_ten_thousand_operations_end_exact() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let d = m.dict::<(u32, u32), u32>().unwrap();
    let q = m.queue::<u32>().unwrap();
    let mut children: Vec<Process> = (0..CLIENTS)
        .map(|who| {
            let mut p =
                Process::new(client, (who, d.clone(), q.clone())).start_method(StartMethod::Fork);
            p.start().unwrap();
            p
        })
        .collect();
    // Drain the queue while the clients run.
    let mut seen = HashSet::new();
    for _ in 0..CLIENTS * EACH {
        assert!(seen.insert(q.get().unwrap()), "an item came twice");
    }
    for p in &mut children {
        assert_eq!(p.join().unwrap(), 0, "a client failed");
    }
    assert_eq!(seen.len() as u32, CLIENTS * EACH);
    assert_eq!(q.qsize().unwrap(), 0);
    let items = d.items().unwrap();
    assert_eq!(items.len() as u32, CLIENTS * EACH);
    assert!(items.iter().all(|((who, j), v)| *v == who * j));
    m.shutdown().unwrap();
}
