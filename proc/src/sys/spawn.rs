//! `posix_spawn` of this very executable, for the spawn start method and the
//! fork server.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

/// What a spawned copy of this executable gets.
pub(crate) struct SpawnPlan<'a> {
    /// Descriptors placed at 3, 4, 5, ... in the child, in this order. Every
    /// other descriptor above 2 is closed in the child. They must stay open
    /// during the call (a closed number is an `EBADF` error).
    pub(crate) fds: &'a [RawFd],
    /// The environment variable that tells the child what to do.
    pub(crate) env: (&'a str, String),
    /// Variables removed from the child's environment.
    pub(crate) env_remove: &'a [&'a str],
    /// An argument after `argv[0]` that names the child's role in `ps`.
    pub(crate) marker: &'a str,
    /// Whether the child's stdout and stderr are `/dev/null` too (helper
    /// processes, which must not hold the program's output open). Its stdin
    /// is always `/dev/null`.
    pub(crate) null_output: bool,
}

/// Runs `/proc/self/exe` with the plan's descriptors and environment.
/// Returns the child's pid once the new image is executing (posix_spawn
/// reports a failed exec as an error).
pub(crate) fn spawn_self(plan: &SpawnPlan<'_>) -> io::Result<u32> {
    let first = 3 as RawFd;
    let n = plan.fds.len() as RawFd;
    // Move every source above the target range, so that placing one never
    // overwrites another.
    let staged: Vec<OwnedFd> = plan
        .fds
        .iter()
        .map(|fd| super::fd::dup_at_least(*fd, first + n))
        .collect::<io::Result<_>>()?;

    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("mp-proc-child"));
    let argv0 = cstring(argv0)?;
    let marker = cstring(OsString::from(plan.marker))?;
    let argv: [*const libc::c_char; 3] = [argv0.as_ptr(), marker.as_ptr(), std::ptr::null()];

    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != plan.env.0 && !plan.env_remove.iter().any(|r| k == r))
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(&v.into_vec());
            cstring(OsString::from_vec(kv))
        })
        .collect::<io::Result<_>>()?;
    env.push(cstring(OsString::from(format!(
        "{}={}",
        plan.env.0, plan.env.1
    )))?);
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    let null = c"/dev/null";
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions and attributes are initialised before use and
    // destroyed after; every pointer passed (path, argv, envp, /dev/null) points
    // to a NUL-terminated string or array that outlives the posix_spawn call.
    let rc = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let mut rc = 0;
        for (i, fd) in staged.iter().enumerate() {
            if rc == 0 {
                rc = libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    fd.as_raw_fd(),
                    first + i as RawFd,
                );
            }
        }
        if rc == 0 {
            rc = libc::posix_spawn_file_actions_addclosefrom_np(&mut actions, first + n);
        }
        if rc == 0 {
            rc = libc::posix_spawn_file_actions_addopen(
                &mut actions,
                0,
                null.as_ptr(),
                libc::O_RDONLY,
                0,
            );
        }
        if rc == 0 && plan.null_output {
            rc = libc::posix_spawn_file_actions_addopen(
                &mut actions,
                1,
                null.as_ptr(),
                libc::O_WRONLY,
                0,
            );
            if rc == 0 {
                rc = libc::posix_spawn_file_actions_addopen(
                    &mut actions,
                    2,
                    null.as_ptr(),
                    libc::O_WRONLY,
                    0,
                );
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if rc == 0 {
            rc = libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        }
        if rc == 0 {
            rc = libc::posix_spawnattr_setflags(
                &mut attr,
                libc::POSIX_SPAWN_SETSIGMASK as libc::c_short,
            );
        }
        if rc == 0 {
            rc = libc::posix_spawn(
                &mut pid,
                c"/proc/self/exe".as_ptr(),
                &actions,
                &attr,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    drop(staged);
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(pid as u32)
}

fn cstring(s: OsString) -> io::Result<CString> {
    CString::new(s.into_vec()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Takes ownership of descriptors a parent placed in this process at known
/// numbers. Fails if one is not open.
///
/// # Safety
///
/// Nothing else in this process owns these numbers or will use or close
/// them: they were placed for this process alone (by the parent that spawned
/// it and named them, or kept across `fork` while every object of the parent
/// that owned them is never used or dropped, see [`fork`](super::process::fork)),
/// and the caller takes each number once.
pub(crate) unsafe fn take_placed(
    raws: impl IntoIterator<Item = RawFd>,
) -> io::Result<Vec<OwnedFd>> {
    // The contract above is take_inherited's.
    super::fd::take_inherited(raws)
}
