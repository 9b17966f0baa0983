//! Starting a process on another host while hosts go down and come back:
//! a start on a host known to be down fails at once, and a prober tries
//! the host in the background (see `rt::health`).

use crate::error::{Error, Result};
use crate::rt::health;
use crate::rt::launcher::Launcher;
use crate::rt::remote;
use crate::rt::runtime::Child;
use crate::rt::start::Launch;

/// A prober's try: starts a process by the launcher, even while its host
/// is down (by [`launch`] as a probe), and waits for it to end; whether it ran.
pub(crate) type Try = fn(&Launcher) -> bool;

/// Starts `launch` by `launcher` (not local), unless its host is down;
/// then a prober makes `tries` in the background.
pub(crate) fn start(launch: Launch<'_>, launcher: &Launcher, tries: Try) -> Result<Child> {
    if let Some(refusal) = health::refusal(launcher) {
        if refusal.start_prober {
            probe(launcher.clone(), tries);
        }
        return Err(Error::RemoteStart {
            name: launch.name.to_owned(),
            host: launcher.host(),
            reason: refusal.reason,
        });
    }
    self::launch(launch, launcher, false)
}

/// Starts `launch` by `launcher`, recording whether its host is up: a
/// start that fails on the host's side (not, say, an argument that cannot
/// cross) puts it down; one that succeeds brings it up, unless it is a
/// prober's (the prober does once its process has ended, so that nothing
/// of the try is left when the host is seen up).
pub(crate) fn launch(launch: Launch<'_>, launcher: &Launcher, probe: bool) -> Result<Child> {
    let started = remote::launch(launch, launcher);
    match &started {
        Ok(_) if !probe => health::mark_up(launcher),
        Err(Error::RemoteStart { reason, .. }) => {
            health::mark_down(launcher, format!("a start failed: {reason}"));
        }
        _ => {}
    }
    started
}

/// Held (shared) by a prober while it tries a host; held alone by
/// [`hold_probes`].
static TRYING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Waits for the probers' tries in flight to end and keeps new ones from
/// starting until dropped (for a test that counts this process's
/// descriptors: a try holds some while it runs).
pub(crate) fn hold_probes() -> std::sync::RwLockWriteGuard<'static, ()> {
    TRYING
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Tries `launcher`'s host in a thread, after a backoff each time, while
/// starts there are asked for, until a start succeeds (the host is then
/// up).
fn probe(launcher: Launcher, tries: Try) {
    // Its processes take no slot of the host: a `ClusterContext` places
    // processes while it tries.
    let launcher = launcher.uncounted();
    let tried = launcher.clone();
    let prober = std::thread::Builder::new()
        .name("mp-host-probe".into())
        .spawn(move || {
            while let Some(wait) = health::next_try(&launcher) {
                std::thread::sleep(wait);
                let trying = TRYING
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let up = tries(&launcher);
                drop(trying);
                if up {
                    health::mark_up(&launcher);
                    return;
                }
            }
        });
    if prober.is_err() {
        health::prober_gone(&tried);
    }
}
