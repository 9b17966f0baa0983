//! CPython's manager tests (Lib/test/_test_multiprocessing.py of 3.11) that
//! had no port, under fork, spawn and forkserver.

use mp_manager::{BaseManager, BoundedSemaphoreProxy, Builtin, QueueProxy, SyncManager};
use mp_proc::connection::Address;
use mp_proc::{Process, StartMethod};
use mp_testkit::guard;

mp_testkit::for_each_method!(test_rapid_restart, test_bounded_semaphore);

/// CPython's `_TestManagerRestart._putter`.
fn putter((address, authkey): (String, Vec<u8>)) {
    let manager = BaseManager::builder()
        .address(address.parse().unwrap())
        .authkey(&authkey)
        .connect()
        .unwrap();
    let queue: QueueProxy<String> = manager.create("get_queue").unwrap();
    queue.put("hello world".into()).unwrap();
}

/// CPython's `QueueManager` with `get_queue`, at `address`.
fn queue_manager(method: StartMethod, address: Address, authkey: &[u8]) -> BaseManager {
    BaseManager::builder()
        .start_method(method)
        .address(address)
        .authkey(authkey)
        .share("get_queue", Builtin::Queue { maxsize: 0 })
        .start()
        .unwrap()
}

/// CPython: `_TestManagerRestart.test_rapid_restart`: a manager on a TCP
/// address is used, shut down, and a new one starts on the same address
/// at once (CPython retries once after a second on `EADDRINUSE`; mp must
/// not need to).
fn test_rapid_restart(method: StartMethod) {
    let _g = guard();
    let authkey = b"rapid restart key of 32 bytes!!!".to_vec();
    let manager = queue_manager(method, "127.0.0.1:0".parse().unwrap(), &authkey);
    let addr = manager.address().clone();
    let mut p = Process::new(putter, (addr.to_string(), authkey.clone())).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let queue: QueueProxy<String> = manager.create("get_queue").unwrap();
    assert_eq!(queue.get().unwrap(), "hello world");
    drop(queue);
    manager.shutdown().unwrap();

    let manager = queue_manager(method, addr.clone(), &authkey);
    assert_eq!(manager.address(), &addr);
    manager.shutdown().unwrap();
}

/// CPython's `TestSyncManagerTypes._test_semaphore`.
fn semaphore_in_child(obj: BoundedSemaphoreProxy) {
    obj.acquire().unwrap();
    obj.release().unwrap();
}

/// CPython: `TestSyncManagerTypes.test_bounded_semaphore`
/// (`run_worker`: the child's checks pass, it exits with 0).
fn test_bounded_semaphore(method: StartMethod) {
    let _g = guard();
    let manager = SyncManager::start_with(method).unwrap();
    let o = manager.bounded_semaphore(1).unwrap();
    let mut p = Process::new(semaphore_in_child, o.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    manager.shutdown().unwrap();
}
