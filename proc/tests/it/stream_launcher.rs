//! `Launcher::stream`: a link that the caller opens (here a socket pair to
//! an agent, through a relay that records every byte), which must never
//! carry the authkey: the agent reads its key from the job's key file.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use mp_proc::connection::{AUTHKEY_FILE_VAR, Address, Client, Listener};
use mp_proc::{Error, Launcher, Process, current_process};
use mp_testkit::guard;

/// A key file (mode 0600) holding `key`.
fn key_file(dir: &Path, key: &[u8]) -> PathBuf {
    let path = dir.join("key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(key).unwrap();
    path
}

/// Copies `from` to `to`, appending what passes to `log`, until end of
/// file; then ends `to`'s writing side.
fn relay(mut from: UnixStream, mut to: UnixStream, log: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 65536];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The threads of a [`relayed`] launcher: its agents' reapers, its relays.
type Threads = Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>;

/// Joins `threads` (the agents reaped, the relays at their end).
fn join(threads: &Threads) {
    for t in std::mem::take(&mut *threads.lock().unwrap()) {
        t.join().unwrap();
    }
}

/// A stream launcher (host `name`: each test its own, as a host that
/// refused a start is down for a while) whose every link is a socket pair
/// to an agent (run with `env`), through a relay that records both
/// directions in `log`.
fn relayed(
    name: &'static str,
    env: Vec<(&'static str, PathBuf)>,
    log: Arc<Mutex<Vec<u8>>>,
    threads: Threads,
) -> Launcher {
    Launcher::stream(name, move || -> std::io::Result<OwnedFd> {
        let (ours, near) = UnixStream::pair()?;
        let (far, theirs) = UnixStream::pair()?;
        let theirs = OwnedFd::from(theirs);
        let mut agent = Command::new(std::env::current_exe()?);
        agent
            .arg(mp_proc::plumbing::AGENT_MARKER)
            .stdin(Stdio::from(theirs.try_clone()?))
            .stdout(Stdio::from(theirs));
        for (var, value) in &env {
            agent.env(var, value);
        }
        let mut agent = agent.spawn()?;
        let (near2, far2) = (near.try_clone()?, far.try_clone()?);
        let (down, up) = (log.clone(), log.clone());
        threads.lock().unwrap().extend([
            std::thread::spawn(move || drop(agent.wait())),
            std::thread::spawn(move || relay(near, far, down)),
            std::thread::spawn(move || relay(far2, near2, up)),
        ]);
        Ok(ours.into())
    })
}

fn hello(address: String) {
    let address: Address = address.parse().unwrap();
    let conn = Client::connect(&address, Some(current_process().authkey())).unwrap();
    conn.send(&"hello with the key of the file").unwrap();
}

/// The process runs, passes a handshake with this process's key (which its
/// agent read from the key file), and none of the link's bytes, either
/// way, holds the key.
#[test]
fn the_key_is_never_on_a_stream_link() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let key = current_process().authkey().to_vec();
    let file = key_file(dir.path(), &key);
    let log = Arc::new(Mutex::new(Vec::new()));
    let threads = Threads::default();
    let l = Listener::bind("127.0.0.1:0".parse().unwrap(), Some(&key)).unwrap();
    let far = relayed(
        "keyed",
        vec![(AUTHKEY_FILE_VAR, file)],
        log.clone(),
        threads.clone(),
    )
    .forward(l.address().clone());
    let mut p = Process::new(hello, l.address().to_string()).launcher(far);
    p.start().unwrap();
    let conn = l.accept().unwrap();
    assert_eq!(
        conn.recv::<String>().unwrap(),
        "hello with the key of the file"
    );
    assert_eq!(p.join().unwrap(), 0);
    drop((p, conn));
    join(&threads);
    let log = log.lock().unwrap();
    assert!(
        log.len() > 100,
        "the boot and the handshake went through the relay"
    );
    assert!(
        !log.windows(key.len()).any(|w| w == key),
        "the authkey crossed the link"
    );
}

fn nothing(_: ()) {}

/// An agent with no key file refuses the process, saying why.
#[test]
fn an_agent_without_a_key_file_refuses() {
    let _g = guard();
    let log = Arc::new(Mutex::new(Vec::new()));
    let threads = Threads::default();
    let mut p =
        Process::new(nothing, ()).launcher(relayed("keyless", Vec::new(), log, threads.clone()));
    match p.start() {
        Err(Error::RemoteStart { reason, .. }) => {
            assert!(reason.contains(AUTHKEY_FILE_VAR), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    drop(p);
    join(&threads);
}
