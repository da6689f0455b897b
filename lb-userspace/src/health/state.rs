//! Rise/fall hysteresis: one failed probe must not pull a backend, one lucky probe must not
//! restore a flapping one.

use serde::{Deserialize, Serialize};

use super::Health;

/// Pure state machine fed with probe outcomes.
///
/// - Up goes Down after `fall` consecutive failures.
/// - Down goes Up after `rise` consecutive successes.
/// - Fast start: a backend that has never been Up (one made by `new`) comes Up on its first
///   success, even if `rise` > 1, so a freshly started balancer serves within one check
///   instead of `rise` intervals. After its first Down it needs the full `rise`.
///
/// A result that breaks a streak resets it. `rise` and `fall` of 0 are taken as 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthState {
    health: Health,
    rise: u32,
    fall: u32,
    /// Consecutive results pointing away from `health` (successes while Down, failures while Up).
    streak: u32,
    /// False until the first Up: the fast start applies only then.
    been_up: bool,
}

impl HealthState {
    /// A backend not yet checked: Down, and Up at its first success.
    pub fn new(rise: u32, fall: u32) -> Self {
        HealthState {
            health: Health::Down,
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
            been_up: false,
        }
    }

    /// A backend already known to be serving (e.g. kept across a reload): Up until `fall`
    /// failures.
    pub fn initial_up(rise: u32, fall: u32) -> Self {
        HealthState {
            health: Health::Up,
            been_up: true,
            ..HealthState::new(rise, fall)
        }
    }

    /// Feeds one probe outcome; returns the new health only when it changed.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let toward_other = match self.health {
            Health::Up => !ok,
            Health::Down => ok,
        };
        if !toward_other {
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        let flip = match self.health {
            Health::Up => self.streak >= self.fall,
            Health::Down => self.streak >= self.rise || !self.been_up,
        };
        if !flip {
            return None;
        }
        self.health = match self.health {
            Health::Up => Health::Down,
            Health::Down => Health::Up,
        };
        self.been_up = true;
        self.streak = 0;
        Some(self.health)
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Where it stands, to carry over a restart.
    pub fn history(&self) -> HealthHistory {
        HealthHistory { health: self.health, streak: self.streak, been_up: self.been_up }
    }

    /// A backend that goes on from `history` (a restart). A streak that reached the current
    /// `rise`/`fall` (lowered since) stops one short: the next result completes it.
    pub fn resume(rise: u32, fall: u32, history: HealthHistory) -> Self {
        let mut s = HealthState { health: history.health, been_up: history.been_up, ..HealthState::new(rise, fall) };
        let threshold = match s.health {
            Health::Up => s.fall,
            Health::Down => s.rise,
        };
        s.streak = history.streak.min(threshold - 1);
        s
    }
}

/// What a restart keeps of a backend's hysteresis: its health, the results counted toward the
/// other one, and whether it was ever up (the fast start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthHistory {
    pub health: Health,
    pub streak: u32,
    pub been_up: bool,
}

impl HealthHistory {
    /// No history: Down as a new backend (up at its first success), or Up as a backend known
    /// to serve (down after `fall` failures).
    pub fn starting(health: Health) -> Self {
        HealthHistory { health, streak: 0, been_up: health == Health::Up }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut HealthState, results: &[bool]) -> Vec<Option<Health>> {
        results.iter().map(|&ok| s.record(ok)).collect()
    }

    #[test]
    fn new_backend_starts_down_and_comes_up_on_first_success() {
        let mut s = HealthState::new(3, 2);
        assert_eq!(s.health(), Health::Down);
        assert_eq!(s.record(true), Some(Health::Up));
        assert_eq!(s.health(), Health::Up);
    }

    #[test]
    fn fast_start_also_after_initial_failures() {
        let mut s = HealthState::new(3, 2);
        assert_eq!(
            feed(&mut s, &[false, false, true]),
            [None, None, Some(Health::Up)]
        );
    }

    #[test]
    fn up_goes_down_after_fall_consecutive_failures() {
        let mut s = HealthState::initial_up(2, 3);
        assert_eq!(feed(&mut s, &[false, false]), [None, None]);
        assert_eq!(s.health(), Health::Up);
        assert_eq!(s.record(false), Some(Health::Down));
        assert_eq!(
            s.record(false),
            None,
            "no repeated event while staying down"
        );
    }

    #[test]
    fn down_needs_rise_successes_after_having_been_up() {
        let mut s = HealthState::new(3, 1);
        assert_eq!(
            feed(&mut s, &[true, false]),
            [Some(Health::Up), Some(Health::Down)]
        );
        assert_eq!(
            feed(&mut s, &[true, true, true]),
            [None, None, Some(Health::Up)]
        );
        assert_eq!(s.record(true), None, "no repeated event while staying up");
    }

    #[test]
    fn alternating_results_reset_the_streak() {
        let mut s = HealthState::initial_up(2, 2);
        // Never two failures in a row: stays up.
        assert!(
            feed(&mut s, &[false, true, false, true, false, true])
                .iter()
                .all(Option::is_none)
        );
        assert_eq!(s.health(), Health::Up);
        assert_eq!(feed(&mut s, &[false, false]), [None, Some(Health::Down)]);
        // Never two successes in a row: stays down.
        assert!(
            feed(&mut s, &[true, false, true, false, true, false])
                .iter()
                .all(Option::is_none)
        );
        assert_eq!(s.health(), Health::Down);
        assert_eq!(feed(&mut s, &[true, true]), [None, Some(Health::Up)]);
    }

    #[test]
    fn initial_up_has_no_fast_path_back() {
        let mut s = HealthState::initial_up(2, 1);
        assert_eq!(s.record(false), Some(Health::Down));
        assert_eq!(feed(&mut s, &[true, true]), [None, Some(Health::Up)]);
    }

    #[test]
    fn a_resumed_backend_keeps_its_streak() {
        // 2 of 3 rise successes before the restart: one more brings it up.
        let mut s = HealthState::new(3, 2);
        feed(&mut s, &[true, false, false]);
        feed(&mut s, &[true, true]);
        let mut resumed = HealthState::resume(3, 2, s.history());
        assert_eq!(resumed, s);
        assert_eq!(resumed.record(true), Some(Health::Up));
        // Failing, 1 of fall 2: the next failure takes it down.
        let mut up = HealthState::initial_up(3, 2);
        up.record(false);
        let mut resumed = HealthState::resume(3, 2, up.history());
        assert_eq!(resumed.record(false), Some(Health::Down));
        // Never up: the fast start survives the restart too.
        let mut fresh = HealthState::resume(3, 2, HealthState::new(3, 2).history());
        assert_eq!(fresh.record(true), Some(Health::Up));
        // rise lowered to 2 while 2 successes were counted: the next one completes it, not sooner.
        let mut lowered = HealthState::resume(2, 2, HealthHistory { health: Health::Down, streak: 2, been_up: true });
        assert_eq!(lowered.history().streak, 1);
        assert_eq!(lowered.record(true), Some(Health::Up));
        assert_eq!(HealthState::resume(3, 2, HealthHistory::starting(Health::Up)), HealthState::initial_up(3, 2));
        assert_eq!(HealthState::resume(3, 2, HealthHistory::starting(Health::Down)), HealthState::new(3, 2));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut s = HealthState::initial_up(0, 0);
        assert_eq!(s.record(false), Some(Health::Down));
        assert_eq!(s.record(true), Some(Health::Up));
    }
}
