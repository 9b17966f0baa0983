//! Handles after start through a manager's server (issue 15, item 1): a
//! handle stored in a managed list or dict travels as a ticket through the
//! server, and the process that reads it back uses it; once, as a ticket is
//! good for one redemption. Under every start method.

use std::time::Duration;

use mp_manager::{DictProxy, Error, ListProxy, SyncManager};
use mp_proc::{Connection, Event, Process, Queue, StartMethod, TicketFailure, Value, pipe};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    handles_in_a_managed_list_reach_another_process,
    a_handle_a_child_stores_in_a_managed_dict_reaches_the_parent,
);

/// A deadline only so that a bug shows as a failure instead of a hang.
const LONG: Duration = Duration::from_secs(120);

type Stored = (Event, Queue<u32>, Connection);

/// A started child, killed and reaped if the test fails.
struct Child(Process);

impl Drop for Child {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.kill();
            let _ = self.0.join();
        }
    }
}

fn start<A: mp_proc::Payload>(method: StartMethod, f: fn(A), args: A) -> Child {
    let mut p = Process::new(f, args).start_method(method);
    p.start().unwrap();
    Child(p)
}

/// Reads the parent's handles from the list and uses each; a second read of
/// the same ticket must be refused. Reports on `out`.
fn use_stored((list, out): (ListProxy<Stored>, Connection)) {
    let r = (|| -> Result<(), String> {
        let (ev, q, conn) = list.get(0).map_err(|e| format!("list.get: {e}"))?;
        ev.set();
        q.put(7).map_err(|e| e.to_string())?;
        conn.send("through the manager")
            .map_err(|e| e.to_string())?;
        match list.get(0) {
            Err(Error::TicketUnavailable {
                reason: TicketFailure::AlreadyRedeemed,
                ..
            }) => Ok(()),
            other => Err(format!(
                "a second read of the same tickets: {:?}",
                other.map(|_| "handles")
            )),
        }
    })();
    let _ = out.send(&r);
}

fn handles_in_a_managed_list_reach_another_process(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let list = m.list::<Stored>().unwrap();
    let (ev, q) = (Event::new().unwrap(), Queue::new().unwrap());
    let (r, w) = pipe(false).unwrap();
    if let Err(e) = list.push((ev.clone(), q.clone(), w)) {
        panic!("storing handles in a managed list: {e:?}");
    }
    let (out_r, out_w) = pipe(false).unwrap();
    let mut p = start(method, use_stored, (list.clone(), out_w));
    assert!(out_r.poll(Some(LONG)).unwrap(), "the child never reported");
    assert_eq!(out_r.recv::<Result<(), String>>().unwrap(), Ok(()));
    assert!(ev.is_set(), "the child set it");
    assert_eq!(q.get_timeout(LONG).unwrap(), 7);
    assert_eq!(r.recv::<String>().unwrap(), "through the manager");
    assert_eq!(p.0.join().unwrap(), 0);
    drop(list);
    m.shutdown().unwrap();
}

/// Makes a value, stores it in the dict, tells the parent, and waits (alive:
/// the ticket is redeemed from this process) until the parent is done;
/// then checks the parent's write.
fn store_in_dict((dict, out, done): (DictProxy<String, Value<u64>>, Connection, Event)) {
    let r = (|| -> Result<u64, String> {
        let v = Value::new(5u64).map_err(|e| e.to_string())?;
        dict.insert("v".into(), v.clone())
            .map_err(|e| format!("dict.insert: {e}"))?;
        out.send(&Ok::<u64, String>(0)).map_err(|e| e.to_string())?;
        if !done.wait(Some(LONG)).map_err(|e| e.to_string())? {
            return Err("the parent never finished".into());
        }
        Ok(v.get())
    })();
    let _ = out.send(&r);
}

fn a_handle_a_child_stores_in_a_managed_dict_reaches_the_parent(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let dict = m.dict::<String, Value<u64>>().unwrap();
    let done = Event::new().unwrap();
    let (out_r, out_w) = pipe(false).unwrap();
    let mut p = start(method, store_in_dict, (dict.clone(), out_w, done.clone()));
    assert!(out_r.poll(Some(LONG)).unwrap(), "the child never reported");
    assert_eq!(out_r.recv::<Result<u64, String>>().unwrap(), Ok(0));
    let v = match dict.get(&"v".to_string()) {
        Ok(Some(v)) => v,
        other => panic!("reading the child's value: {:?}", other.map(|_| "a value")),
    };
    assert_eq!(v.get(), 5);
    v.set(6);
    done.set();
    assert!(out_r.poll(Some(LONG)).unwrap());
    assert_eq!(
        out_r.recv::<Result<u64, String>>().unwrap(),
        Ok(6),
        "the child sees the parent's write"
    );
    assert_eq!(p.0.join().unwrap(), 0);
    drop(dict);
    m.shutdown().unwrap();
}
