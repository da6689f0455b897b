//! Per-backend rates (new sessions, packets, bytes per second) from counter deltas between two
//! samples, taken by the daemon about once a second, and the deltas themselves (exact counts,
//! what the contribution accounts add up).

use std::{collections::HashMap, time::{Duration, Instant}};

use crate::{api::Rates, balancer::Balancer, dataplane::Counters};

/// A backend incarnation: (id, generation). A reused id starts over.
type Key = (u32, u32);

#[derive(Default)]
pub(super) struct RateMeter {
    last: HashMap<Key, (Instant, Counters)>,
    rates: HashMap<Key, Rates>,
    deltas: HashMap<Key, Counters>,
    /// Samples taken: rates exist from the second on.
    samples: u64,
}

impl RateMeter {
    /// Reads every backend's counters and updates its rates from the previous sample.
    pub fn sample(&mut self, balancer: &Balancer, now: Instant) {
        let mut last = HashMap::new();
        let mut rates = HashMap::new();
        let mut deltas = HashMap::new();
        for b in balancer.services().iter().flat_map(|s| &s.backends) {
            let key = (b.id, b.generation);
            let counters = balancer.dataplane().backend_counters(b.id);
            let before = self.last.get(&key);
            if let Some((then, before)) = before {
                rates.insert(key, per_second(before, &counters, now - *then));
            }
            // A backend incarnation's counters start at 0, so its first delta is all it has.
            deltas.insert(key, delta(before.map(|(_, c)| c), &counters));
            last.insert(key, (now, counters));
        }
        self.last = last;
        self.rates = rates;
        self.deltas = deltas;
        self.samples += 1;
    }

    /// Whether rates have been measured yet (two samples taken).
    pub fn has_rates(&self) -> bool {
        self.samples >= 2
    }

    /// What the backend was counted for since the previous sample (all of it at its first).
    pub fn delta(&self, id: u32, generation: u32) -> Counters {
        self.deltas.get(&(id, generation)).copied().unwrap_or_default()
    }

    /// The backend's rates over the last interval (zero until it has been sampled twice).
    pub fn get(&self, id: u32, generation: u32) -> Rates {
        self.rates.get(&(id, generation)).copied().unwrap_or_default()
    }
}

fn delta(before: Option<&Counters>, after: &Counters) -> Counters {
    let zero = Counters::default();
    let before = before.unwrap_or(&zero);
    // Smaller than before: zeroed (an id reused); the new counts are all new.
    let d = |a: u64, b: u64| if b >= a { b - a } else { b };
    Counters {
        packets: d(before.packets, after.packets),
        bytes: d(before.bytes, after.bytes),
        new_sessions: d(before.new_sessions, after.new_sessions),
    }
}

fn per_second(before: &Counters, after: &Counters, elapsed: Duration) -> Rates {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return Rates::default();
    }
    // Counters only grow; a smaller value means they were zeroed (an id reused): no rate.
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    Rates {
        new_sessions_per_sec: rate(before.new_sessions, after.new_sessions),
        packets_per_sec: rate(before.packets, after.packets),
        bytes_per_sec: rate(before.bytes, after.bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(packets: u64, bytes: u64, new_sessions: u64) -> Counters {
        Counters { packets, bytes, new_sessions }
    }

    #[test]
    fn rates_are_deltas_over_the_elapsed_time() {
        let r = per_second(&c(10, 1000, 1), &c(30, 5000, 5), Duration::from_millis(2000));
        assert_eq!(r, Rates { new_sessions_per_sec: 2.0, packets_per_sec: 10.0, bytes_per_sec: 2000.0 });
    }

    #[test]
    fn deltas_are_exact_counts_and_a_first_sample_counts_from_zero() {
        assert_eq!(delta(Some(&c(10, 1000, 1)), &c(30, 5000, 5)), c(20, 4000, 4));
        assert_eq!(delta(None, &c(3, 300, 1)), c(3, 300, 1));
        assert_eq!(delta(Some(&c(10, 10, 10)), &c(1, 2, 3)), c(1, 2, 3), "zeroed in between");
    }

    #[test]
    fn zeroed_counters_and_no_time_give_no_rate() {
        assert_eq!(per_second(&c(10, 10, 10), &c(1, 1, 1), Duration::from_secs(1)), Rates::default());
        assert_eq!(per_second(&c(0, 0, 0), &c(5, 5, 5), Duration::ZERO), Rates::default());
    }
}
