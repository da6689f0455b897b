//! Rise/fall hysteresis: one failed probe must not pull a backend, one lucky probe must not
//! restore a flapping one.

use serde::Serialize;

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
    fn zero_thresholds_act_as_one() {
        let mut s = HealthState::initial_up(0, 0);
        assert_eq!(s.record(false), Some(Health::Down));
        assert_eq!(s.record(true), Some(Health::Up));
    }
}
