//! Which hosts are down: a host whose link was lost (its keep-alives
//! stopped) or whose last start failed is down until a start there
//! succeeds again. While it is down, starting a process there fails at
//! once, without running its launcher (a partitioned host would hold each
//! start for the whole start timeout); a prober (see `crate::hosts`) tries
//! a start in the background, with a backoff, while starts are asked for,
//! and brings the host back up when one succeeds.
//!
//! Hosts are told apart by their launcher's alternate [`Display`] (`{:#}`:
//! the ssh options and a stream launcher's opener included)
//! (`ssh node1`, `ip netns exec h1`): the same host reached by the same
//! command.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::fmt::Display;

use crate::mutex::lock;

/// The first wait before a down host is tried again.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two tries of a down host.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A host that is down.
struct Down {
    host: String,
    since: Instant,
    reason: String,
    /// The wait before its next try.
    backoff: Duration,
    /// A start was asked for since the last try (which a prober answers).
    asked: bool,
    /// A prober is running for it.
    probing: bool,
}

static DOWN: Mutex<Vec<Down>> = Mutex::new(Vec::new());

fn key(launcher: &dyn Display) -> String {
    format!("{launcher:#}")
}

/// Whether `launcher`'s host is down.
pub(crate) fn is_down(launcher: &dyn Display) -> bool {
    let host = key(launcher);
    lock(&DOWN).iter().any(|d| d.host == host)
}

/// Records that `launcher`'s host is down, for `reason`; a host already
/// down waits twice as long before its next try.
pub(crate) fn mark_down(launcher: &dyn Display, reason: String) {
    let host = key(launcher);
    let mut down = lock(&DOWN);
    match down.iter_mut().find(|d| d.host == host) {
        Some(d) => {
            d.reason = reason;
            d.backoff = d.backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
        None => down.push(Down {
            host,
            since: Instant::now(),
            reason,
            backoff: FIRST_BACKOFF,
            asked: false,
            probing: false,
        }),
    }
}

/// Records that a start on `launcher`'s host succeeded: it is up.
pub(crate) fn mark_up(launcher: &dyn Display) {
    let host = key(launcher);
    lock(&DOWN).retain(|d| d.host != host);
}

/// Records that no prober runs for `launcher`'s host (its thread could not
/// start): the next start asked for starts one.
pub(crate) fn prober_gone(launcher: &dyn Display) {
    let host = key(launcher);
    if let Some(d) = lock(&DOWN).iter_mut().find(|d| d.host == host) {
        d.probing = false;
    }
}

/// What a start on a down host is told.
pub(crate) struct Refusal {
    /// Why the host is down, and since when.
    pub(crate) reason: String,
    /// Whether the caller must start a prober (none runs for the host).
    pub(crate) start_prober: bool,
}

/// `None` if `launcher`'s host is up; else why a start there is refused
/// now (and the start is recorded as asked for, so that a prober tries the
/// host).
pub(crate) fn refusal(launcher: &dyn Display) -> Option<Refusal> {
    let host = key(launcher);
    let mut down = lock(&DOWN);
    let d = down.iter_mut().find(|d| d.host == host)?;
    d.asked = true;
    let start_prober = !d.probing;
    d.probing = true;
    Some(Refusal {
        reason: format!(
            "the host is down ({}, {:.1?} ago); it is tried again in the background, and starts there \
             fail at once until a try succeeds",
            d.reason,
            d.since.elapsed()
        ),
        start_prober,
    })
}

/// For a prober of `launcher`'s host: how long to wait before the next
/// try, or `None` when it should stop (the host is up, or no start was
/// asked for since its last try: it is probed again when one is).
pub(crate) fn next_try(launcher: &dyn Display) -> Option<Duration> {
    let host = key(launcher);
    let mut down = lock(&DOWN);
    let d = down.iter_mut().find(|d| d.host == host)?;
    if !d.asked {
        d.probing = false;
        return None;
    }
    d.asked = false;
    Some(d.backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_host_refuses_until_it_is_up_and_probes_while_asked() {
        let l = "health-test-host";
        assert!(!is_down(&l));
        assert!(refusal(&l).is_none());
        mark_down(&l, "its link was lost".into());
        assert!(is_down(&l));
        let first = refusal(&l).unwrap();
        assert!(first.start_prober);
        assert!(first.reason.contains("its link was lost"));
        // One prober at a time.
        assert!(!refusal(&l).unwrap().start_prober);
        assert_eq!(next_try(&l), Some(FIRST_BACKOFF));
        // A failed try doubles the wait.
        mark_down(&l, "no answer".into());
        assert!(refusal(&l).is_some());
        assert_eq!(next_try(&l), Some(FIRST_BACKOFF * 2));
        // Nobody asked since: the prober stops, and the next ask starts one.
        assert_eq!(next_try(&l), None);
        assert!(refusal(&l).unwrap().start_prober);
        mark_up(&l);
        assert!(!is_down(&l));
        assert_eq!(next_try(&l), None);
    }
}
