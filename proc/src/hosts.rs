//! Starting a process on another host while hosts go down and come back:
//! a start on a host known to be down fails at once, and a prober tries
//! the host in the background (see `rt::health`).

use crate::error::{Error, Result};
use crate::process::Process;
use crate::rt::health;
use crate::rt::launcher::Launcher;
use crate::rt::remote;
use crate::rt::runtime::Child;
use crate::rt::start::Launch;

/// Starts `launch` by `launcher` (not local), unless its host is down.
pub(crate) fn start(launch: Launch<'_>, launcher: &Launcher) -> Result<Child> {
    if let Some(refusal) = health::refusal(launcher) {
        if refusal.start_prober {
            probe(launcher.clone());
        }
        return Err(Error::RemoteStart {
            name: launch.name.to_owned(),
            host: launcher.host(),
            reason: refusal.reason,
        });
    }
    start_and_record(launch, launcher)
}

/// Starts `launch` by `launcher`, recording whether its host is up.
pub(crate) fn start_and_record(launch: Launch<'_>, launcher: &Launcher) -> Result<Child> {
    match remote::launch(launch, launcher) {
        Ok(child) => {
            health::mark_up(launcher);
            Ok(child)
        }
        Err(e @ Error::RemoteStart { .. }) => {
            let reason = match &e {
                Error::RemoteStart { reason, .. } => format!("a start failed: {reason}"),
                _ => String::new(),
            };
            health::mark_down(launcher, reason);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// The prober's process: it only has to start.
fn arrived(_: ()) {}

/// Tries `launcher`'s host in a thread, after a backoff each time, while
/// starts there are asked for, until a start succeeds (the host is then
/// up).
fn probe(launcher: Launcher) {
    // Its processes take no slot of the host: a `ClusterContext` places
    // processes while it tries.
    let launcher = launcher.uncounted();
    let tried = launcher.clone();
    let prober = std::thread::Builder::new()
        .name("mp-host-probe".into())
        .spawn(move || {
            while let Some(wait) = health::next_try(&launcher) {
                std::thread::sleep(wait);
                let mut p = Process::new(arrived, ()).name("HostProbe").launcher(launcher.clone());
                if p.start_probe().is_ok() {
                    let _ = p.join();
                    return;
                }
            }
        });
    if prober.is_err() {
        health::prober_gone(&tried);
    }
}
