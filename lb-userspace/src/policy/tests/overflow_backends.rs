use super::super::*;
use super::{OVERFLOW_A, OVERFLOW_B, addr};

const T0: UnixSecs = 5_000;

fn backends() -> (OverflowBackends, EventLog) {
    (OverflowBackends::new([addr(OVERFLOW_A), addr(OVERFLOW_B)], T0), EventLog::default())
}

fn seen(ip: &str, healthy: bool, sessions: u64) -> BackendObservation {
    BackendObservation { addr: addr(ip), healthy, sessions }
}

fn state(b: &OverflowBackends, ip: &str) -> OverflowBackendState {
    b.get(addr(ip)).expect("known backend").state
}

#[test]
fn a_closed_pool_gives_no_flows_to_healthy_backends() {
    let (mut b, mut log) = backends();
    b.update(T0, ShuntState::Closed, &[seen(OVERFLOW_A, true, 0), seen(OVERFLOW_B, true, 0)], &mut log);
    assert_eq!(b.taking_new_flows(), []);
    assert_eq!(state(&b, OVERFLOW_A), OverflowBackendState::Closed);
    assert!(b.get(addr(OVERFLOW_A)).is_some_and(|x| x.healthy), "health is still known for status");
}

#[test]
fn an_opening_pool_takes_each_backend_once_its_health_check_passes() {
    let (mut b, mut log) = backends();
    let first = b.update(T0, ShuntState::Opening, &[seen(OVERFLOW_A, true, 0), seen(OVERFLOW_B, false, 0)], &mut log);
    assert_eq!(first, [addr(OVERFLOW_A)]);
    assert_eq!(b.taking_new_flows(), [addr(OVERFLOW_A)]);
    assert_eq!(state(&b, OVERFLOW_B), OverflowBackendState::Starting);
    // B says it is ready: not enough without its health check.
    b.report(T0 + 1, addr(OVERFLOW_B), BackendReport::Ready, &mut log).expect("known");
    b.update(T0 + 1, ShuntState::Open, &[seen(OVERFLOW_B, false, 0)], &mut log);
    assert_eq!(state(&b, OVERFLOW_B), OverflowBackendState::ReadyAwaitingHealth);
    assert_eq!(b.taking_new_flows(), [addr(OVERFLOW_A)]);
    b.update(T0 + 2, ShuntState::Open, &[seen(OVERFLOW_B, true, 0)], &mut log);
    assert_eq!(b.taking_new_flows(), [addr(OVERFLOW_A), addr(OVERFLOW_B)]);
    assert_eq!(b.get(addr(OVERFLOW_B)).map(|x| x.since), Some(T0 + 2));
}

#[test]
fn a_backend_reporting_closing_gets_no_new_flows_and_drains() {
    let (mut b, mut log) = backends();
    b.update(T0, ShuntState::Open, &[seen(OVERFLOW_A, true, 30), seen(OVERFLOW_B, true, 0)], &mut log);
    b.report(T0 + 1, addr(OVERFLOW_A), BackendReport::Closing, &mut log).expect("known");
    b.update(T0 + 1, ShuntState::Open, &[seen(OVERFLOW_A, true, 30)], &mut log);
    assert_eq!(state(&b, OVERFLOW_A), OverflowBackendState::Closing);
    assert_eq!(b.taking_new_flows(), [addr(OVERFLOW_B)]);
    b.update(T0 + 9, ShuntState::Open, &[seen(OVERFLOW_A, true, 0)], &mut log);
    assert_eq!(state(&b, OVERFLOW_A), OverflowBackendState::Closed, "nothing left to drain");
    // Healthy all along, but out until it says ready again.
    b.report(T0 + 10, addr(OVERFLOW_A), BackendReport::Ready, &mut log).expect("known");
    let first = b.update(T0 + 10, ShuntState::Open, &[], &mut log);
    assert_eq!(state(&b, OVERFLOW_A), OverflowBackendState::Open);
    assert_eq!(first, [], "the same opening of the pool: not a new opening");
}

#[test]
fn a_closing_pool_drains_its_backends_and_forgets_their_reports() {
    let (mut b, mut log) = backends();
    b.report(T0, addr(OVERFLOW_B), BackendReport::Closing, &mut log).expect("known");
    b.update(T0, ShuntState::Open, &[seen(OVERFLOW_A, true, 10), seen(OVERFLOW_B, true, 0)], &mut log);
    b.update(T0 + 1, ShuntState::Closing, &[seen(OVERFLOW_A, true, 10)], &mut log);
    assert_eq!(state(&b, OVERFLOW_A), OverflowBackendState::Draining);
    assert_eq!(b.taking_new_flows(), []);
    assert_eq!(b.sessions(), 10);
    b.update(T0 + 2, ShuntState::Closed, &[seen(OVERFLOW_A, true, 0)], &mut log);
    assert_eq!(state(&b, OVERFLOW_A), OverflowBackendState::Closed);
    // The next opening starts from health alone; both count a new opening.
    let first = b.update(T0 + 3, ShuntState::Opening, &[seen(OVERFLOW_B, true, 0)], &mut log);
    assert_eq!(first, [addr(OVERFLOW_A), addr(OVERFLOW_B)]);
    let moves: Vec<_> = log
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Backend { backend, from, to } if backend == addr(OVERFLOW_A) => Some((e.at, from, to)),
            _ => None,
        })
        .collect();
    use OverflowBackendState::*;
    assert_eq!(moves, [(T0, Closed, Open), (T0 + 1, Open, Draining), (T0 + 2, Draining, Closed), (T0 + 3, Closed, Open)]);
}

#[test]
fn only_overflow_backends_report() {
    let (mut b, mut log) = backends();
    let primary = addr(super::PRIMARY_A);
    assert_eq!(b.report(T0, primary, BackendReport::Ready, &mut log), Err(PolicyError::NotAnOverflowBackend(primary)));
    assert!(log.is_empty());
}
