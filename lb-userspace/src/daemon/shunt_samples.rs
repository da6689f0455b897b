//! One second of measurements, turned into what the shunting policy reads: a per-second
//! `BackendSample` per backend (quotas, alerts), the service's `ServiceSample` (the rules), the
//! overflow backends' `BackendObservation`s (their states) and their exact counts (the
//! contribution accounts). Everything comes from what the daemon measures anyway (the rate
//! meter, the session census, the balancer's health, the checkers' latest latency), so
//! shunting reads no map of its own.

use std::{collections::HashMap, net::SocketAddr};

use super::{rates::RateMeter, sessions::SessionCensus};
use crate::{
    api::Rates,
    balancer::ServiceState,
    config::{Pool, ServiceConfig},
    dataplane::Counters,
    health::BackendHealthStatus,
    policy::{BackendObservation, BackendSample, ServiceSample, primary_load},
};

/// One backend as the daemon measured it over its last tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Measured {
    pub addr: SocketAddr,
    pub pool: Pool,
    /// Its health check passes (the balancer's `up`).
    pub up: bool,
    /// Active sessions, as last counted.
    pub sessions: u64,
    /// Per second over the last tick.
    pub rates: Rates,
    /// Exactly what it was counted for since the previous tick.
    pub counted: Counters,
    /// Its latest health check's latency, once it has had one.
    pub check_latency_ms: Option<f64>,
}

/// Every backend of `svc`, measured.
pub(super) fn measure(
    svc: &ServiceState,
    rates: &RateMeter,
    census: &SessionCensus,
    health: &HashMap<(String, SocketAddr), BackendHealthStatus>,
) -> Vec<Measured> {
    svc.backends
        .iter()
        .map(|b| Measured {
            addr: b.addr,
            pool: b.pool,
            up: b.up,
            sessions: census.get(b.id, b.generation),
            rates: rates.get(b.id, b.generation),
            counted: rates.delta(b.id, b.generation),
            check_latency_ms: health
                .get(&(svc.config.name.clone(), b.addr))
                .and_then(|h| h.last_latency)
                .map(|l| l.as_secs_f64() * 1e3),
        })
        .collect()
}

impl Measured {
    /// Its second, per second: rates rounded to whole counts (quotas and thresholds are whole
    /// numbers), and its active sessions.
    pub fn sample(&self) -> BackendSample {
        let whole = |rate: f64| rate.max(0.0).round() as u64;
        BackendSample {
            addr: self.addr,
            new_sessions: whole(self.rates.new_sessions_per_sec),
            active_sessions: self.sessions,
            packets: whole(self.rates.packets_per_sec),
            bytes: whole(self.rates.bytes_per_sec),
        }
    }

    /// What it served since the previous tick, exactly: what the accounts add up, so their
    /// totals equal the backend's own counters whatever the ticks' spacing.
    pub fn counted_sample(&self) -> BackendSample {
        BackendSample {
            addr: self.addr,
            new_sessions: self.counted.new_sessions,
            active_sessions: self.sessions,
            packets: self.counted.packets,
            bytes: self.counted.bytes,
        }
    }
}

/// The service's second for its rules: traffic and sessions over all its backends (both
/// pools: it is the service's load), `primary_load` from the per-second `samples`, and the
/// slowest latest health check among its primary backends (0 before any).
pub(super) fn service_sample(config: &ServiceConfig, measured: &[Measured], samples: &[BackendSample]) -> ServiceSample {
    let sum = |f: fn(&Measured) -> f64| measured.iter().map(f).sum::<f64>();
    ServiceSample {
        new_sessions_per_sec: sum(|m| m.rates.new_sessions_per_sec),
        packets_per_sec: sum(|m| m.rates.packets_per_sec),
        bytes_per_sec: sum(|m| m.rates.bytes_per_sec),
        active_sessions: sum(|m| m.sessions as f64),
        primary_load: primary_load(config, samples),
        health_check_latency_ms: measured
            .iter()
            .filter(|m| m.pool == Pool::Primary)
            .filter_map(|m| m.check_latency_ms)
            .fold(0.0, f64::max),
    }
}

/// What the policy is told of the overflow backends: health and sessions.
pub(super) fn observations(measured: &[Measured]) -> Vec<BackendObservation> {
    measured
        .iter()
        .filter(|m| m.pool == Pool::Overflow)
        .map(|m| BackendObservation { addr: m.addr, healthy: m.up, sessions: m.sessions })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// web: two primaries (max_sessions 100 on the first, max_new_sessions_per_sec 50 on the
    /// second) and one overflow backend.
    fn web() -> ServiceConfig {
        let text = "[[service]]\nname = \"web\"\nvip = \"10.0.0.1\"\nport = 80\nprotocol = \"tcp\"\n\
                    [service.shunt]\n\
                    [[service.backend]]\naddress = \"10.0.1.1\"\nmax_sessions = 100\n\
                    [[service.backend]]\naddress = \"10.0.1.2\"\nmax_new_sessions_per_sec = 50\n\
                    [[service.backend]]\naddress = \"10.0.1.3\"\npool = \"overflow\"\n";
        Config::parse(text).expect("valid").services.remove(0)
    }

    fn m(ip: &str, pool: Pool, up: bool, sessions: u64, new_per_sec: f64, latency: Option<f64>) -> Measured {
        Measured {
            addr: SocketAddr::new(ip.parse().expect("ip"), 80),
            pool,
            up,
            sessions,
            rates: Rates { new_sessions_per_sec: new_per_sec, packets_per_sec: new_per_sec * 10.0, bytes_per_sec: new_per_sec * 1000.0 },
            counted: Counters { packets: 21, bytes: 2100, new_sessions: 2 },
            check_latency_ms: latency,
        }
    }

    fn measured() -> Vec<Measured> {
        vec![
            m("10.0.1.1", Pool::Primary, true, 80, 10.4, Some(1.5)),
            m("10.0.1.2", Pool::Primary, true, 20, 40.6, Some(7.25)),
            m("10.0.1.3", Pool::Overflow, false, 3, 1.0, Some(900.0)),
        ]
    }

    #[test]
    fn a_backend_sample_is_its_rates_rounded_and_its_sessions() {
        let s = measured()[1].sample();
        assert_eq!((s.new_sessions, s.packets, s.bytes, s.active_sessions), (41, 406, 40600, 20));
        let mut odd = measured()[0];
        odd.rates.new_sessions_per_sec = -0.0;
        assert_eq!(odd.sample().new_sessions, 0);
    }

    #[test]
    fn the_accounts_get_exact_counts_not_rates() {
        let s = measured()[2].counted_sample();
        assert_eq!((s.new_sessions, s.packets, s.bytes, s.active_sessions), (2, 21, 2100, 3));
    }

    #[test]
    fn the_service_sample_sums_every_backend_and_reads_primary_load_from_quotas() {
        let measured = measured();
        let samples: Vec<BackendSample> = measured.iter().map(Measured::sample).collect();
        let s = service_sample(&web(), &measured, &samples);
        assert!((s.new_sessions_per_sec - 52.0).abs() < 1e-9, "{s:?}");
        assert!((s.packets_per_sec - 520.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.active_sessions, 103.0);
        // 10.0.1.1: 80 of 100 sessions; 10.0.1.2: 41 of 50 new sessions a second = 82%.
        assert!((s.primary_load - 82.0).abs() < 1e-9, "{s:?}");
        // The overflow backend's slow check does not count: primaries only.
        assert_eq!(s.health_check_latency_ms, 7.25);
    }

    #[test]
    fn only_overflow_backends_are_observed_with_their_health_and_sessions() {
        let o = observations(&measured());
        assert_eq!(o, [BackendObservation { addr: "10.0.1.3:80".parse().expect("addr"), healthy: false, sessions: 3 }]);
    }

    #[test]
    fn no_health_check_yet_reads_as_zero_latency() {
        let measured: Vec<Measured> = measured().into_iter().map(|x| Measured { check_latency_ms: None, ..x }).collect();
        assert_eq!(service_sample(&web(), &measured, &[]).health_check_latency_ms, 0.0);
    }
}
