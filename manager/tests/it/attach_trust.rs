//! `ClusterContext::from_launcher` against what another local user, a
//! stale job or a peer without the key can do: address files it may not
//! trust, silent connections, an address file of another job. The copies
//! are the attach tests' [`fixture`](super::attach) (this test binary).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mp_proc::connection::{Address, Client, Listener};

use mp_testkit::guard;

use super::attach::{
    Engine, HUNG, common, copy, free_address, held_job_with, mapped, outputs, said_all, tagged,
};

/// A FIFO where the address file should be: a copy does not wait on it for
/// a writer; it fails by its deadline, naming the file and why.
#[test]
fn a_fifo_as_the_address_file_does_not_hang_a_copy() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("address");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS_FILE", fifo.display().to_string()));
    vars.push(("MP_CLUSTER_TIMEOUT", "2".into()));
    vars.extend(Engine::Pmi.vars(1, 2));
    let tag = format!("attach-fifo-{}", std::process::id());
    let said = said_all(vec![copy(1, &tag, "map", &vars).spawn().unwrap()]).remove(0);
    assert!(
        said.starts_with("refused:")
            && said.contains(&fifo.display().to_string())
            && said.contains("not a regular file"),
        "{said}"
    );
}

/// The address file names rank 0's real address, but others may write it
/// (mode 0666): the copy does not trust it, and says why; rank 0 (told its
/// address directly) names the copy missing.
#[test]
fn an_address_file_others_may_write_is_not_dialed() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let at = free_address();
    let file = dir.path().join("address");
    write_mode(&file, &format!("{at}\n"), 0o666);
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_TIMEOUT", "3".into()));
    let tag = format!("attach-open-file-{}", std::process::id());
    let with = |rank: usize, var: &'static str, value: String| {
        let mut v = vars.clone();
        v.push((var, value));
        v.extend(Engine::OpenMpi.vars(rank, 2));
        copy(rank, &tag, "map", &v).spawn().unwrap()
    };
    let copies: Vec<Child> = vec![
        with(0, "MP_CLUSTER_ADDRESS", at),
        with(1, "MP_CLUSTER_ADDRESS_FILE", file.display().to_string()),
    ];
    let said = said_all(copies);
    assert!(
        said[0].contains("1 of the 1 other copies did not attach"),
        "{}",
        said[0]
    );
    assert!(
        said[1].contains("is not trusted") && said[1].contains("0666"),
        "{}",
        said[1]
    );
}

/// Writes `text` to a new file at `path` of mode `mode` (whatever the
/// umask).
fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Silent connections to rank 0 (no key, not a byte sent), more than it
/// greets at once (`2 * 3 + 16` for a job of three): those over the cap
/// are closed at once (no challenge sent on them), the others get their
/// challenge; with all of them still open, the real copies attach (once the
/// greeted ones' handshakes time out) and the job runs.
#[test]
fn silent_connections_over_the_cap_are_closed_and_the_job_runs() {
    const SILENT: usize = 40;
    const CAP: usize = 2 * 3 + 16;
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let at = free_address();
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS", at.clone()));
    let tag = format!("attach-silent-{}", std::process::id());
    let with = |rank: usize| {
        let mut v = vars.clone();
        v.extend(Engine::Slurm.vars(rank, 3));
        copy(rank, &tag, "map", &v).spawn().unwrap()
    };
    let rank0 = with(0);
    let mut first = None;
    let listening = mp_testkit::wait_until(HUNG, || {
        first = TcpStream::connect(&at).ok();
        first.is_some()
    });
    assert!(listening, "rank 0 never listened at {at}");
    let mut silent: Vec<TcpStream> = first.into_iter().collect();
    while silent.len() < SILENT {
        silent.push(TcpStream::connect(&at).unwrap());
    }
    // Each one's first read: the challenge (greeted), or the end at once
    // (closed over the cap).
    let greeted = silent
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(HUNG)).unwrap();
            let mut byte = [0u8; 1];
            let mut stream: &TcpStream = s;
            match stream.read(&mut byte) {
                Ok(n) => n > 0,
                Err(e) => {
                    assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "no answer");
                    false
                }
            }
        })
        .count();
    assert!(greeted <= CAP, "{greeted} of {SILENT} greeted at once");
    assert!(greeted > 0, "none greeted");
    // The silent connections stay open: the copies are closed at once
    // while the cap is full, try again, and get in once the greeted ones'
    // handshakes have timed out.
    let copies: Vec<Child> = vec![rank0, with(1), with(2)];
    let said = said_all(copies);
    assert!(mapped(3)(&said[0]), "{}", said[0]);
    assert_eq!(said[1..], ["served", "served"]);
    drop(silent);
}

/// The address file names a stale coordinator whose key is another (an
/// earlier job's): the copies fail its handshake, and keep reading the
/// file; rank 0, started after, rewrites it (this host's first address, its
/// port), the copies attach and the job runs; rank 0 removes the file when
/// it is done.
#[test]
fn a_copy_refused_by_a_stale_coordinator_reads_the_file_again() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("address");
    let stale = Listener::bind(
        Address::Tcp("127.0.0.1:0".parse().unwrap()),
        Some(b"an earlier job's key"),
    )
    .unwrap();
    let Address::Tcp(stale_at) = stale.address().clone() else {
        panic!("a TCP listener has a TCP address");
    };
    write_mode(&file, &format!("{stale_at}\n"), 0o600);
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS_FILE", file.display().to_string()));
    let tag = format!("attach-stale-{}", std::process::id());
    let with = |rank: usize| {
        let mut v = vars.clone();
        v.extend(Engine::OpenMpi.vars(rank, 3));
        let mut c = copy(rank, &tag, "hold", &v);
        c.stdin(Stdio::piped());
        c.spawn().unwrap()
    };
    let copies = vec![with(1), with(2)];
    // Both copies fail the stale coordinator's handshake; then it is gone
    // (what waits in its backlog is refused).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let failed = (0..2)
            .filter(|_| stale.accept_pending().unwrap().authenticate().is_err())
            .count();
        drop(stale);
        let _ = tx.send(failed);
    });
    assert_eq!(rx.recv_timeout(HUNG).expect("the copies never dialed"), 2);
    let mut rank0 = with(0);
    let (tx, lines) = mpsc::channel();
    let out = rank0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said0 = Vec::new();
    while said0.last().map(String::as_str) != Some("ready") {
        said0.push(lines.recv_timeout(HUNG).expect("rank 0 never got ready"));
    }
    let now: SocketAddr = std::fs::read_to_string(&file)
        .unwrap()
        .trim_end()
        .parse()
        .unwrap();
    assert_ne!(now, stale_at);
    let expected = mp_proc::plumbing::first_up_ipv4()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), Into::into);
    assert_eq!(now.ip(), expected);
    drop(rank0.stdin.take());
    let status = outputs(vec![rank0])[0].status;
    assert!(status.success(), "rank 0: {status}: {said0:?}");
    let mapped_line = said0
        .iter()
        .map(|l| l.trim_start_matches("test attach::fixture ... "))
        .find(|l| l.starts_with("coordinator:"))
        .unwrap_or_default();
    assert!(mapped(3)(mapped_line), "{said0:?}");
    let said = said_all(copies);
    assert_eq!(said, ["served", "served"]);
    assert!(!file.exists(), "rank 0 left {}", file.display());
}

/// Rank 0's keep-alive bound reaches the copies in its welcome (an engine
/// may pass them none of its variables): rank 0 with 3 s, the copies with
/// "never" (0) in their own environment; rank 0 frozen (SIGSTOP), the
/// copies count it as gone by its bound, return `None` and exit 0.
#[test]
fn the_copies_keep_rank_0_s_keep_alive_bound() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("attach-bound-{}", std::process::id());
    let (mut rank0, copies) = held_job_with(
        &tag,
        dir.path(),
        &[("MP_CLUSTER_KEEPALIVE", "3".into())],
        &[
            ("MP_CLUSTER_KEEPALIVE", "0".into()),
            // Leaving at once, not dialing the frozen rank 0 again.
            ("MP_CLUSTER_REJOIN", "0".into()),
        ],
    );
    let rank0_pid = nix::unistd::Pid::from_raw(rank0.id() as i32);
    nix::sys::signal::kill(rank0_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let said = said_all(copies);
    assert_eq!(said, ["served", "served"]);
    rank0.kill().unwrap();
    rank0.wait().unwrap();
    let clean = mp_testkit::wait_until(HUNG, || tagged(&tag).is_empty());
    assert!(clean, "left behind: {:?}", tagged(&tag));
}

/// Half a frame: a header that claims 50 bytes, and 3 of them.
const HALF_A_FRAME: [u8; 7] = [0, 0, 0, 50, 1, 2, 3];

/// The socket under `conn`, to write raw bytes on.
fn raw(conn: &mp_proc::Connection) -> TcpStream {
    TcpStream::from(conn.as_fd().try_clone_to_owned().unwrap())
}

/// A coordinator's answer, as `cluster/attach/wire.rs` has it.
#[derive(serde::Serialize)]
enum Answer {
    Welcome { keepalive: Duration },
}

/// A coordinator (played by this test, with the job's key) that welcomes a
/// copy with a keep-alive bound of 1 s, then sends half an order and nothing
/// more: the copy counts it as gone by the bound (it does not wait for the
/// rest forever), returns `None` and exits 0.
#[test]
fn half_an_order_does_not_hold_a_copy() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let coordinator = Listener::bind(
        Address::Tcp("127.0.0.1:0".parse().unwrap()),
        Some(b"the job's key"),
    )
    .unwrap();
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS", coordinator.address().to_string()));
    // Leaving at once, not dialing this coordinator again.
    vars.push(("MP_CLUSTER_REJOIN", "0".into()));
    vars.extend(Engine::Pmi.vars(1, 2));
    let tag = format!("attach-half-order-{}", std::process::id());
    let copy1 = copy(1, &tag, "map", &vars).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let control = coordinator
            .accept_pending()
            .unwrap()
            .authenticate()
            .unwrap();
        let _hello = control.recv_bytes().unwrap();
        let welcome = Answer::Welcome {
            keepalive: Duration::from_secs(1),
        };
        control.send(&welcome).unwrap();
        raw(&control).write_all(&HALF_A_FRAME).unwrap();
        // Held open (no end of file) until the copy has gone.
        let _ = tx.send(());
        let mut rest = Vec::new();
        let _ = raw(&control).read_to_end(&mut rest);
    });
    rx.recv_timeout(HUNG).expect("the copy never attached");
    let said = said_all(vec![copy1]).remove(0);
    assert_eq!(said, "served");
}

/// A peer with the key that sends half of its first message to rank 0 and
/// nothing more: rank 0 closes the connection by its handshake's deadline
/// (it does not wait for the rest forever); the real copy attaches and the
/// job runs.
#[test]
fn half_a_hello_does_not_hold_rank_0() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let at = free_address();
    let mut vars = common(dir.path());
    vars.push(("MP_CLUSTER_ADDRESS", at.clone()));
    let tag = format!("attach-half-hello-{}", std::process::id());
    let with = |rank: usize| {
        let mut v = vars.clone();
        v.extend(Engine::Slurm.vars(rank, 2));
        copy(rank, &tag, "map", &v).spawn().unwrap()
    };
    let rank0 = with(0);
    let address: Address = at.parse().unwrap();
    let mut conn = None;
    let dialed = mp_testkit::wait_until(HUNG, || {
        conn = Client::connect(&address, Some(b"the job's key")).ok();
        conn.is_some()
    });
    assert!(dialed, "rank 0 never listened at {at}");
    let conn = conn.unwrap();
    let mut socket = raw(&conn);
    socket.write_all(&HALF_A_FRAME).unwrap();
    socket.set_read_timeout(Some(HUNG)).unwrap();
    let mut rest = Vec::new();
    let ended = socket.read_to_end(&mut rest);
    assert!(
        matches!(ended, Ok(0))
            || matches!(&ended, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "rank 0 held the connection: {ended:?}"
    );
    let said = said_all(vec![rank0, with(1)]);
    assert!(mapped(2)(&said[0]), "{}", said[0]);
    assert_eq!(said[1], "served");
}
