//! The session of Python's `log_to_stderr()` documentation, in Rust:
//! `cargo run -q -p mp-manager --example log_to_stderr`.

use mp_logging::Level;

fn main() -> Result<(), mp_manager::Error> {
    mp_proc::init();
    let logger = mp_logging::log_to_stderr(Some(Level::Info));
    logger.warning("doomed");
    let m = mp_manager::SyncManager::start()?;
    drop(m); // del m: the manager shuts down
    Ok(())
}
