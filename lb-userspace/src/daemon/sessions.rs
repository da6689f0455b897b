//! Active sessions per backend, counted by the daemon's tick instead of per request: counting
//! scans all of SESSIONS (1M slots, 64 MiB of mapped memory) on the daemon's loop, so
//! `lb status`, `lb metrics` and scrapes read the last count, and a large table is walked less
//! often than once a tick.

use std::time::{Duration, Instant};

use super::state::TICK;
use crate::dataplane::{Dataplane, SessionCounts};

/// A walk may take at most 1/BUDGET of the loop's time: one that took 100 ms is repeated at
/// most every 2 s.
const BUDGET: u32 = 20;

#[derive(Default)]
pub(super) struct SessionCensus {
    counts: SessionCounts,
    /// When the last walk started, and how long it took.
    taken: Option<Instant>,
    walk: Duration,
}

impl SessionCensus {
    /// Counts again if the last count is a tick old (or older than its budget allows). Returns
    /// whether it did, i.e. whether `counts()` is as of `now` (or later).
    pub fn refresh(&mut self, dp: &Dataplane, now: Instant) -> bool {
        if !self.due(now) {
            return false;
        }
        self.count_now(dp);
        true
    }

    /// Counts at once, whatever the budget says (for an operator's drain, who wants to see
    /// the sessions left right away).
    pub fn count_now(&mut self, dp: &Dataplane) {
        let start = Instant::now();
        tracing::debug!("walking SESSIONS");
        self.counts = dp.session_counts();
        self.taken = Some(start);
        self.walk = start.elapsed();
        tracing::debug!(walk_us = self.walk.as_micros() as u64, "counted SESSIONS");
    }

    fn due(&self, now: Instant) -> bool {
        let Some(taken) = self.taken else { return true };
        // Ticks come about (not exactly) a TICK apart: half a tick of slack keeps "every tick".
        let every = TICK.max(self.walk * BUDGET);
        now + TICK / 2 >= taken + every
    }

    pub fn counts(&self) -> &SessionCounts {
        &self.counts
    }

    /// Active sessions of a backend incarnation as of the last count.
    pub fn get(&self, id: u32, generation: u32) -> u64 {
        self.counts.get(&(id, generation)).copied().unwrap_or(0)
    }

    /// Active sessions over all backend incarnations as of the last count; None before the first.
    pub fn total(&self) -> Option<u64> {
        self.taken.map(|_| self.counts.values().sum())
    }

    /// How old the last count is; None before the first.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.taken.map(|t| now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_due_every_tick_unless_walks_are_slow() {
        let t0 = Instant::now();
        let mut c = SessionCensus::default();
        assert!(c.due(t0), "nothing counted yet");
        c.taken = Some(t0);
        c.walk = Duration::from_millis(2);
        assert!(!c.due(t0 + TICK / 4));
        // A tick that comes a little early still counts.
        assert!(c.due(t0 + TICK - Duration::from_millis(10)));
        c.walk = Duration::from_millis(500);
        assert!(!c.due(t0 + TICK), "a 500 ms walk must not run every tick");
        assert!(c.due(t0 + Duration::from_secs(10)));
        assert_eq!(c.age(t0 + Duration::from_secs(3)), Some(Duration::from_secs(3)));
    }
}
