//! `Process` on threads, `current_process`, `active_children`, `Manager`.

use std::time::Duration;

use mp_dummy::{Manager, Process};
use mp_testkit::guard;

#[test]
fn terminate_and_kill_are_clear_errors() {
    let _g = guard();
    let go = mp_dummy::Event::new().unwrap();
    let g = go.clone();
    let mut p = Process::new(
        move |_: ()| {
            g.wait(None).unwrap();
        },
        (),
    );
    p.start().unwrap();
    for e in [p.terminate().unwrap_err(), p.kill().unwrap_err()] {
        assert!(e.to_string().contains("cannot be killed"), "{e}");
    }
    assert!(p.is_alive(), "still running");
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    go.set();
    assert_eq!(p.join().unwrap(), 0);
    assert!(!p.is_alive());
    assert!(p.start().is_err(), "a thread starts once");
}

#[test]
fn names_current_process_and_active_children() {
    let _g = guard();
    let go = mp_dummy::Event::new().unwrap();
    let names = mp_dummy::Queue::new().unwrap();
    let (g, n) = (go.clone(), names.clone());
    let mut p = Process::new(
        move |_: ()| {
            n.put(mp_dummy::current_process().name().to_owned())
                .unwrap();
            g.wait(None).unwrap();
        },
        (),
    )
    .name("worker-a");
    assert_eq!(p.get_name(), "worker-a");
    p.start().unwrap();
    assert_eq!(names.get().unwrap(), "worker-a");
    assert!(
        mp_dummy::active_children()
            .iter()
            .any(|t| t.name() == "worker-a")
    );
    go.set();
    p.join().unwrap();
    assert!(
        !mp_dummy::active_children()
            .iter()
            .any(|t| t.name() == "worker-a")
    );
    assert_eq!(mp_dummy::current_process().pid(), std::process::id());
}

#[test]
fn the_manager_hands_out_in_process_objects_with_the_proxies_names() {
    let _g = guard();
    let m = Manager::new();
    let d = m.dict::<String, u32>().unwrap();
    d.update([("a".into(), 1), ("b".into(), 2)]).unwrap();
    assert_eq!(d.remove(&"a".into()).unwrap(), Some(1));
    assert_eq!(d.items().unwrap(), [("b".to_owned(), 2)]);
    let l = m.list::<u32>().unwrap();
    l.push(1).unwrap();
    assert!(l.get(5).is_err());
    let ns = m.namespace().unwrap();
    ns.set("x", &5u8).unwrap();
    assert_eq!(ns.get::<u8>("x").unwrap(), 5);
    assert!(ns.get::<u8>("y").is_err());
    let q = m.queue::<u32>().unwrap();
    let q2 = q.clone();
    let mut p = Process::new(move |_: ()| q2.put(4).unwrap(), ());
    p.start().unwrap();
    assert_eq!(q.get().unwrap(), 4);
    p.join().unwrap();
}

/// `_TestLock.test_rlock` (3.14's `locked()`), and an RLock another thread
/// holds is locked.
#[test]
fn an_rlock_is_locked_while_any_thread_holds_it() {
    let _g = guard();
    let lock = mp_dummy::RLock::new().unwrap();
    let a = lock.acquire().unwrap();
    let b = lock.acquire().unwrap();
    drop(b);
    assert!(lock.locked());
    drop(a);
    assert!(!lock.locked());
    let (held, release) = (
        mp_dummy::Event::new().unwrap(),
        mp_dummy::Event::new().unwrap(),
    );
    let (l, h, r) = (lock.clone(), held.clone(), release.clone());
    let mut p = Process::new(
        move |_: ()| {
            let _g = l.acquire().unwrap();
            h.set();
            r.wait(None).unwrap();
        },
        (),
    );
    p.start().unwrap();
    held.wait(None).unwrap();
    assert!(lock.locked());
    release.set();
    assert_eq!(p.join().unwrap(), 0);
    assert!(!lock.locked());
}
