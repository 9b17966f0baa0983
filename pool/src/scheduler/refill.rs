//! Replacing workers, and going on when a replacement cannot start.
//!
//! A worker that ends is replaced at once. If its replacement's start
//! fails (its host is down or partitioned: mp-proc's
//! `Error::RemoteStart`; or this machine is out of processes or
//! descriptors) while other workers still live, the pool goes on with them:
//! one warning per streak of failures, and the start is tried again
//! [`FIRST_RETRY`] later, then after twice as long each time up to
//! [`MAX_RETRY`], through the scheduler's own wake-up (its wait's timeout:
//! no thread, no busy loop); a start that succeeds ends the streak. With no
//! live worker and tasks waiting, [`TRIES_WITHOUT_WORKERS`] starts in a row
//! fail and then every waiting call fails with the start's error (the pool
//! is broken), so that nothing waits for ever on workers that cannot start.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Scheduler;
use super::held::Worker;
use crate::error::Result;
use crate::job::Run;
use crate::progress::Position;

/// How long after a failed start the next is tried, the first time.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two tries: the delay doubles up to it.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(5);
/// With no live worker and tasks waiting, how many starts in a row may
/// fail before the waiting calls fail (the first try and two more, after
/// 100 and 200 ms: a host that is briefly unreachable does not break the
/// pool, one that stays so fails its callers within a second or so plus
/// the starts' own time).
pub(super) const TRIES_WITHOUT_WORKERS: u32 = 3;

/// The state of a streak of failed starts.
#[derive(Debug, Default)]
pub(super) struct Retry {
    /// Failed starts in a row (0: the last start succeeded).
    failures: u32,
    /// When a start may be tried again (`None`: at once).
    at: Option<Instant>,
}

impl Retry {
    /// Whether a start may be tried at `now`.
    /// (`now` is read only while a try waits.)
    pub(super) fn due(&self, now: impl FnOnce() -> Instant) -> bool {
        self.at.is_none_or(|at| at <= now())
    }

    /// How long from `now` until a start is tried again (`None`: no try is
    /// waiting; no clock is read then).
    pub(super) fn wake_in(&self, now: impl FnOnce() -> Instant) -> Option<Duration> {
        self.at.map(|at| at.saturating_duration_since(now()))
    }

    /// Failed starts in a row so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// A start failed at `now`: the next is tried after the delay returned
    /// (doubling from [`FIRST_RETRY`] up to [`MAX_RETRY`]).
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        let doublings = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let delay = FIRST_RETRY.saturating_mul(1u32 << doublings).min(MAX_RETRY);
        // A delay past any clock: tried at once instead (never, in practice).
        self.at = now.checked_add(delay).or(Some(now));
        delay
    }

    /// The pool has the workers it needs: the streak (if any) ends; how
    /// many starts had failed in it.
    pub(super) fn succeeded(&mut self) -> u32 {
        self.at = None;
        std::mem::take(&mut self.failures)
    }

    /// No worker is needed now (the pool closed with nothing left to run):
    /// no try waits, so the scheduler does not wake for one; the next need
    /// tries at once.
    pub(super) fn pause(&mut self) {
        self.at = None;
    }
}

impl Scheduler {
    /// How many workers are neither retiring nor ending.
    pub(super) fn live(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| !w.retiring && !w.ended)
            .count()
    }

    /// Starts workers until `n` of them are neither retiring nor ending.
    pub(super) fn fill_to(&mut self, n: usize) -> Result<()> {
        while self.live() < n {
            let link = self.spawn.spawn()?;
            mp_logging::get_logger().debug("added worker");
            self.workers.push(Worker {
                link,
                in_flight: VecDeque::new(),
                item_cost: None,
                busy_since: Instant::now(),
                outbox: Vec::new(),
                sent: 0,
                left: self.limits.maxtasks,
                retiring: false,
                ended: false,
                idle_since: Instant::now(),
                reported: self.limits.task_timeout.map(|_| Position::default()),
            });
        }
        Ok(())
    }

    /// Replaces workers that ended, while there is work for them: all of
    /// them, or with an idle timeout as many as tasks wait. A start that
    /// fails is tried again later (see the module's documentation).
    pub(super) fn refill(&mut self) {
        let (needed, waiting) = {
            let st = self.shared.lock();
            let needed = st.broken.is_none()
                && match st.run {
                    Run::Running => true,
                    Run::Closed => !st.pending.is_empty(),
                    Run::Terminated => false,
                };
            (needed, st.pending.len())
        };
        if !needed {
            self.retry.pause();
            return;
        }
        if !self.retry.due(Instant::now) {
            return;
        }
        let n = match self.limits.idle {
            None => self.processes,
            Some(_) => self.processes.min(self.live().saturating_add(waiting)),
        };
        let log = mp_logging::get_logger();
        let e = match self.fill_to(n) {
            Ok(()) => {
                let failed = self.retry.succeeded();
                if failed > 0 {
                    log.info(format_args!(
                        "a pool worker started after {failed} failed start(s): {} of {} workers run",
                        self.live(),
                        self.processes
                    ));
                }
                return;
            }
            Err(e) => e,
        };
        let live = self.live();
        if live == 0 && waiting > 0 && self.retry.failures() + 1 >= TRIES_WITHOUT_WORKERS {
            log.warning(format_args!(
                "could not replace a pool worker ({} tries, no worker left): {e}",
                self.retry.failures() + 1
            ));
            self.shared.fail_everything(e);
            return;
        }
        let first = self.retry.failures() == 0;
        let delay = self.retry.failed(Instant::now());
        if first {
            log.warning(format_args!(
                "could not replace a pool worker: {e}; going on with {live} of {} workers, \
                 trying again in {delay:?}, then less often (up to every {MAX_RETRY:?})",
                self.processes
            ));
        } else {
            log.debug(format_args!(
                "could not replace a pool worker (try {}): {e}; next in {delay:?}",
                self.retry.failures()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_100_ms_up_to_5_s_and_resets_on_success() {
        let now = Instant::now();
        let later = |d: Duration| now.checked_add(d).unwrap();
        let mut retry = Retry::default();
        assert!(retry.due(|| now));
        assert_eq!(retry.wake_in(|| now), None);
        let delays: Vec<u64> = (0..10)
            .map(|_| retry.failed(now).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
        );
        assert_eq!(retry.failures(), 10);
        assert!(!retry.due(|| now));
        assert_eq!(retry.wake_in(|| now), Some(MAX_RETRY));
        assert!(retry.due(|| later(MAX_RETRY)));
        assert_eq!(retry.wake_in(|| later(MAX_RETRY * 2)), Some(Duration::ZERO));
        assert_eq!(retry.succeeded(), 10);
        assert_eq!(retry.failures(), 0);
        assert!(retry.due(|| now));
        assert_eq!(retry.wake_in(|| now), None);
        assert_eq!(retry.failed(now), FIRST_RETRY);
    }

    #[test]
    fn a_long_streak_stays_at_the_cap() {
        let now = Instant::now();
        let mut retry = Retry {
            failures: u32::MAX - 1,
            at: None,
        };
        assert_eq!(retry.failed(now), MAX_RETRY);
        assert_eq!(retry.failed(now), MAX_RETRY);
        assert_eq!(retry.failures(), u32::MAX);
    }

    #[test]
    fn a_pause_keeps_the_streak_but_waits_for_nothing() {
        let now = Instant::now();
        let mut retry = Retry::default();
        retry.failed(now);
        retry.pause();
        assert!(retry.due(|| now));
        assert_eq!(retry.wake_in(|| now), None);
        assert_eq!(retry.failed(now), FIRST_RETRY * 2);
    }
}
