//! The authkey of a job whose copies an engine started (mpirun, srun, an
//! Indexed Job): a file that every copy reads, with the checks a secret
//! file gets (see `connection::read_authkey_file`).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// The variable that names the key file of the copies of a job.
pub const AUTHKEY_FILE_VAR: &str = "MP_CLUSTER_AUTHKEY_FILE";

/// The largest key file read, in bytes.
pub const MAX_AUTHKEY_FILE: u64 = 4096;

/// The bytes of the key file at `path`, verbatim (a trailing newline
/// included: every copy reads the same file). The file must be a regular
/// file (not a symbolic link), owned by this process's effective user, with
/// no permission for its group or others (mode `0600` or `0400`), not empty
/// and at most [`MAX_AUTHKEY_FILE`] bytes; anything else is
/// [`Error::Invalid`] saying what is wrong. The checks are made on the
/// file opened, not on its name.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("key");
/// std::fs::write(&path, b"secret")?;
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
/// let refused = mp_proc::connection::read_authkey_file(&path);
/// assert!(matches!(refused, Err(mp_proc::Error::Invalid { .. })));
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
/// assert_eq!(mp_proc::connection::read_authkey_file(&path)?, b"secret");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_authkey_file(path: &Path) -> Result<Vec<u8>> {
    let refuse = |reason: String| Error::Invalid {
        what: AUTHKEY_FILE_VAR,
        reason: format!("{}: {reason}", path.display()),
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refuse(format!("cannot open it: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| refuse(format!("cannot stat it: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let me = sys::process::euid();
    if meta.uid() != me {
        return Err(refuse(format!(
            "owned by uid {}, not by this process's uid {me}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {:04o}: a key file must be readable by its owner alone (chmod 600)",
            meta.mode() & 0o7777
        )));
    }
    let mut key = Vec::new();
    (&mut file)
        .take(MAX_AUTHKEY_FILE + 1)
        .read_to_end(&mut key)
        .map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if key.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    if key.len() as u64 > MAX_AUTHKEY_FILE {
        return Err(refuse(format!(
            "longer than {MAX_AUTHKEY_FILE} bytes: not a key file"
        )));
    }
    Ok(key)
}

/// The key of the file named by [`AUTHKEY_FILE_VAR`], read by
/// [`read_authkey_file`]: an error when the variable is not set.
///
/// ```
/// // Not set here:
/// assert!(mp_proc::connection::authkey_from_env().is_err());
/// ```
pub fn authkey_from_env() -> Result<Vec<u8>> {
    match std::env::var_os(AUTHKEY_FILE_VAR) {
        Some(path) => read_authkey_file(Path::new(&path)),
        None => Err(Error::Invalid {
            what: AUTHKEY_FILE_VAR,
            reason: format!(
                "{AUTHKEY_FILE_VAR} is not set: name the job's key file (mode 0600) in it"
            ),
        }),
    }
}
