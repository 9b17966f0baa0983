//! What an engine (mpirun, srun, an Indexed Job) and the user tell a copy
//! in its environment: its rank, the job's size, where the coordinator is,
//! how long to wait, how many slots it offers.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// The variables that give a copy's rank, in the order they are looked at.
pub(super) const RANKS: [&str; 4] = [
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "SLURM_PROCID",
    "JOB_COMPLETION_INDEX",
];
/// The variables that give the job's size, in the order they are looked at
/// (an Indexed Job's environment has none of the engines': the user sets
/// `MP_CLUSTER_SIZE`).
pub(super) const SIZES: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "SLURM_NTASKS",
    "MP_CLUSTER_SIZE",
];
pub(super) const ADDRESS: &str = "MP_CLUSTER_ADDRESS";
pub(super) const ADDRESS_FILE: &str = "MP_CLUSTER_ADDRESS_FILE";
pub(super) const LISTEN: &str = "MP_CLUSTER_LISTEN";
pub(super) const TIMEOUT: &str = "MP_CLUSTER_TIMEOUT";
pub(super) const SLOTS: &str = "MP_CLUSTER_SLOTS";
pub(super) const KEEPALIVE: &str = "MP_CLUSTER_KEEPALIVE";
pub(super) const REJOIN: &str = "MP_CLUSTER_REJOIN";

/// How long a connection of the job may stay silent, by default (as a
/// launcher's keep-alive).
pub(super) const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);
/// How long the copies have to attach, by default.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most slots one copy may offer.
pub(super) const MAX_SLOTS: usize = 4096;
/// The largest job.
pub(super) const MAX_SIZE: usize = 1 << 20;

pub(super) const WHAT: &str = "ClusterContext::from_launcher";

/// Where the coordinator is.
#[derive(Debug, Clone)]
pub(super) enum Where {
    /// `host:port` (`MP_CLUSTER_ADDRESS`): rank 0 listens there.
    Address(String),
    /// A file that rank 0 writes its `ip:port` to (`MP_CLUSTER_ADDRESS_FILE`).
    File(PathBuf),
}

/// A copy's environment.
#[derive(Debug, Clone)]
pub(super) struct Env {
    pub(super) rank: usize,
    pub(super) size: usize,
    pub(super) at: Where,
    /// Where rank 0 listens (`MP_CLUSTER_LISTEN`), if not at the address.
    pub(super) listen: Option<SocketAddr>,
    pub(super) timeout: Duration,
    pub(super) slots: usize,
    /// How long the control connection and each link may stay silent
    /// before they count as lost (zero: never).
    pub(super) keepalive: Duration,
    /// How long a copy that lost rank 0 to a silence dials it again before
    /// it counts as gone (`MP_CLUSTER_REJOIN`, default the timeout; zero:
    /// it leaves at once).
    pub(super) rejoin: Duration,
}

pub(super) fn invalid(reason: String) -> Error {
    Error::Invalid { what: WHAT, reason }
}

/// The first of `vars` that is set, and its value.
fn first_set(vars: &[&'static str]) -> Option<(&'static str, String)> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok().map(|value| (*v, value)))
}

/// A count (`what`) from variable `var`.
fn count(var: &str, value: &str, what: &str) -> Result<usize> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| invalid(format!("{var}={value:?} is not a {what} (a number)")))
}

/// The rank, from the first variable of [`RANKS`] that is set: `None`
/// when none is (not started by an engine).
pub(super) fn rank() -> Result<Option<(&'static str, usize)>> {
    match first_set(&RANKS) {
        None => Ok(None),
        Some((var, value)) => Ok(Some((var, count(var, &value, "rank")?))),
    }
}

/// The whole environment of a copy of rank `rank`.
pub(super) fn read(rank: usize) -> Result<Env> {
    let Some((var, value)) = first_set(&SIZES) else {
        return Err(invalid(format!(
            "the job's size is not known: none of {} is set (an Indexed Job sets none: set \
             MP_CLUSTER_SIZE to its completions)",
            SIZES.join(", ")
        )));
    };
    let size = count(var, &value, "size")?;
    if size == 0 || size > MAX_SIZE {
        return Err(invalid(format!(
            "{var}={size}: a job has 1 to {MAX_SIZE} copies"
        )));
    }
    if rank >= size {
        return Err(invalid(format!(
            "rank {rank} is not below the job's size {size} ({var})"
        )));
    }
    let at = match (std::env::var(ADDRESS), std::env::var_os(ADDRESS_FILE)) {
        (Ok(address), _) if !address.is_empty() => Where::Address(address),
        (_, Some(file)) if !file.is_empty() => Where::File(PathBuf::from(file)),
        _ => {
            return Err(invalid(format!(
                "where the coordinator (rank 0) listens is not known: set {ADDRESS} (host:port) \
                 or {ADDRESS_FILE} (a file on a filesystem every copy sees)"
            )));
        }
    };
    let listen = match std::env::var(LISTEN) {
        Ok(l) if !l.is_empty() => Some(
            l.trim()
                .parse::<SocketAddr>()
                .map_err(|_| invalid(format!("{LISTEN}={l:?} is not an ip:port")))?,
        ),
        _ => None,
    };
    let timeout = seconds(TIMEOUT, false)?.unwrap_or(DEFAULT_TIMEOUT);
    let keepalive = seconds(KEEPALIVE, true)?.unwrap_or(DEFAULT_KEEPALIVE);
    let rejoin = seconds(REJOIN, true)?.unwrap_or(timeout);
    let slots = match std::env::var(SLOTS) {
        Ok(s) if !s.is_empty() => {
            let n = count(SLOTS, &s, "number of slots")?;
            if n == 0 || n > MAX_SLOTS {
                return Err(invalid(format!(
                    "{SLOTS}={n}: a copy offers 1 to {MAX_SLOTS} slots"
                )));
            }
            n
        }
        _ => 1,
    };
    Ok(Env {
        rank,
        size,
        at,
        listen,
        timeout,
        slots,
        keepalive,
        rejoin,
    })
}

/// A duration in seconds from variable `var` (`None`: not set); zero only
/// if `zero` may be.
fn seconds(var: &str, zero: bool) -> Result<Option<Duration>> {
    let Ok(t) = std::env::var(var) else {
        return Ok(None);
    };
    if t.is_empty() {
        return Ok(None);
    }
    t.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 || (zero && *s == 0.0))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(Some)
        .ok_or_else(|| invalid(format!("{var}={t:?} is not a number of seconds above 0")))
}

/// `host:port` resolved: its first address.
pub(super) fn resolve(address: &str) -> Result<SocketAddr> {
    address
        .to_socket_addrs()
        .map_err(|e| invalid(format!("{ADDRESS}={address:?}: {e}")))?
        .next()
        .ok_or_else(|| invalid(format!("{ADDRESS}={address:?} resolves to no address")))
}

/// The longest address file read.
const MAX_ADDRESS_FILE: u64 = 256;

/// The address in the file rank 0 writes, or why there is none yet: no
/// file, only a part of one (a line is whole once its newline is there), or
/// a file not trusted. The file is opened by
/// [`open_private_file`](mp_proc::plumbing::open_private_file) (no symbolic
/// link, no blocking on a FIFO) and trusted only if it is a regular file of
/// this user that neither its group nor others may write.
pub(super) fn read_address_file(path: &std::path::Path) -> std::result::Result<SocketAddr, String> {
    use std::io::Read;
    let file = mp_proc::plumbing::open_private_file(path, 0o022).map_err(|e| match e {
        mp_proc::plumbing::FileRefusal::Open(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("no address file {} yet", path.display())
        }
        mp_proc::plumbing::FileRefusal::Mode(mode) => format!(
            "the address file {} is not trusted: its mode {mode:04o} lets others write it",
            path.display()
        ),
        e => format!("the address file {} is not trusted: {e}", path.display()),
    })?;
    let mut text = String::new();
    file.take(MAX_ADDRESS_FILE)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the address file {}: {e}", path.display()))?;
    let Some(line) = text.strip_suffix('\n') else {
        return Err(format!("no whole address in {} yet", path.display()));
    };
    line.trim()
        .parse()
        .map_err(|_| format!("{} does not hold an ip:port", path.display()))
}

/// Writes `address` to the file at `path`, whole or not at all: a file of
/// the same directory, then renamed over it.
pub(super) fn write_address_file(path: &std::path::Path, address: SocketAddr) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fail = |e: std::io::Error| {
        invalid(format!(
            "{ADDRESS_FILE}={}: cannot write it: {e}",
            path.display()
        ))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mp-cluster-address")
        .tempfile_in(&dir)
        .map_err(fail)?;
    std::io::Write::write_all(&mut tmp, format!("{address}\n").as_bytes()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_file_is_read_only_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addr");
        assert!(read_address_file(&path).is_err());
        std::fs::write(&path, "10.0.0.1:5").unwrap();
        let partial = read_address_file(&path).unwrap_err();
        assert!(partial.contains("no whole address"), "{partial}");
        let at: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        write_address_file(&path, at).unwrap();
        assert_eq!(read_address_file(&path), Ok(at));
        std::fs::write(&path, "not an address\n").unwrap();
        assert!(read_address_file(&path).is_err());
    }

    /// A file that others may write, or of another user, names no address
    /// (whatever it holds), and the reason says so.
    #[test]
    fn an_address_file_others_may_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addr");
        std::fs::write(&path, "10.0.0.1:5000\n").unwrap();
        for mode in [0o666, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let why = read_address_file(&path).unwrap_err();
            assert!(
                why.contains("not trusted") && why.contains("lets others write it"),
                "{why}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_address_file(&path).is_ok());
        // As root (the file is root's): a file given to another user.
        if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap()) == 0 {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let why = read_address_file(&path).unwrap_err();
            assert!(why.contains("owned by uid 65534"), "{why}");
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            read_address_file(&link)
                .unwrap_err()
                .contains("not trusted")
        );
    }
}
