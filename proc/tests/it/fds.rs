//! A child gets exactly the descriptors it was given: stdio, the handles in
//! its args, and its parent's alive pipe. Nothing else leaks into it.

use std::os::fd::AsFd;

use mp_proc::{Connection, StartMethod, get_context, pipe};

use mp_testkit::guard;

mp_testkit::for_each_method!(only_the_passed_descriptors_reach_the_child);

type FdList = Vec<(i32, String)>;

fn list_fds() -> FdList {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap();
        let target = std::fs::read_link(entry.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !target.starts_with("/proc/") {
            out.push((fd, target));
        }
    }
    out.sort();
    out
}

fn report_fds(conn: Connection) {
    conn.send(&list_fds()).unwrap();
}

fn return_fds(_: ()) -> FdList {
    list_fds()
}

fn target_of(conn: &impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", conn.as_fd().as_raw_fd()))
        .unwrap()
        .display()
        .to_string()
}

fn only_the_passed_descriptors_reach_the_child(method: StartMethod) {
    let _g = guard();
    // A canary the child must not see: a file opened without close-on-exec.
    let dir = tempfile::tempdir().unwrap();
    let canary_path = dir.path().join("canary");
    let canary = std::fs::File::create(&canary_path).unwrap();
    nix::fcntl::fcntl(
        &canary,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    // And connections that are not passed.
    let (other_a, other_b) = pipe(true).unwrap();
    let (other_r, other_w) = pipe(false).unwrap();
    let unpassed = [
        target_of(&other_a),
        target_of(&other_b),
        target_of(&other_r),
        target_of(&other_w),
    ];

    let (here, there) = pipe(true).unwrap();
    let passed = target_of(&there);
    let mut p = get_context(method).process(report_fds, there);
    p.start().unwrap();
    let fds: FdList = here.recv().unwrap();
    assert_eq!(p.join().unwrap(), 0);

    let canary_shown = canary_path.display().to_string();
    for (fd, target) in &fds {
        assert_ne!(target, &canary_shown, "the canary leaked as fd {fd}");
        assert!(
            !unpassed.contains(target),
            "an unpassed connection leaked as fd {fd}: {target}"
        );
    }
    assert_eq!(
        fds[0],
        (0, "/dev/null".to_string()),
        "stdin is /dev/null: {fds:?}"
    );
    assert_eq!(fds[1].0, 1);
    assert_eq!(fds[2].0, 2);
    assert!(
        fds.iter().any(|(_, t)| *t == passed),
        "the passed connection arrived: {fds:?}"
    );
    assert!(
        fds.iter().any(|(_, t)| t.starts_with("pipe:")),
        "the alive pipe arrived: {fds:?}"
    );
    assert_eq!(
        fds.len(),
        5,
        "stdio, the connection and the alive pipe, nothing else: {fds:?}"
    );

    // A spawned function also gets its result pipe, and nothing else.
    let fds = get_context(method)
        .spawn(return_fds, ())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        fds.len(),
        5,
        "stdio, the alive pipe and the result pipe: {fds:?}"
    );
    drop((canary, other_a, other_b, other_r, other_w));
}

fn hold(_: Vec<Connection>) {}

/// More descriptors than one message to the fork server carries is the
/// caller's argument, refused as such (not an OS error), and nothing leaks;
/// fork and spawn have no such limit.
#[test]
fn args_with_more_descriptors_than_the_fork_server_takes_are_refused() {
    let _g = guard();
    let ends: Vec<Connection> = (0..130)
        .flat_map(|_| {
            let (a, b) = pipe(false).unwrap();
            [a, b]
        })
        .collect();
    let mut p = get_context(StartMethod::Forkserver).process(hold, ends);
    let r = p.start();
    assert!(
        matches!(&r, Err(mp_proc::Error::Invalid { reason, .. }) if reason.contains("descriptors")),
        "{r:?}"
    );
}
