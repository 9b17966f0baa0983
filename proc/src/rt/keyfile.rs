//! The authkey of a job whose copies an engine started (mpirun, srun, an
//! Indexed Job): a file that every copy reads, with the checks a secret
//! file gets (see `connection::read_authkey_file`).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// Why [`open_private_file`] did not trust a file.
#[derive(Debug)]
pub enum FileRefusal {
    /// It could not be opened (`ErrorKind::NotFound`: there is none; a
    /// symbolic link is `ELOOP`).
    Open(std::io::Error),
    /// The opened file could not be examined.
    Stat(std::io::Error),
    /// Not a regular file (a FIFO, a device, a directory, a socket).
    NotRegular,
    /// Owned by another user than this process's effective user.
    Owner {
        /// The file's owner.
        uid: u32,
        /// This process's effective user.
        me: u32,
    },
    /// Its permission bits (`mode & 0o7777`) include some that were
    /// forbidden.
    Mode(u32),
}

impl std::fmt::Display for FileRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileRefusal::Open(e) => write!(f, "cannot open it: {e}"),
            FileRefusal::Stat(e) => write!(f, "cannot stat it: {e}"),
            FileRefusal::NotRegular => f.write_str("not a regular file"),
            FileRefusal::Owner { uid, me } => {
                write!(f, "owned by uid {uid}, not by this process's uid {me}")
            }
            FileRefusal::Mode(mode) => {
                write!(f, "its mode {mode:04o} gives its group or others access")
            }
        }
    }
}

impl std::error::Error for FileRefusal {}

/// Opens the file at `path` for reading if it can be trusted: opened
/// without following a symbolic link, without blocking (a FIFO does not
/// hang the caller) and close-on-exec, then examined on the descriptor
/// opened (not by its name): a regular file, owned by this process's
/// effective user, none of whose permission bits is in `forbidden` (`0o077`
/// for a secret, `0o022` for a file only its owner may write).
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use mp_proc::plumbing::{FileRefusal, open_private_file};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("address");
/// std::fs::write(&path, b"10.0.0.1:5000\n")?;
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
/// assert!(matches!(open_private_file(&path, 0o022), Err(FileRefusal::Mode(0o666))));
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
/// assert!(open_private_file(&path, 0o022).is_ok());
/// assert!(matches!(open_private_file(dir.path(), 0o022), Err(FileRefusal::NotRegular)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_private_file(path: &Path, forbidden: u32) -> std::result::Result<File, FileRefusal> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(FileRefusal::Open)?;
    let meta = file.metadata().map_err(FileRefusal::Stat)?;
    if !meta.file_type().is_file() {
        return Err(FileRefusal::NotRegular);
    }
    let me = sys::process::euid();
    if meta.uid() != me {
        return Err(FileRefusal::Owner {
            uid: meta.uid(),
            me,
        });
    }
    if meta.mode() & forbidden & 0o7777 != 0 {
        return Err(FileRefusal::Mode(meta.mode() & 0o7777));
    }
    Ok(file)
}

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
    let mut file = open_private_file(path, 0o077).map_err(|e| match e {
        FileRefusal::Mode(mode) => refuse(format!(
            "its mode is {mode:04o}: a key file must be readable by its owner alone (chmod 600)"
        )),
        e => refuse(e.to_string()),
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A FIFO is refused at once (not waited on for a writer), a symbolic
    /// link is not followed, and the mode bits forbidden are the caller's.
    #[test]
    fn only_a_regular_file_of_this_user_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            open_private_file(&fifo, 0o077),
            Err(FileRefusal::NotRegular)
        ));
        let key = dir.path().join("key");
        std::fs::write(&key, b"secret").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            open_private_file(&key, 0o077),
            Err(FileRefusal::Mode(0o640))
        ));
        assert!(open_private_file(&key, 0o022).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        assert!(matches!(
            open_private_file(&link, 0o022),
            Err(FileRefusal::Open(_))
        ));
        assert!(read_authkey_file(&fifo).is_err());
    }

    /// A file of another user is refused (as root, a file given to nobody).
    #[test]
    fn a_file_of_another_user_is_refused() {
        if sys::process::euid() != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, b"secret").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
        assert!(matches!(
            open_private_file(&key, 0o077),
            Err(FileRefusal::Owner { uid: 65534, me: 0 })
        ));
        let refused = read_authkey_file(&key).unwrap_err().to_string();
        assert!(refused.contains("owned by uid 65534"), "{refused}");
    }
}
