use super::super::*;
use super::{OVERFLOW_A, PRIMARY_A, PRIMARY_B, addr, service};

fn sample(ip: &str, new_sessions: u64, active_sessions: u64, bytes: u64) -> BackendSample {
    BackendSample { addr: addr(ip), new_sessions, active_sessions, packets: 0, bytes }
}

/// Every backend: 100 new sessions/s, 1000 sessions, 1 MB/s.
fn quotas() -> crate::config::ServiceConfig {
    service("", "max_new_sessions_per_sec = 100\nmax_sessions = 1000\nmax_bytes_per_sec = 1000000")
}

#[test]
fn a_backend_is_full_at_its_sessions_or_bytes_quota() {
    let svc = quotas();
    let samples = [
        sample(PRIMARY_A, 500, 1000, 10),      // at max_sessions
        sample(PRIMARY_B, 500, 999, 999_999),  // just under both (new sessions are the data plane's)
        sample(OVERFLOW_A, 0, 0, 1_000_000),   // at max_bytes_per_sec
    ];
    assert_eq!(full_backends(&svc, &samples), [addr(PRIMARY_A), addr(OVERFLOW_A)]);
    // No quota, never full.
    assert_eq!(full_backends(&service("", ""), &samples), []);
}

#[test]
fn primary_load_is_the_highest_share_of_a_quota_among_primary_backends() {
    let svc = quotas();
    let samples = [
        sample(PRIMARY_A, 50, 100, 0),         // 50% of its new sessions
        sample(PRIMARY_B, 10, 800, 200_000),   // 80% of its sessions
        sample(OVERFLOW_A, 100, 1000, 0),      // overflow backends do not count
    ];
    assert_eq!(primary_load(&svc, &samples), 80.0);
    assert_eq!(primary_load(&svc, &[]), 0.0);
    assert_eq!(primary_load(&service("", ""), &samples), 0.0, "no quotas, no load");
    let used = QuotaUse::of(&svc.backends[0].quota, &samples[0]);
    assert_eq!(used, QuotaUse { new_sessions: Some(50.0), sessions: Some(10.0), bytes: Some(0.0) });
    assert_eq!(used.highest(), Some(50.0));
    assert_eq!(QuotaUse::default().highest(), None);
}
