//! `BaseManager`: registered user types, shared built-ins, remote use over
//! TCP with a key, `serve_forever`, nested proxies, and bad peers.

use std::time::Duration;

use mp_manager::{
    Args, BaseManager, BaseProxy, Builtin, DictProxy, Error, QueueProxy, Served, SyncManager,
    no_such_method, reply,
};
use mp_proc::connection::{Address, Listener};
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    a_registered_type_is_shared_with_children,
    a_remote_queue_over_tcp_is_shared_by_processes_that_know_the_key,
    a_proxy_in_a_dict_works_in_a_child_with_a_custom_authkey,
);

#[derive(Default)]
struct Counter(u64);

impl Served for Counter {
    fn call_method(&mut self, method: &str, args: Args<'_>) -> mp_manager::Result<Vec<u8>> {
        match method {
            "add" => {
                self.0 += args.decode::<u64>()?;
                reply(&self.0)
            }
            "get" => reply(&self.0),
            "panic" => panic!("asked to panic"),
            _ => Err(no_such_method("Counter", method)),
        }
    }
}

fn add_ten(c: BaseProxy) {
    for _ in 0..10 {
        c.call_method::<u64, u64>("add", &1).unwrap();
    }
}

fn a_registered_type_is_shared_with_children(method: StartMethod) {
    let _g = guard();
    let m = BaseManager::builder()
        .start_method(method)
        .register("Counter", Counter::default)
        .start()
        .unwrap();
    let c: BaseProxy = m.create("Counter").unwrap();
    let mut children: Vec<Process> = (0..3)
        .map(|_| {
            let mut p = Process::new(add_ten, c.clone()).start_method(method);
            p.start().unwrap();
            p
        })
        .collect();
    for p in &mut children {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(c.call_method::<(), u64>("get", &()).unwrap(), 30);
    // `register` makes a new object per create.
    let other: BaseProxy = m.create("Counter").unwrap();
    assert_eq!(other.call_method::<(), u64>("get", &()).unwrap(), 0);
    m.shutdown().unwrap();
}

#[test]
fn a_failing_panicking_or_unknown_method_fails_only_its_call() {
    let _g = guard();
    let m = BaseManager::builder()
        .register_shared("Counter", Counter::default)
        .start()
        .unwrap();
    let c: BaseProxy = m.create("Counter").unwrap();
    c.call_method::<u64, u64>("add", &5).unwrap();
    let unknown = c.call_method::<(), ()>("frobnicate", &()).unwrap_err();
    assert!(unknown.to_string().contains("frobnicate"), "{unknown}");
    let panicked = c.call_method::<(), ()>("panic", &()).unwrap_err();
    assert!(
        panicked.to_string().contains("asked to panic"),
        "{panicked}"
    );
    let bad_args = c.call_method::<&str, u64>("add", &"five").unwrap_err();
    assert!(matches!(bad_args, Error::Remote { .. }), "{bad_args}");
    assert!(m.create::<BaseProxy>("NoSuchType").is_err());
    // The object and the server go on; `register_shared` gives the same one.
    let same: BaseProxy = m.create("Counter").unwrap();
    assert_eq!(same.call_method::<(), u64>("get", &()).unwrap(), 5);
    m.shutdown().unwrap();
}

fn put_remotely((address, key, message): (String, Vec<u8>, String)) {
    let m = BaseManager::builder()
        .address(address.parse().unwrap())
        .authkey(&key)
        .connect()
        .unwrap();
    let q: QueueProxy<String> = m.create("get_queue").unwrap();
    q.put(message).unwrap();
}

/// CPython's documented remote-queue example: one process serves a queue
/// on TCP with a key; another connects by address and puts; a third gets.
fn a_remote_queue_over_tcp_is_shared_by_processes_that_know_the_key(method: StartMethod) {
    let _g = guard();
    let server = BaseManager::builder()
        .start_method(method)
        .tcp(0)
        .authkey(b"abracadabra")
        .share("get_queue", Builtin::Queue { maxsize: 0 })
        .start()
        .unwrap();
    let address = server.address().clone();
    let Address::Tcp(sa) = &address else {
        panic!("not TCP: {address}")
    };
    assert!(sa.ip().is_loopback(), "TCP binds to loopback unless told");
    let mut p = Process::new(
        put_remotely,
        (address.to_string(), b"abracadabra".to_vec(), "hello".into()),
    )
    .start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let client = BaseManager::builder()
        .address(address.clone())
        .authkey(b"abracadabra")
        .connect()
        .unwrap();
    let q: QueueProxy<String> = client.create("get_queue").unwrap();
    assert_eq!(q.get().unwrap(), "hello");
    let wrong = BaseManager::builder()
        .address(address)
        .authkey(b"not the key")
        .connect();
    assert!(matches!(wrong, Err(Error::Authentication(_))), "{wrong:?}");
    // The server goes on after a wrong key.
    q.put("again".into()).unwrap();
    assert_eq!(q.get().unwrap(), "again");
    drop((q, client));
    server.shutdown().unwrap();
}

fn serve_at(path: String) {
    BaseManager::builder()
        .address(Address::Unix(path.into()))
        .authkey(b"forever")
        .share("d", Builtin::Dict)
        .serve_forever()
        .unwrap();
}

#[test]
fn serve_forever_serves_until_a_client_stops_it() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.sock");
    let mut p = Process::new(serve_at, path.to_string_lossy().into_owned());
    p.start().unwrap();
    // Wait for the socket to listen (bounded: the child binds at once).
    let connect = || {
        BaseManager::builder()
            .address(Address::Unix(path.clone()))
            .authkey(b"forever")
            .connect()
    };
    let start = std::time::Instant::now();
    let m = loop {
        match connect() {
            Ok(m) => break m,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                std::thread::yield_now();
            }
            Err(e) => panic!("the server never listened: {e}"),
        }
    };
    let d: DictProxy<String, u32> = m.create("d").unwrap();
    d.insert("a".into(), 1).unwrap();
    let again: DictProxy<String, u32> = connect().unwrap().create("d").unwrap();
    assert_eq!(again.get(&"a".into()).unwrap(), Some(1));
    drop((d, again));
    m.stop_server().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(!path.exists(), "the socket was removed");
}

fn read_nested(d: DictProxy<String, QueueProxy<u32>>) {
    let q = d.get(&"q".into()).unwrap().expect("the stored proxy");
    q.put(5).unwrap();
}

/// A proxy stored in a dict and read back in another process reconnects
/// with the key its manager uses, not the process's own (CPython gh-78740
/// fails here with `AuthenticationError`).
fn a_proxy_in_a_dict_works_in_a_child_with_a_custom_authkey(method: StartMethod) {
    let _g = guard();
    let m = BaseManager::builder()
        .start_method(method)
        .authkey(b"a custom key")
        .share("d", Builtin::Dict)
        .share("q", Builtin::Queue { maxsize: 0 })
        .start()
        .unwrap();
    let d: DictProxy<String, QueueProxy<u32>> = m.create("d").unwrap();
    let q: QueueProxy<u32> = m.create("q").unwrap();
    d.insert("q".into(), q.clone()).unwrap();
    let mut p = Process::new(read_nested, d.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(q.get().unwrap(), 5);
    // Read back here too.
    let back = d.get(&"q".into()).unwrap().unwrap();
    back.put(6).unwrap();
    assert_eq!(q.get().unwrap(), 6);
    drop((d, q, back));
    m.shutdown().unwrap();
}

#[test]
fn the_authkey_never_shows_in_debug_output() {
    let _g = guard();
    let key = b"s3cr3t-k3y";
    let builder = BaseManager::builder()
        .authkey(key)
        .share("q", Builtin::Queue { maxsize: 0 });
    let shown = format!("{builder:?}");
    let m = builder.start().unwrap();
    let q: QueueProxy<u32> = m.create("q").unwrap();
    let s = SyncManager::start().unwrap();
    let all = format!(
        "{shown} {m:?} {q:?} {s:?} {:?}",
        s.dict::<u8, u8>().unwrap()
    );
    assert!(!all.contains("s3cr3t"), "{all}");
    let own = String::from_utf8_lossy(mp_proc::current_process().authkey()).into_owned();
    assert!(!all.contains(&own), "{all}");
    drop(q);
    m.shutdown().unwrap();
    s.shutdown().unwrap();
}

/// Replies to one request with bytes that are not a reply, then closes.
fn not_a_manager(listener: Listener) {
    for _ in 0..2 {
        if let Ok(c) = listener.accept() {
            let _ = c.recv_bytes();
            let _ = c.send_bytes(b"\xff\xfe not a manager");
        }
    }
}

#[test]
fn connecting_to_nothing_or_to_something_else_fails() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let nothing = Address::Unix(dir.path().join("nobody"));
    assert!(SyncManager::connect(&nothing, b"k").is_err());
    let address = Address::Unix(dir.path().join("other"));
    let listener = Listener::bind(address.clone(), Some(b"k")).unwrap();
    let t = std::thread::spawn(move || not_a_manager(listener));
    let r = SyncManager::connect(&address, b"k");
    assert!(r.is_err(), "{r:?}");
    let r = BaseManager::builder()
        .address(address)
        .authkey(b"k")
        .connect();
    assert!(r.is_err(), "{r:?}");
    t.join().unwrap();
}
