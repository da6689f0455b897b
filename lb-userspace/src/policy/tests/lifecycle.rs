use std::time::Duration;

use super::super::*;
use super::{OVERFLOW_A, addr};

const T0: UnixSecs = 1_000_000;

/// min_open_secs 60, drain_timeout 300.
fn lifecycle() -> (Lifecycle, EventLog) {
    (Lifecycle::new(T0, Duration::from_secs(60), Duration::from_secs(300)), EventLog::default())
}

fn open_demand() -> Demand {
    Demand::Open(Why::Manual { reason: "surge".into() })
}

fn close_demand() -> Demand {
    Demand::Close(Why::NoTrigger)
}

fn pool_moves(log: &EventLog) -> Vec<(UnixSecs, ShuntState, ShuntState)> {
    log.iter()
        .filter_map(|e| match e.kind {
            EventKind::Pool { from, to } => Some((e.at, from, to)),
            _ => None,
        })
        .collect()
}

#[test]
fn opens_runs_on_open_and_is_open_once_a_backend_takes_flows() {
    let (mut pool, mut log) = lifecycle();
    assert_eq!(pool.follow(T0, &close_demand(), 0, &mut log), None);
    assert_eq!(pool.state(), ShuntState::Closed);
    assert_eq!(pool.follow(T0 + 1, &open_demand(), 0, &mut log), Some(Hook::OnOpen));
    assert_eq!((pool.state(), pool.since()), (ShuntState::Opening, T0 + 1));
    // Still opening while no overflow backend is up; demanding open again does nothing.
    assert_eq!(pool.follow(T0 + 2, &open_demand(), 0, &mut log), None);
    pool.backend_taking_flows(T0 + 5, addr(OVERFLOW_A), &mut log);
    assert_eq!((pool.state(), pool.since()), (ShuntState::Open, T0 + 5));
    assert_eq!(pool.why(), &Why::Manual { reason: "surge".into() }, "open keeps the trigger that opened it");
    assert_eq!(
        pool_moves(&log),
        [(T0 + 1, ShuntState::Closed, ShuntState::Opening), (T0 + 5, ShuntState::Opening, ShuntState::Open)]
    );
}

#[test]
fn no_automatic_close_before_min_open_secs() {
    let (mut pool, mut log) = lifecycle();
    pool.follow(T0, &open_demand(), 0, &mut log);
    pool.backend_taking_flows(T0 + 1, addr(OVERFLOW_A), &mut log);
    for t in T0 + 2..T0 + 60 {
        assert_eq!(pool.follow(t, &close_demand(), 10, &mut log), None);
        assert_eq!(pool.state(), ShuntState::Open, "closed at {t}, before min_open_secs");
    }
    let deferrals: Vec<_> = log.iter().filter(|e| e.kind == EventKind::CloseDeferred).collect();
    assert_eq!(deferrals.len(), 1, "one deferral event, not one a second");
    assert_eq!(deferrals[0].why, Why::MinOpen { until: T0 + 60 });
    pool.follow(T0 + 60, &close_demand(), 10, &mut log);
    assert_eq!((pool.state(), pool.since()), (ShuntState::Closing, T0 + 60));
}

#[test]
fn an_operators_close_does_not_wait_for_min_open() {
    let (mut pool, mut log) = lifecycle();
    pool.follow(T0, &open_demand(), 0, &mut log);
    let why = Why::Manual { reason: "provider outage".into() };
    pool.follow(T0 + 3, &Demand::ForceClose(why.clone()), 5, &mut log);
    assert_eq!(pool.state(), ShuntState::Closing);
    assert_eq!(pool.why(), &why);
}

#[test]
fn closing_drains_then_closes_and_runs_on_close() {
    let (mut pool, mut log) = lifecycle();
    pool.follow(T0, &open_demand(), 0, &mut log);
    pool.follow(T0 + 60, &close_demand(), 40, &mut log);
    assert_eq!(pool.state(), ShuntState::Closing);
    // A count of 0 in the second the closing began may predate it: not trusted.
    assert_eq!(pool.follow(T0 + 60, &close_demand(), 0, &mut log), None);
    assert_eq!(pool.follow(T0 + 61, &close_demand(), 12, &mut log), None);
    assert_eq!(pool.follow(T0 + 62, &close_demand(), 0, &mut log), Some(Hook::OnClose));
    assert_eq!((pool.state(), pool.why()), (ShuntState::Closed, &Why::Drained));
}

#[test]
fn closing_ends_at_the_drain_timeout_with_sessions_left() {
    let (mut pool, mut log) = lifecycle();
    pool.follow(T0, &open_demand(), 0, &mut log);
    pool.follow(T0 + 100, &close_demand(), 40, &mut log);
    assert_eq!(pool.follow(T0 + 399, &close_demand(), 7, &mut log), None);
    assert_eq!(pool.follow(T0 + 400, &close_demand(), 7, &mut log), Some(Hook::OnClose));
    assert_eq!(pool.why(), &Why::DrainTimeout { sessions_left: 7 });
}

#[test]
fn a_trigger_during_closing_reopens_without_a_hook_and_restarts_min_open() {
    let (mut pool, mut log) = lifecycle();
    pool.follow(T0, &open_demand(), 0, &mut log);
    pool.follow(T0 + 60, &close_demand(), 40, &mut log);
    assert_eq!(pool.follow(T0 + 70, &open_demand(), 30, &mut log), None, "its servers were never told to stop");
    assert_eq!(pool.state(), ShuntState::Opening);
    pool.follow(T0 + 80, &close_demand(), 30, &mut log);
    assert_eq!(pool.state(), ShuntState::Opening, "min_open_secs counts from the reopening");
    pool.follow(T0 + 130, &close_demand(), 30, &mut log);
    assert_eq!(pool.state(), ShuntState::Closing);
}

#[test]
fn a_count_from_before_the_close_never_drains_the_pool() {
    let mut log = EventLog::default();
    let mut pool = Lifecycle::new(T0, std::time::Duration::ZERO, std::time::Duration::from_secs(30));
    pool.follow(T0, &open_demand(), 0, &mut log);
    pool.follow(T0 + 1, &close_demand(), 0, &mut log);
    assert_eq!(pool.state(), ShuntState::Closing);
    assert_eq!(pool.follow_counted(T0 + 2, &close_demand(), 0, false, &mut log), None, "0 counted before the close");
    assert_eq!(pool.state(), ShuntState::Closing);
    assert_eq!(pool.follow_counted(T0 + 3, &close_demand(), 0, true, &mut log), Some(Hook::OnClose));
    assert_eq!(pool.state(), ShuntState::Closed);
}
