//! `ClusterContext::from_launcher` against what another local user, a
//! stale job or a peer without the key can do: address files it may not
//! trust, silent connections, an address file of another job. The copies
//! are the attach tests' [`fixture`](super::attach) (this test binary).

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;

use mp_testkit::guard;

use super::attach::{Engine, HUNG, common, copy, free_address, mapped, outputs, said};

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
    let said = said(&outputs(vec![copy(1, &tag, "map", &vars).spawn().unwrap()])[0]);
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
    let said: Vec<String> = outputs(copies).iter().map(said).collect();
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
/// challenge; once they are gone, the real copies attach and the job runs.
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
    drop(silent);
    let copies: Vec<Child> = vec![rank0, with(1), with(2)];
    let said: Vec<String> = outputs(copies).iter().map(said).collect();
    assert!(mapped(3)(&said[0]), "{}", said[0]);
    assert_eq!(said[1..], ["served", "served"]);
}
