//! CPython's fd-transfer tests (Lib/test/_test_multiprocessing.py,
//! `_TestConnection`), ported with the same inputs and assertions, under
//! every start method; and `send_handle`/`recv_handle` between mp and a real
//! `python3`'s `multiprocessing.reduction`, both ways.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use mp_proc::reduction::{recv_handle, send_handle};
use mp_proc::{Connection, Error, StartMethod, pipe};
use mp_testkit::guard;

use crate::handles::{Child, LONG};

mp_testkit::for_each_method!(fd_transfer, large_fd_transfer, missing_fd_transfer);

/// CPython's `_writefd`: receives a descriptor with `recv_handle` and writes
/// `data` to it. With `create_dummy_fds`, every descriptor below 256 is
/// taken first (CPython dup2's the connection onto each free one), so the
/// received one is numbered 256 or more.
fn writefd((conn, data, create_dummy_fds): (Connection, Vec<u8>, bool)) {
    let mut dummies = Vec::new();
    if create_dummy_fds {
        loop {
            let d = conn.as_fd().try_clone_to_owned().unwrap();
            let n = d.as_raw_fd();
            dummies.push(d);
            if n >= 255 {
                break;
            }
        }
    }
    let fd = recv_handle(&conn).unwrap();
    if create_dummy_fds {
        assert!(fd.as_raw_fd() >= 256, "received as {}", fd.as_raw_fd());
    }
    File::from(fd).write_all(&data).unwrap();
}

fn read(path: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(path).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// CPython's `test_fd_transfer`.
fn fd_transfer(method: StartMethod) {
    let _g = guard();
    let (conn, child_conn) = pipe(true).unwrap();
    let mut p = Child::start(method, writefd, (child_conn, b"foo".to_vec(), false));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("TESTFN");
    {
        let f = File::create(&path).unwrap();
        send_handle(&conn, f.as_fd()).unwrap();
    }
    assert_eq!(p.0.join().unwrap(), 0);
    assert_eq!(read(&path), b"foo");
}

/// CPython's `test_large_fd_transfer` (issue #11657): the descriptor sent is
/// numbered 256 or more, and so is the one received.
fn large_fd_transfer(method: StartMethod) {
    let _g = guard();
    let (conn, child_conn) = pipe(true).unwrap();
    let mut p = Child::start(method, writefd, (child_conn, b"bar".to_vec(), true));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("TESTFN");
    {
        let f = File::create(&path).unwrap();
        // CPython dup2's it onto the first free number from 256; the lowest
        // free numbers are taken until a duplicate lands there.
        let mut low = Vec::new();
        let newfd = loop {
            let d = f.as_fd().try_clone_to_owned().unwrap();
            if d.as_raw_fd() >= 256 {
                break d;
            }
            low.push(d);
        };
        drop(low);
        send_handle(&conn, newfd.as_fd()).unwrap();
    }
    assert_eq!(p.0.join().unwrap(), 0);
    assert_eq!(read(&path), b"bar");
}

/// CPython's `_send_data_without_fd`: one raw byte on the socket, no
/// descriptor.
fn send_data_without_fd(conn: Connection) {
    let mut raw = File::from(conn.as_fd().try_clone_to_owned().unwrap());
    raw.write_all(b"\0").unwrap();
}

/// CPython's `test_missing_fd_transfer`: `RuntimeError` there,
/// `DescriptorsMissing` here.
fn missing_fd_transfer(method: StartMethod) {
    let _g = guard();
    let (conn, child_conn) = pipe(true).unwrap();
    let mut p = Child::start(method, send_data_without_fd, child_conn);
    let r = recv_handle(&conn);
    assert!(matches!(r, Err(Error::DescriptorsMissing { .. })), "{r:?}");
    assert_eq!(p.0.join().unwrap(), 0);
}

/// A running `python3`, killed and reaped if the test fails.
struct Python(Option<std::process::Child>);

impl Drop for Python {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `python3 -c script path` with stdin the other end of `ours` (a Unix
/// socket pair), or `None` if there is no `python3`.
fn python_on_socket(script: &str, path: &std::path::Path) -> Option<(Python, Connection)> {
    let probe = Command::new("python3")
        .args(["-c", "import multiprocessing.reduction"])
        .output()
        .ok();
    let Some(probe) = probe else {
        eprintln!("no python3: skipped");
        return None;
    };
    assert!(probe.status.success(), "python3 cannot import reduction");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Some((
        Python(Some(child)),
        Connection::from_fd(OwnedFd::from(ours), true, true),
    ))
}

fn python_succeeded(mut python: Python) {
    let child = python.0.take().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// mp's `send_handle` -> python3's `reduction.recv_handle`.
#[test]
fn python3_receives_a_descriptor_mp_sends() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("TESTFN");
    let script = "
import os, sys
from multiprocessing import reduction
from multiprocessing.connection import Connection
conn = Connection(0)
fd = reduction.recv_handle(conn)
os.write(fd, b'written by python3')
os.close(fd)
";
    let Some((child, conn)) = python_on_socket(script, &path) else {
        return;
    };
    {
        let f = File::create(&path).unwrap();
        send_handle(&conn, f.as_fd()).unwrap();
    }
    python_succeeded(child);
    assert_eq!(read(&path), b"written by python3");
}

/// python3's `reduction.send_handle` -> mp's `recv_handle`.
#[test]
fn mp_receives_a_descriptor_python3_sends() {
    let _g = guard();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("TESTFN");
    let script = "
import os, sys
from multiprocessing import reduction
from multiprocessing.connection import Connection
conn = Connection(0)
with open(sys.argv[1], 'wb') as f:
    reduction.send_handle(conn, f.fileno(), None)
";
    let Some((child, conn)) = python_on_socket(script, &path) else {
        return;
    };
    assert!(conn.poll(Some(LONG)).unwrap(), "python3 sent nothing");
    let fd = recv_handle(&conn).unwrap();
    File::from(fd).write_all(b"written by mp").unwrap();
    python_succeeded(child);
    assert_eq!(read(&path), b"written by mp");
}
