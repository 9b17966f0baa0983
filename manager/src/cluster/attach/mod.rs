//! [`ClusterContext::from_launcher`]: the copies of one program that an
//! engine started (mpirun, srun, a Kubernetes Indexed Job) form a cluster:
//! rank 0 coordinates (its context's hosts are the other copies), the
//! others serve as its hosts until it is done.
//!
//! `env` reads the variables, `wire` has the messages, `coordinator` is
//! rank 0's side, `worker` the others'.

mod coordinator;
mod env;
mod wire;
mod worker;

pub(crate) use coordinator::Coordinator;

use mp_proc::Launcher;

use super::{ClusterBuilder, ClusterContext};
use crate::Result;

/// See [`ClusterContext::from_launcher`].
pub(super) fn from_launcher() -> Result<Option<ClusterContext>> {
    let Some((_, rank)) = env::rank()? else {
        return Err(env::invalid(format!(
            "this program was not started by mpirun, srun or an Indexed Job (none of {} is set)",
            env::RANKS.join(", ")
        )));
    };
    let env = env::read(rank)?;
    let key = mp_proc::connection::authkey_from_env()?;
    mp_proc::set_authkey(&key)?;
    if rank != 0 {
        worker::serve(&env, &key)?;
        return Ok(None);
    }
    if env.size == 1 {
        // No other copy: this machine, one slot (as each copy offers).
        return ClusterContext::builder()
            .host(Launcher::local(), env.slots)
            .build()
            .map(Some);
    }
    let (coordinator, copies) = Coordinator::start(&env, &key)?;
    let mut builder = ClusterBuilder::default();
    for copy in &copies {
        let name = format!("rank {} ({})", copy.rank, copy.host);
        builder = builder.host(
            Launcher::stream(&name, coordinator.opener(copy.rank)).keepalive(env.keepalive),
            copy.slots,
        );
    }
    builder.attached = Some(coordinator);
    builder.build().map(Some)
}

/// Shuts a connection's socket down both ways: its readers, here and in
/// the peer, see the end.
fn shutdown(fd: std::os::fd::BorrowedFd<'_>) {
    if let Ok(fd) = fd.try_clone_to_owned() {
        let _ = std::net::TcpStream::from(fd).shutdown(std::net::Shutdown::Both);
    }
}
