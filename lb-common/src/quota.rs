//! New-session quotas (`max_new_sessions_per_sec`), enforced by the XDP program per new flow,
//! across CPUs: a generic cell rate algorithm (GCRA, a token bucket kept as one timestamp).
//!
//! Each backend with a quota has a theoretical arrival time (TAT) in NEW_SESSION_PACE. A new
//! flow at time `now` is admitted if TAT - now <= tolerance; TAT then moves to max(TAT, now) +
//! interval. One compare-and-swap per admission keeps every CPU honest, and in any window of
//! length L at most L / interval + tolerance / interval + 1 flows are admitted: in any second
//! the quota, plus a burst of QUOTA_BURST_PERCENT (at least one), plus one
//! (`most_admitted_in_a_second`).
//!
//! The tolerance is what lets flows that arrive at random, not evenly spaced, use the quota: a
//! tolerance of 0 admits a flow only a whole interval after the last one, and a 40/s backend
//! offered 60 flows a second at random then takes about 24 (measured by the ramp test).

/// The burst a quota tolerates beyond its steady rate, in percent of one second's quota: what a
/// backend may see above its quota in any one second (at least one session).
pub const QUOTA_BURST_PERCENT: u64 = 2;

/// NEW_SESSION_QUOTAS value, indexed by backend id: its pace. Written by userspace; all zero
/// (no quota) for a backend without one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewSessionQuota {
    /// Nanoseconds per admitted new session (1e9 / quota); 0: no quota.
    pub interval_ns: u64,
    /// How far TAT may run ahead of now and still admit: the burst, in nanoseconds.
    pub tolerance_ns: u64,
}

impl NewSessionQuota {
    /// The pace of `per_sec` new sessions a second (0: none).
    pub const fn per_second(per_sec: u32) -> Self {
        if per_sec == 0 {
            return NewSessionQuota { interval_ns: 0, tolerance_ns: 0 };
        }
        // Above 10^9 a second the pace is 1 ns: as fine as the clock goes.
        let interval_ns = 1_000_000_000 / per_sec as u64;
        let interval_ns = if interval_ns == 0 { 1 } else { interval_ns };
        // TAT may be `burst` intervals ahead of now: after a pause, burst + 1 flows pass back
        // to back, and a flow that comes a little early after its predecessor still passes.
        NewSessionQuota { interval_ns, tolerance_ns: quota_burst(per_sec) * interval_ns }
    }

    pub const fn is_set(&self) -> bool {
        self.interval_ns != 0
    }
}

/// Flows a quota of `per_sec` may admit beyond its steady rate: QUOTA_BURST_PERCENT of it,
/// at least one.
pub const fn quota_burst(per_sec: u32) -> u64 {
    let burst = (per_sec as u64 * QUOTA_BURST_PERCENT).div_ceil(100);
    if burst == 0 { 1 } else { burst }
}

/// The most new flows a quota of `per_sec` admits in any one-second window: the quota, its
/// burst, and one (the flow that finds TAT exactly at the tolerance).
pub const fn most_admitted_in_a_second(per_sec: u32) -> u64 {
    per_sec as u64 + quota_burst(per_sec) + 1
}

/// One admission decision: Some(new TAT) if a new flow at `now` is admitted with the backend's
/// TAT at `tat`, None if the backend is at its quota (TAT unchanged).
#[inline(always)]
pub const fn admit(quota: &NewSessionQuota, tat: u64, now: u64) -> Option<u64> {
    let base = if tat > now { tat } else { now };
    if base - now > quota.tolerance_ns {
        return None;
    }
    Some(base + quota.interval_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers `offered` new flows a second, evenly spread, for `secs` seconds starting at a
    /// non-round time; returns the flows admitted in each whole second.
    fn run(quota: u32, offered: u64, secs: u64, start: u64) -> std::vec::Vec<u64> {
        let q = NewSessionQuota::per_second(quota);
        let mut tat = 0;
        let mut per_second = std::vec![0u64; secs as usize + 1];
        for i in 0..offered * secs {
            let now = start + i * 1_000_000_000 / offered;
            if let Some(next) = admit(&q, tat, now) {
                tat = next;
                per_second[((now - start) / 1_000_000_000) as usize] += 1;
            }
        }
        per_second.truncate(secs as usize);
        per_second
    }

    #[test]
    fn a_quota_is_never_exceeded_by_more_than_its_burst() {
        for quota in [1u32, 10, 40, 300, 1500, 100_000] {
            for offered in [quota as u64 / 2 + 1, quota as u64, quota as u64 * 3] {
                let seconds = run(quota, offered, 5, 123_456_789);
                let most = *seconds.iter().max().unwrap();
                assert!(most <= most_admitted_in_a_second(quota), "quota {quota}, offered {offered}/s: {seconds:?}");
            }
            // A few percent over the quota at most (at least the one flow of the burst).
            let over = most_admitted_in_a_second(quota) - quota as u64;
            assert!(over <= 2 + quota as u64 * QUOTA_BURST_PERCENT / 100 + 1, "quota {quota}: {over} over");
        }
    }

    #[test]
    fn flows_at_random_use_most_of_the_quota() {
        // A 40/s backend offered 60 flows a second at random (exponential gaps, a fixed seed):
        // the tolerance lets it take most of its 40, not the ~24 that exact spacing allows.
        let q = NewSessionQuota::per_second(40);
        let (mut tat, mut now, mut admitted, mut x) = (0u64, 0u64, 0u64, 0x2545_f491_4f6c_dd1du64);
        for _ in 0..60 * 100 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            now += (-(1.0 - u).ln() / 60.0 * 1e9) as u64;
            if let Some(next) = admit(&q, tat, now) {
                tat = next;
                admitted += 1;
            }
        }
        let per_sec = admitted as f64 / (now as f64 / 1e9);
        assert!(per_sec > 33.0, "a 40/s quota offered 60/s at random took {per_sec:.1}/s");
    }

    #[test]
    fn under_its_quota_every_flow_is_admitted_and_over_it_the_quota_is_used() {
        // Offered below the quota: nothing is refused.
        assert_eq!(run(300, 200, 4, 7), [200, 200, 200, 200]);
        // Offered 3x the quota: each second admits the quota (+ the burst at most).
        for n in run(300, 900, 4, 7) {
            assert!((299..=most_admitted_in_a_second(300)).contains(&n), "{n}");
        }
    }

    #[test]
    fn a_window_anywhere_holds_at_most_the_quota_and_its_burst() {
        // A burst after a long pause, then a steady overload: any 1-s window, wherever it
        // starts, holds at most quota + burst admissions.
        let q = NewSessionQuota::per_second(100);
        let mut tat = 0;
        let mut admitted = std::vec::Vec::new();
        let start = 10_000_000_000u64;
        for i in 0..20_000u64 {
            let now = start + i * 250_000; // 4,000 offered a second
            if let Some(next) = admit(&q, tat, now) {
                tat = next;
                admitted.push(now);
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|&&u| u < t + 1_000_000_000).count() as u64;
            assert!(in_window <= most_admitted_in_a_second(100), "{in_window} admitted in the second from {t}");
        }
    }

    #[test]
    fn a_quota_above_the_clocks_resolution_still_paces() {
        assert!(NewSessionQuota::per_second(u32::MAX).is_set());
    }

    #[test]
    fn no_quota_is_all_zero() {
        assert!(!NewSessionQuota::per_second(0).is_set());
        assert_eq!(NewSessionQuota::per_second(1000), NewSessionQuota { interval_ns: 1_000_000, tolerance_ns: 20_000_000 });
    }
}
