//! The first instructions of every copy of the executable that a process
//! starts: a constructor that runs before `main` and, if the environment
//! says this process is a spawned child, the fork server or the resource
//! tracker, becomes that and never returns to `main`.

use crate::method::StartMethod;
use crate::rt::agent;
use crate::rt::child::{Bootstrap, ChildFds, Leave, child_main, read_bootstrap};
use crate::rt::helper::{Role, die, fatal};
use crate::rt::{forkserver, tracker};
use crate::sys;
use crate::sys::spawn::Channel;
use crate::wire::runners;

sys::ctor::before_main! {
    /// Runs the bootstrap of spawned children and helpers before `main`, so
    /// that spawn and forkserver work in every binary that links mp-proc,
    /// test harnesses and doctests included, with no line of set-up.
    static BOOTSTRAP = run_if_child;
}

/// Keeps the constructor in every binary that starts processes, whatever the
/// linker does with unreferenced sections.
pub(crate) fn keep_constructor() {
    std::hint::black_box(&BOOTSTRAP);
}

/// The constructor's and `init()`'s entry: if this process was spawned to run
/// a target, to be the fork server or to be the resource tracker, do that and
/// never return.
///
/// The variables are removed from the environment (so that no process
/// started from here sees them) and obeyed only in a process that is not
/// under secure execution: a setuid or setcap program ignores them and its
/// `main` runs, whoever set them. A variable whose descriptor is not what a
/// parent places there ends the process at once with a message on stderr.
#[allow(unsafe_code)] // calls of sys's unsafe fns, each with its SAFETY
pub(crate) fn run_if_child() {
    let set: Vec<(Role, std::ffi::OsString)> = [Role::Tracker, Role::Forkserver, Role::Child]
        .into_iter()
        .filter_map(|role| sys::process::take_env_var(role.variable()).map(|v| (role, v)))
        .collect();
    let agent = agent::requested();
    if set.is_empty() && !agent {
        return;
    }
    if sys::process::secure_execution() {
        // Whoever set them may not be the owner of this program's privileges.
        return;
    }
    if agent {
        if !set.is_empty() {
            die("bootstrap failed: a remote agent was started with a bootstrap variable set");
        }
        agent::serve();
    }
    let Some((role, value)) = set.first() else {
        return;
    };
    let role = *role;
    if set.len() > 1 {
        let names: Vec<&str> = set.iter().map(|(r, _)| r.variable()).collect();
        die(&format!(
            "bootstrap failed: more than one bootstrap variable is set ({}); a parent sets one",
            names.join(", ")
        ));
    }
    let Some(fd) = value
        .to_str()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd >= 0)
    else {
        fatal(
            role,
            &format!("{}={value:?} is not a descriptor number", role.variable()),
        );
    };
    match role {
        Role::Tracker => {
            // SAFETY: the parent placed this fd for this process alone and
            // named it in its variable; it is taken once, here.
            match unsafe { sys::spawn::take_channel(fd, Channel::PipeReadEnd) } {
                Ok(pipe) => tracker::serve(pipe),
                Err(e) => fatal(role, &e.to_string()),
            }
        }
        Role::Forkserver => {
            // SAFETY: as above.
            match unsafe { sys::spawn::take_channel(fd, Channel::Seqpacket) } {
                Ok(control) => forkserver::serve(control),
                Err(e) => fatal(role, &e.to_string()),
            }
        }
        Role::Child => match read_spawned(fd) {
            Ok((boot, fds)) => {
                let fingerprint = boot.fingerprint;
                match runners::resolve(boot.runner, boot.target, fingerprint) {
                    Some(entry) => {
                        let becoming = boot.becoming();
                        child_main(
                            boot,
                            becoming,
                            entry,
                            fds,
                            StartMethod::Spawn,
                            Leave::Normally,
                        )
                    }
                    None => fatal(
                        role,
                        "the executable changed since the parent started: cannot find the target",
                    ),
                }
            }
            Err(e) => fatal(role, &e),
        },
    }
}

/// A spawned child's bootstrap: the memfd at `fd`, descriptors after it.
#[allow(unsafe_code)] // calls of sys's unsafe fns, each with its SAFETY
fn read_spawned(fd: i32) -> Result<(Bootstrap, ChildFds), String> {
    // SAFETY: the parent placed this fd for this process alone and named it
    // in its variable; it is taken once, here.
    let boot_fd =
        unsafe { sys::spawn::take_channel(fd, Channel::SealedMemfd) }.map_err(|e| e.to_string())?;
    let boot = read_bootstrap(boot_fd)?;
    let count = 1 + boot.has_result as usize + boot.nfds as usize;
    let first = fd
        .checked_add(1)
        .ok_or("no room for descriptors after the bootstrap")?;
    let alive = {
        // SAFETY: the parent placed the alive pipe right after the bootstrap,
        // for this process alone; it is taken once, here.
        unsafe { sys::spawn::take_channel(first, Channel::PipeReadEnd) }
            .map_err(|e| format!("the alive pipe: {e}"))?
    };
    let rest = (first..=i32::MAX).skip(1).take(count - 1);
    // SAFETY: the parent placed these after the alive pipe, as many as the
    // bootstrap says, for this process alone; each is taken once, here.
    let mut fds = unsafe { sys::spawn::take_placed(rest) }.map_err(|e| e.to_string())?;
    if fds.len() != count - 1 {
        return Err("no room for the descriptors the bootstrap announces".to_owned());
    }
    fds.insert(0, alive);
    let fds = ChildFds::from_vec(fds, boot.has_result).ok_or("missing descriptors")?;
    Ok((boot, fds))
}

#[cfg(test)]
mod tests;
