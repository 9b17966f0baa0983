//! The manager's server process.

use std::os::fd::AsFd;
use std::sync::Arc;

use mp_proc::Connection;
use mp_proc::connection::{Address, Listener};

use crate::{Reply, Request};

/// The target of the manager process: makes its temp directory and socket,
/// tells the parent the address on `report`, and serves until shut down.
pub(crate) fn run_server((report, alive): (Connection, Connection)) {
    let log = mp_logging::get_logger();
    let authkey = mp_proc::current_process().authkey().to_vec();
    let dir = match tempfile::Builder::new()
        .prefix("pymp-")
        .rand_bytes(8)
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            log.error(format_args!("manager cannot make its temp directory: {e}"));
            return;
        }
    };
    log.info(format_args!(
        "created temp directory {}",
        dir.path().display()
    ));
    let listener = tempfile::Builder::new()
        .prefix("listener-")
        .rand_bytes(8)
        .make_in(dir.path(), |path| {
            Listener::bind(Address::Unix(path.to_path_buf()), Some(&authkey))
                .map_err(std::io::Error::other)
        });
    let listener = match listener {
        Ok(named) => {
            // The listener removes its socket file itself.
            let (l, path) = named.into_parts();
            let _ = path.keep();
            l
        }
        Err(e) => {
            log.error(format_args!("manager cannot listen: {e}"));
            return;
        }
    };
    log.info(format_args!("manager serving at '{}'", listener.address()));
    if report.send(&listener.address().to_string()).is_err() {
        return;
    }
    drop(report);

    // Clients are served on threads of their own; a shutdown request wakes
    // this loop through the stop pipe.
    let (stop_r, stop_w) = match mp_proc::pipe(false) {
        Ok(p) => p,
        Err(_) => return,
    };
    let stop_w = Arc::new(stop_w);
    loop {
        let fds = [listener.as_fd(), stop_r.as_fd(), alive.as_fd()];
        let ready = mp_proc::connection::wait_fds(&fds, None).unwrap_or_default();
        if ready.contains(&1) {
            break;
        }
        if ready.contains(&2) {
            log.info("the manager's owner is gone: exiting");
            break;
        }
        if ready.contains(&0) {
            match listener.accept() {
                Ok(conn) => {
                    let stop = stop_w.clone();
                    std::thread::spawn(move || serve_client(conn, &stop));
                }
                Err(e) => log.debug(format_args!("refused a client: {e}")),
            }
        }
    }
    log.info("manager exiting with exitcode 0");
    drop(listener); // removes the socket
    drop(dir); // and the directory
}

fn serve_client(conn: Connection, stop: &Connection) {
    loop {
        let request = match conn.recv::<Request>() {
            Ok(r) => r,
            Err(mp_proc::Error::Decode(e)) => {
                let _ = conn.send(&Reply::Error(format!(
                    "a request that does not decode: {e}"
                )));
                continue;
            }
            Err(_) => return, // gone
        };
        match request {
            Request::Ping => {
                let _ = conn.send(&Reply::Ok);
            }
            Request::Shutdown => {
                mp_logging::get_logger().debug("manager received shutdown message");
                let _ = conn.send(&Reply::Ok);
                let _ = stop.send_bytes(b"stop");
                return;
            }
        }
    }
}
