//! How manual, external, window and rule triggers combine (the rules: policy/triggers.rs).

use super::super::*;
use super::{new_sessions, service};
use crate::config::ServiceConfig;

const T0: UnixSecs = 1_798_135_200; // 2026-12-24T18:00:00Z

/// A window from T0 + 100 to T0 + 200; rules enter above 1500 for 1 s, exit below 800 for 1 s.
fn svc() -> ServiceConfig {
    service(
        "enter = [ { metric = \"new_sessions_per_sec\", above = 1500, for_secs = 1 } ]\n\
         exit = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 1 } ]\n\
         min_open_secs = 0\n\
         windows = [ { start = \"2026-12-24T18:01:40Z\", end = \"2026-12-24T18:03:20Z\" } ]",
        "",
    )
}

fn demand(t: &mut Triggers, rules: &mut RuleEvaluator, now: UnixSecs, load: f64) -> Demand {
    if let Some(RuleEdge::Exit(held)) = rules.observe(&new_sessions(load)) {
        t.rules_withdrawn(Why::ExitRules { rules: held });
    }
    t.refresh(now, &svc().shunt.expect("shunt").windows);
    t.demand(rules.claim())
}

fn is_open(d: &Demand) -> bool {
    matches!(d, Demand::Open(_))
}

#[test]
fn a_manual_close_wins_over_every_automatic_trigger_until_released() {
    let (mut t, mut rules) = (Triggers::default(), RuleEvaluator::new(&svc().shunt.expect("shunt")));
    t.external(T0, ExternalCommand::Open { reason: "campaign".into(), ttl_secs: None });
    t.manual(ManualCommand::Close { reason: "provider outage".into() });
    // External open, window in progress, rules firing: still closed, and at once.
    let d = demand(&mut t, &mut rules, T0 + 150, 5000.0);
    assert_eq!(d, Demand::ForceClose(Why::Manual { reason: "provider outage".into() }));
    t.manual(ManualCommand::Release);
    assert_eq!(demand(&mut t, &mut rules, T0 + 151, 5000.0), Demand::Open(Why::External { reason: "campaign".into(), expires_at: None }));
}

#[test]
fn a_manual_open_holds_against_exit_rules_and_window_ends() {
    let (mut t, mut rules) = (Triggers::default(), RuleEvaluator::new(&svc().shunt.expect("shunt")));
    t.manual(ManualCommand::Open { reason: "test".into() });
    for now in [T0, T0 + 150, T0 + 250] {
        assert_eq!(demand(&mut t, &mut rules, now, 10.0), Demand::Open(Why::Manual { reason: "test".into() }));
    }
    // Released with nothing else claiming: an automatic close (it waits for min_open_secs).
    t.manual(ManualCommand::Release);
    assert_eq!(demand(&mut t, &mut rules, T0 + 251, 10.0), Demand::Close(Why::ManualReleased));
}

#[test]
fn an_external_open_lapses_at_its_ttl_unless_renewed() {
    let (mut t, mut rules) = (Triggers::default(), RuleEvaluator::new(&svc().shunt.expect("shunt")));
    t.external(T0, ExternalCommand::Open { reason: "partner".into(), ttl_secs: Some(30) });
    assert!(is_open(&demand(&mut t, &mut rules, T0 + 29, 10.0)));
    // Renewed at +20 for another 30 s: it now lapses at +50, not +30.
    t.external(T0 + 20, ExternalCommand::Open { reason: "partner".into(), ttl_secs: Some(30) });
    assert!(is_open(&demand(&mut t, &mut rules, T0 + 49, 10.0)));
    let events = t.refresh(T0 + 50, &[]);
    assert_eq!(events, [(EventKind::TriggerWithdrawn, Why::ExternalExpired { reason: "partner".into() })]);
    assert_eq!(t.demand(None), Demand::Close(Why::ExternalExpired { reason: "partner".into() }));
}

#[test]
fn an_external_close_withdraws_only_the_external_claim() {
    let (mut t, mut rules) = (Triggers::default(), RuleEvaluator::new(&svc().shunt.expect("shunt")));
    t.external(T0 + 90, ExternalCommand::Open { reason: "campaign".into(), ttl_secs: None });
    t.external(T0 + 120, ExternalCommand::Close { reason: "campaign over".into() });
    // The window is in progress: still open, now for the window.
    let d = demand(&mut t, &mut rules, T0 + 120, 10.0);
    assert_eq!(d, Demand::Open(Why::Window { start: T0 + 100, end: T0 + 200 }));
}

#[test]
fn a_window_claims_the_pool_from_its_start_to_its_end() {
    let (mut t, mut rules) = (Triggers::default(), RuleEvaluator::new(&svc().shunt.expect("shunt")));
    assert!(!is_open(&demand(&mut t, &mut rules, T0 + 99, 10.0)));
    assert!(is_open(&demand(&mut t, &mut rules, T0 + 100, 10.0)));
    assert!(is_open(&demand(&mut t, &mut rules, T0 + 199, 10.0)));
    assert_eq!(demand(&mut t, &mut rules, T0 + 200, 10.0), Demand::Close(Why::WindowEnded { end: T0 + 200 }));
}

#[test]
fn rules_hold_the_pool_until_their_exit_and_the_close_names_it() {
    let (mut t, mut rules) = (Triggers::default(), RuleEvaluator::new(&svc().shunt.expect("shunt")));
    let d = demand(&mut t, &mut rules, T0, 2000.0);
    assert!(matches!(d, Demand::Open(Why::Rule(held)) if held.value == 2000.0), "{d:?}");
    assert!(is_open(&demand(&mut t, &mut rules, T0 + 1, 1000.0)), "between the thresholds: no change");
    assert!(matches!(demand(&mut t, &mut rules, T0 + 2, 500.0), Demand::Close(Why::ExitRules { .. })));
}

#[test]
fn when_several_triggers_claim_at_once_the_why_is_the_first_in_order() {
    let (mut t, mut rules) = (Triggers::default(), RuleEvaluator::new(&svc().shunt.expect("shunt")));
    t.external(T0 + 150, ExternalCommand::Open { reason: "campaign".into(), ttl_secs: Some(600) });
    let d = demand(&mut t, &mut rules, T0 + 150, 5000.0);
    assert_eq!(d, Demand::Open(Why::External { reason: "campaign".into(), expires_at: Some(T0 + 750) }));
}
