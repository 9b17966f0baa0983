//! A process's sentinel wakes `epoll` (what an event loop such as tokio's
//! `AsyncFd` waits with) when the process ends, under every start method: a
//! pidfd under fork and spawn, the fork server's status pipe under
//! forkserver.

use std::time::Duration;

use mp_proc::{Event, Process, StartMethod};
use mp_testkit::guard;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

mp_testkit::for_each_method!(epoll_on_the_sentinel_wakes_when_the_child_ends);

fn wait_for(go: Event) {
    go.wait(None).unwrap();
}

fn epoll_on_the_sentinel_wakes_when_the_child_ends(method: StartMethod) {
    let _g = guard();
    let go = Event::new().unwrap();
    let mut p = Process::new(wait_for, go.clone()).start_method(method);
    p.start().unwrap();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    epoll
        .add(
            p.sentinel().unwrap(),
            EpollEvent::new(EpollFlags::EPOLLIN, 7),
        )
        .unwrap();
    let mut events = [EpollEvent::empty(); 2];
    assert_eq!(
        epoll.wait(&mut events, EpollTimeout::ZERO).unwrap(),
        0,
        "the child is running"
    );
    go.set();
    // The limit only turns a missing wake-up into a failure.
    let limit = EpollTimeout::try_from(Duration::from_secs(30)).unwrap();
    assert_eq!(
        epoll.wait(&mut events, limit).unwrap(),
        1,
        "woken by the end"
    );
    assert_eq!(events[0].data(), 7);
    assert!(events[0].events().contains(EpollFlags::EPOLLIN));
    // It has ended: join does not wait.
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), Some(0));
    epoll.delete(p.sentinel().unwrap()).unwrap();
}
