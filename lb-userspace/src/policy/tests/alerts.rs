use super::super::*;
use super::{PRIMARY_A, PRIMARY_B, addr};
use crate::config::{Config, ServiceConfig};

/// Backends A (quota 1000 sessions) and B (no quota); alerts above 500 new sessions/s and
/// above 80% of a quota.
fn svc() -> ServiceConfig {
    let text = format!(
        "[[service]]\nname = \"web\"\nvip = \"10.200.100.1\"\nport = 80\nprotocol = \"tcp\"\n\
         [service.load_alerts]\nnew_sessions_per_sec = 500\nquota_percent = 80\n\
         [[service.backend]]\naddress = \"{PRIMARY_A}\"\nmax_sessions = 1000\n\
         [[service.backend]]\naddress = \"{PRIMARY_B}\"\n"
    );
    Config::parse(&text).expect("valid").services.remove(0)
}

fn sample(ip: &str, new_sessions: u64, active_sessions: u64) -> BackendSample {
    BackendSample { addr: addr(ip), new_sessions, active_sessions, packets: 0, bytes: 0 }
}

#[test]
fn a_crossing_raises_one_alert_and_its_return_clears_it() {
    let (svc, mut alerts) = (svc(), LoadAlerts::default());
    assert_eq!(alerts.observe(1, &svc, &[sample(PRIMARY_B, 400, 0)]), []);
    let raised = alerts.observe(2, &svc, &[sample(PRIMARY_B, 600, 0)]);
    assert_eq!(raised, [LoadAlert {
        at: 2,
        backend: addr(PRIMARY_B),
        metric: AlertMetric::NewSessionsPerSec,
        value: 600.0,
        threshold: 500,
        raised: true
    }]);
    assert!(alerts.is_raised(addr(PRIMARY_B), AlertMetric::NewSessionsPerSec));
    for t in 3..10 {
        assert_eq!(alerts.observe(t, &svc, &[sample(PRIMARY_B, 700, 0)]), [], "still over: no new alert at {t}");
    }
    let cleared = alerts.observe(10, &svc, &[sample(PRIMARY_B, 500, 0)]);
    assert_eq!(cleared.len(), 1);
    assert!(!cleared[0].raised && cleared[0].value == 500.0);
    assert!(!alerts.is_raised(addr(PRIMARY_B), AlertMetric::NewSessionsPerSec));
}

#[test]
fn quota_percent_applies_to_backends_with_a_quota() {
    let (svc, mut alerts) = (svc(), LoadAlerts::default());
    let got = alerts.observe(1, &svc, &[sample(PRIMARY_A, 0, 850), sample(PRIMARY_B, 0, 1_000_000)]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].backend, got[0].metric, got[0].value), (addr(PRIMARY_A), AlertMetric::QuotaPercent, 85.0));
}

#[test]
fn no_thresholds_no_alerts() {
    let mut svc = svc();
    svc.load_alerts = None;
    assert_eq!(LoadAlerts::default().observe(1, &svc, &[sample(PRIMARY_A, 10_000, 10_000)]), []);
}
