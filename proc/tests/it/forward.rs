//! Forwarded addresses (`Launcher::forward`): a process started through
//! the remote path connects to a listener of its parent with
//! `Client::connect`, and the connection travels over its launcher's link.
//! Here on this machine (`Launcher::command`, no root needed); across
//! network namespaces in hosts.rs.
//!
//! What proves the path: the listener is a Unix socket, whose accepted
//! connection knows its peer's pid (`SO_PEERCRED`): through the link the
//! peer is this process (the parent connected on the far process's
//! behalf), by the network it is the far process.

use mp_proc::connection::{Address, Client, Listener};
use mp_proc::{Connection, Error, Launcher, Process, current_process, pipe};
use mp_testkit::guard;

fn launchers() -> [Launcher; 2] {
    [
        Launcher::command(Vec::<&str>::new()),
        Launcher::command(["env", "MP_FORWARD_TEST=1"]),
    ]
}

/// A Unix listener with this process's authkey, at a name of its own.
fn listener(tag: &str) -> Listener {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("mp-it-forward-{tag}-{}-{n}", std::process::id());
    Listener::bind(Address::Abstract(name), Some(current_process().authkey())).unwrap()
}

/// The pid of the process at the other end of an accepted Unix connection.
fn peer_pid(conn: &Connection) -> u32 {
    use nix::sys::socket::{getsockopt, sockopt};
    getsockopt(conn, sockopt::PeerCredentials).unwrap().pid() as u32
}

fn message(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|k| ((k + i) % 251) as u8).collect()
}

/// Opens `n` connections to `address` (all open at once), sends on each its
/// number and a message, checks each answer (the message reversed), then
/// that each sees the parent's end of file. Reports on `report`.
fn reach((report, address, n, size): (Connection, String, usize, usize)) {
    let address: Address = address.parse().unwrap();
    let key = current_process().authkey().to_vec();
    let mut conns = Vec::new();
    for i in 0..n {
        let conn = match Client::connect(&address, Some(&key)) {
            Ok(conn) => conn,
            Err(e) => {
                report.send(&format!("connect {i}: {e}")).unwrap();
                return;
            }
        };
        conn.send(&(i, message(i, size))).unwrap();
        conns.push(conn);
    }
    for (i, conn) in conns.iter().enumerate() {
        let mut want = message(i, size);
        want.reverse();
        if conn.recv::<Vec<u8>>().unwrap() != want {
            report.send(&format!("wrong answer on {i}")).unwrap();
            return;
        }
    }
    for (i, conn) in conns.iter().enumerate() {
        if !matches!(conn.recv_bytes(), Err(Error::Eof)) {
            report.send(&format!("no end of file on {i}")).unwrap();
            return;
        }
    }
    report.send(&"ok".to_owned()).unwrap();
}

/// Serves `n` clients of `reach`: each is checked to come from `peer`.
fn serve(l: &Listener, n: usize, peer: u32, launcher: &Launcher) {
    let mut conns = Vec::new();
    for _ in 0..n {
        let conn = l.accept().unwrap();
        assert_eq!(peer_pid(&conn), peer, "{launcher}");
        conns.push(conn);
    }
    for conn in &conns {
        let (i, mut data): (usize, Vec<u8>) = conn.recv().unwrap();
        assert_eq!(data, message(i, data.len()), "{launcher}");
        data.reverse();
        conn.send(&data).unwrap();
    }
}

#[test]
fn a_forwarded_listener_is_reached_over_the_link_many_connections_at_once() {
    let _g = guard();
    for launcher in launchers() {
        let l = listener("many");
        let forwarded = launcher.clone().forward(l.address().clone());
        let (here, there) = pipe(true).unwrap();
        let args = (there, l.address().to_string(), 8usize, 200_000usize);
        let mut p = Process::new(reach, args).launcher(forwarded);
        p.start().unwrap();
        // Through the link: the listener's peer is this very process.
        serve(&l, 8, std::process::id(), &launcher);
        assert_eq!(here.recv::<String>().unwrap(), "ok", "{launcher}");
        assert_eq!(p.join().unwrap(), 0, "{launcher}");
    }
}

#[test]
fn an_address_not_forwarded_is_dialled_by_the_network() {
    let _g = guard();
    for launcher in launchers() {
        let (forwarded, direct) = (listener("fw"), listener("direct"));
        let with = launcher.clone().forward(forwarded.address().clone());
        let (here, there) = pipe(true).unwrap();
        let args = (there, direct.address().to_string(), 2usize, 10usize);
        let mut p = Process::new(reach, args).launcher(with);
        p.start().unwrap();
        // With a command launcher of no prefix the far process is on this
        // machine, a child of its agent: its own pid is the peer.
        let far = p.pid().unwrap();
        assert_ne!(far, std::process::id());
        serve(&direct, 2, far, &launcher);
        assert_eq!(here.recv::<String>().unwrap(), "ok", "{launcher}");
        assert_eq!(p.join().unwrap(), 0, "{launcher}");
    }
}

#[test]
fn a_forwarded_address_with_no_listener_is_a_clear_error_there() {
    let _g = guard();
    for launcher in launchers() {
        let gone = listener("gone");
        let address = gone.address().clone();
        drop(gone);
        let (here, there) = pipe(true).unwrap();
        let args = (there, address.to_string(), 1usize, 1usize);
        let mut p = Process::new(reach, args).launcher(launcher.clone().forward(address.clone()));
        p.start().unwrap();
        let said: String = here.recv().unwrap();
        assert!(
            said.starts_with(&format!(
                "connect 0: cannot connect to {address} through the launcher's link: the parent cannot connect to {address}"
            )),
            "{launcher}: {said}"
        );
        assert_eq!(p.join().unwrap(), 0, "{launcher}");
    }
}

/// Connects to `address`, says so, then waits (for its end).
fn connect_and_wait((report, address): (Connection, String)) {
    let address: Address = address.parse().unwrap();
    let conn = Client::connect(&address, Some(current_process().authkey())).unwrap();
    conn.send(&"connected").unwrap();
    report.send(&"ready").unwrap();
    let _ = report.recv_bytes();
}

#[test]
fn the_far_process_killed_is_end_of_file_for_the_listeners_side() {
    let _g = guard();
    for launcher in launchers() {
        let l = listener("kill");
        let (here, there) = pipe(true).unwrap();
        let args = (there, l.address().to_string());
        let mut p = Process::new(connect_and_wait, args)
            .launcher(launcher.clone().forward(l.address().clone()));
        p.start().unwrap();
        let conn = l.accept().unwrap();
        assert_eq!(conn.recv::<String>().unwrap(), "connected");
        assert_eq!(here.recv::<String>().unwrap(), "ready");
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -libc::SIGKILL, "{launcher}");
        assert!(matches!(conn.recv_bytes(), Err(Error::Eof)), "{launcher}");
    }
}

/// A wrong key on the far side: the handshake over the link fails as it
/// would by the network, on both sides.
fn connect_with_a_wrong_key((report, address): (Connection, String)) {
    let address: Address = address.parse().unwrap();
    let said = match Client::connect(&address, Some(b"not the key")) {
        Ok(_) => "connected".to_owned(),
        Err(e) => e.to_string(),
    };
    report.send(&said).unwrap();
}

#[test]
fn the_handshake_over_the_link_still_refuses_a_wrong_key() {
    let _g = guard();
    let launcher = launchers()[0].clone();
    let l = listener("key");
    let (here, there) = pipe(true).unwrap();
    let args = (there, l.address().to_string());
    let mut p = Process::new(connect_with_a_wrong_key, args)
        .launcher(launcher.forward(l.address().clone()));
    p.start().unwrap();
    assert!(matches!(l.accept(), Err(Error::Authentication(_))));
    let said: String = here.recv().unwrap();
    assert_ne!(said, "connected");
    assert_eq!(p.join().unwrap(), 0);
}

/// Starts a child of its own by `method` that runs [`reach`] (one
/// connection), and reports its exit code after the child's report.
fn reach_from_a_child((report, address, method): (Connection, String, mp_proc::StartMethod)) {
    let (here, there) = pipe(true).unwrap();
    let mut child = Process::new(reach, (there, address, 1usize, 1000usize)).start_method(method);
    child.start().unwrap();
    let said: String = here.recv().unwrap();
    report.send(&said).unwrap();
    report.send(&child.join().unwrap()).unwrap();
}

/// A fork child of the far process inherits its way to the agent: its
/// connection travels over the link too. A spawned one (a fresh image)
/// dials the network, and so does a forkserver's child.
#[test]
fn a_fork_child_of_the_far_process_reaches_a_forwarded_address_too() {
    use mp_proc::StartMethod;
    let _g = guard();
    let launcher = launchers()[0].clone();
    for method in StartMethod::ALL {
        let l = listener("child");
        let (here, there) = pipe(true).unwrap();
        let args = (there, l.address().to_string(), method);
        let mut p = Process::new(reach_from_a_child, args)
            .launcher(launcher.clone().forward(l.address().clone()));
        p.start().unwrap();
        let conn = l.accept().unwrap();
        let through_the_link = peer_pid(&conn) == std::process::id();
        assert_eq!(through_the_link, method == StartMethod::Fork, "{method:?}");
        let (i, mut data): (usize, Vec<u8>) = conn.recv().unwrap();
        assert_eq!(data, message(i, 1000));
        data.reverse();
        conn.send(&data).unwrap();
        drop(conn);
        assert_eq!(here.recv::<String>().unwrap(), "ok", "{method:?}");
        assert_eq!(here.recv::<i32>().unwrap(), 0, "{method:?}");
        assert_eq!(p.join().unwrap(), 0, "{method:?}");
    }
}

/// Says it is ready, makes a round trip on a forwarded connection while a
/// large message waits unread on its pipe, then reads the message.
fn round_trip_before_reading((pipe_end, address): (Connection, String)) {
    let address: Address = address.parse().unwrap();
    pipe_end.send(&"ready").unwrap();
    let conn = Client::connect(&address, Some(current_process().authkey())).unwrap();
    conn.send(&"ping").unwrap();
    let pong: String = conn.recv().unwrap();
    let big: Vec<u8> = pipe_end.recv().unwrap();
    pipe_end.send(&(pong, big.len())).unwrap();
}

/// A channel whose reader does not read (a pipe with megabytes waiting)
/// holds up only itself: a forwarded connection's reply still arrives (on
/// one shared writer, the process would wait for the reply forever and
/// never read the pipe).
#[test]
fn a_channel_not_read_does_not_hold_up_a_forwarded_connection() {
    let _g = guard();
    for launcher in launchers() {
        let l = listener("hol");
        let (here, there) = pipe(true).unwrap();
        let args = (there, l.address().to_string());
        let mut p = Process::new(round_trip_before_reading, args)
            .launcher(launcher.clone().forward(l.address().clone()));
        p.start().unwrap();
        assert_eq!(here.recv::<String>().unwrap(), "ready");
        let conn = l.accept().unwrap();
        assert_eq!(conn.recv::<String>().unwrap(), "ping");
        // Megabytes more than any socket buffer between here and there
        // (and less than the channel's queue, past which the link waits
        // for the reader, as a pipe would), on their way before the reply.
        let big = 2usize << 20;
        std::thread::scope(|s| {
            s.spawn(|| here.send(&vec![7u8; big]).unwrap())
                .join()
                .unwrap();
        });
        conn.send(&"pong").unwrap();
        assert_eq!(
            here.recv::<(String, usize)>().unwrap(),
            ("pong".to_owned(), big),
            "{launcher}"
        );
        assert_eq!(p.join().unwrap(), 0, "{launcher}");
    }
}
