//! Per-backend rates (new sessions, packets, bytes per second) from counter deltas between two
//! samples, taken by the daemon about once a second.

use std::{collections::HashMap, time::{Duration, Instant}};

use crate::{api::Rates, balancer::Balancer, dataplane::Counters};

/// A backend incarnation: (id, generation). A reused id starts over.
type Key = (u32, u32);

#[derive(Default)]
pub(super) struct RateMeter {
    last: HashMap<Key, (Instant, Counters)>,
    rates: HashMap<Key, Rates>,
}

impl RateMeter {
    /// Reads every backend's counters and updates its rates from the previous sample.
    pub fn sample(&mut self, balancer: &Balancer, now: Instant) {
        let mut last = HashMap::new();
        let mut rates = HashMap::new();
        for b in balancer.services().iter().flat_map(|s| &s.backends) {
            let key = (b.id, b.generation);
            let counters = balancer.dataplane().backend_counters(b.id);
            if let Some((then, before)) = self.last.get(&key) {
                rates.insert(key, per_second(before, &counters, now - *then));
            }
            last.insert(key, (now, counters));
        }
        self.last = last;
        self.rates = rates;
    }

    /// The backend's rates over the last interval (zero until it has been sampled twice).
    pub fn get(&self, id: u32, generation: u32) -> Rates {
        self.rates.get(&(id, generation)).copied().unwrap_or_default()
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
    fn zeroed_counters_and_no_time_give_no_rate() {
        assert_eq!(per_second(&c(10, 10, 10), &c(1, 1, 1), Duration::from_secs(1)), Rates::default());
        assert_eq!(per_second(&c(0, 0, 0), &c(5, 5, 5), Duration::ZERO), Rates::default());
    }
}
