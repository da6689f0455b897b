//! A service's shunting saved by one lb and taken up by the next (`ServiceShunt::snapshot` /
//! `restore`), through JSON as the state file holds it.

use super::super::*;
use std::net::SocketAddr;

use super::{OVERFLOW_A, OVERFLOW_B, addr, new_sessions, service};
use crate::config::ServiceConfig;

const T0: UnixSecs = 3_000_000;

/// Rules: enter above 1500 for 3 s, exit below 800 for 5 s; min_open 10 s, drain 20 s; hooks.
const SHUNT: &str = "enter = [ { metric = \"new_sessions_per_sec\", above = 1500, for_secs = 3 } ]\n\
     exit = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 5 } ]\n\
     min_open_secs = 10\ndrain_timeout = 20\n\
     on_open = [\"/bin/sh\", \"-c\", \"echo open\"]\non_close = [\"/bin/sh\", \"-c\", \"echo close\"]";

fn svc() -> ServiceConfig {
    service(SHUNT, "")
}

fn both(healthy: bool, sessions: u64) -> [BackendObservation; 2] {
    [OVERFLOW_A, OVERFLOW_B].map(|ip| BackendObservation { addr: addr(ip), healthy, sessions })
}

/// What the next lb, started at `now` with `config`, makes of `before`'s saved state: a fresh
/// shunt (closed, as `Shunting::new` makes it) that takes up the snapshot read back from JSON.
fn restarted(before: &ServiceShunt, config: &ServiceConfig, now: UnixSecs) -> (ServiceShunt, Restored) {
    let text = serde_json::to_string(&before.snapshot()).expect("the snapshot serializes");
    let saved: ShuntSnapshot = serde_json::from_str(&text).expect("and reads back");
    assert_eq!(saved, before.snapshot(), "read back as written: {text}");
    let mut after = ServiceShunt::new(config, now).expect("shunted");
    let restored = after.restore(saved);
    (after, restored)
}

fn pool_events(s: &ServiceShunt, seen: u64) -> Vec<String> {
    s.events_since(seen).filter(|e| matches!(e.kind, EventKind::Pool { .. })).map(ToString::to_string).collect()
}

#[test]
fn an_open_pool_stays_open_across_a_restart_without_a_hook_or_a_flip() {
    let mut s = ServiceShunt::new(&svc(), T0).expect("shunted");
    s.manual(T0, ManualCommand::Open { reason: "campaign".into() });
    let out = s.tick(T0 + 1, &new_sessions(100.0), &both(true, 4));
    assert_eq!(out.hook.map(|h| h.hook), Some(Hook::OnOpen));
    s.tick(T0 + 2, &new_sessions(100.0), &both(true, 4));
    assert_eq!(s.state(), ShuntState::Open);
    let before = s.status();

    let (mut after, restored) = restarted(&s, &svc(), T0 + 30);
    assert_eq!(restored, Restored { rules_kept: true, dropped_backends: vec![] });
    let now = after.status();
    assert_eq!((now.state, now.since, &now.why), (ShuntState::Open, before.since, &before.why));
    assert_eq!(now.events, before.events, "the event log goes on");
    // Sessions are saved only for a draining backend: the new lb counts them at its first tick.
    let uncounted = |bs: &[super::super::OverflowBackend]| bs.iter().map(|b| super::super::OverflowBackend { sessions: 0, ..b.clone() }).collect::<Vec<_>>();
    assert_eq!(uncounted(&now.backends), uncounted(&before.backends));
    // The first ticks of the new lb: same pool table, no hook, no pool event.
    let seen = after.events_pushed();
    for t in 31..45 {
        let out = after.tick(T0 + t, &new_sessions(100.0), &both(true, 4));
        assert_eq!(out.hook, None, "at {t}");
        assert_eq!(out.taking_new_flows, [addr(OVERFLOW_A), addr(OVERFLOW_B)]);
        assert_eq!(out.first_openings, [], "no backend opens a second time");
    }
    assert_eq!(pool_events(&after, seen), Vec::<String>::new());
    // The operator's open is still in force: a release hands the pool to the rules, which
    // do not claim it, and it closes (min_open_secs long passed).
    after.manual(T0 + 45, ManualCommand::Release);
    after.tick(T0 + 45, &new_sessions(100.0), &both(true, 4));
    assert_eq!(after.state(), ShuntState::Closing);
}

#[test]
fn an_external_ttl_keeps_its_deadline_and_lapses_at_the_first_tick_if_it_passed_meanwhile() {
    let mut s = ServiceShunt::new(&svc(), T0).expect("shunted");
    s.external(T0, ExternalCommand::Open { reason: "partner".into(), ttl_secs: Some(60) }).expect("accepted");
    s.tick(T0, &new_sessions(0.0), &both(true, 2));
    assert_eq!(s.state(), ShuntState::Open);

    // Back before the deadline: open until T0 + 60, then it lapses as it would have.
    let (mut after, _) = restarted(&s, &svc(), T0 + 20);
    assert_eq!(after.status().why, Why::External { reason: "partner".into(), expires_at: Some(T0 + 60) });
    after.tick(T0 + 21, &new_sessions(0.0), &both(true, 2));
    after.tick(T0 + 59, &new_sessions(0.0), &both(true, 2));
    assert_eq!(after.state(), ShuntState::Open);
    let out = after.tick(T0 + 60, &new_sessions(0.0), &both(true, 2));
    assert_eq!(after.state(), ShuntState::Closing);
    assert_eq!(out.taking_new_flows, []);

    // Back after it: the first tick lets it lapse; the drain goes on from there.
    let (mut late, _) = restarted(&s, &svc(), T0 + 90);
    assert_eq!(late.state(), ShuntState::Open, "nothing decided before the first tick");
    let out = late.tick(T0 + 90, &new_sessions(0.0), &both(true, 2));
    assert_eq!(late.state(), ShuntState::Closing);
    assert_eq!(late.status().why, Why::ExternalExpired { reason: "partner".into() });
    assert_eq!(out.hook, None, "on_close waits for the drain");
}

#[test]
fn a_closing_pool_keeps_its_drain_deadline_and_a_backends_closing_report() {
    let mut s = ServiceShunt::new(&svc(), T0).expect("shunted");
    s.manual(T0, ManualCommand::Open { reason: String::new() });
    s.tick(T0, &new_sessions(0.0), &both(true, 3));
    s.backend_report(T0 + 1, addr(OVERFLOW_A), BackendReport::Closing).expect("an overflow backend");
    let out = s.tick(T0 + 1, &new_sessions(0.0), &both(true, 3));
    assert_eq!(out.taking_new_flows, [addr(OVERFLOW_B)]);

    // Still open after the restart: A keeps its report (and stays out), B takes flows.
    let (mut after, _) = restarted(&s, &svc(), T0 + 5);
    let a = after.backends().get(addr(OVERFLOW_A)).cloned().expect("A");
    assert_eq!((a.state, a.report, a.since), (OverflowBackendState::Closing, Some(BackendReport::Closing), T0 + 1));
    let out = after.tick(T0 + 6, &new_sessions(0.0), &both(true, 3));
    assert_eq!(out.taking_new_flows, [addr(OVERFLOW_B)], "the closing report holds across the restart");

    // Closed by the operator, restarted mid-drain: the drain_timeout counts from the close.
    after.manual(T0 + 7, ManualCommand::Close { reason: "over".into() });
    after.tick(T0 + 7, &new_sessions(0.0), &both(true, 3));
    assert_eq!(after.state(), ShuntState::Closing);
    let (mut again, _) = restarted(&after, &svc(), T0 + 15);
    // The new lb's first counts are not in yet (counted_since_closing false): still draining.
    let out = again.tick_counted(T0 + 15, &new_sessions(0.0), &both(true, 3), false);
    assert_eq!((again.state(), out.hook), (ShuntState::Closing, None));
    assert_eq!(again.backends().get(addr(OVERFLOW_B)).map(|b| b.state), Some(OverflowBackendState::Draining));
    let out = again.tick_counted(T0 + 27, &new_sessions(0.0), &both(true, 3), false);
    assert_eq!(again.state(), ShuntState::Closed, "drain_timeout 20 s from the close at T0 + 7");
    assert_eq!(out.hook.map(|h| h.hook), Some(Hook::OnClose), "on_close runs once, when the drain ends");
}

#[test]
fn a_changed_config_wins_as_at_a_reload() {
    // Opened by the rules, with the exit-rules close of an earlier cycle in the log (its why
    // must survive JSON too).
    let mut s = ServiceShunt::new(&svc(), T0).expect("shunted");
    let mut t = T0;
    let mut run = |s: &mut ServiceShunt, load: f64, secs: i64| {
        for _ in 0..secs {
            t += 1;
            s.tick(t, &new_sessions(load), &both(true, 0));
        }
        t
    };
    run(&mut s, 2000.0, 3);
    run(&mut s, 100.0, 12);
    assert_eq!(s.state(), ShuntState::Closed);
    assert!(s.events().any(|e| matches!(e.why, Why::ExitRules { .. })), "an exit-rules close in the log");
    let opened = run(&mut s, 2000.0, 4);
    assert_eq!(s.state(), ShuntState::Open);

    // Same rules: the rules' claim carries over, the pool stays open under low load until the
    // exit rules hold for their full 5 s in the new lb (min_open long passed).
    let (mut same, restored) = restarted(&s, &svc(), opened + 60);
    assert!(restored.rules_kept);
    for k in 1..=4 {
        same.tick(opened + 60 + k, &new_sessions(100.0), &both(true, 0));
        assert_eq!(same.state(), ShuntState::Open, "exit streak second {k}");
    }
    same.tick(opened + 65, &new_sessions(100.0), &both(true, 0));
    assert_eq!(same.state(), ShuntState::Closing);

    // Other rules, OVERFLOW_B gone, a new overflow backend: the claim is gone (the pool closes
    // at once, min_open_secs passed), B is forgotten, the new one follows the pool.
    let mut changed = service(&SHUNT.replace("above = 1500", "above = 3000"), "");
    changed.backends.retain(|b| SocketAddr::new(b.address, b.port) != addr(OVERFLOW_B));
    let mut third = changed.backends.last().expect("an overflow backend").clone();
    third.address = "10.200.3.23".parse().expect("ip");
    changed.backends.push(third);
    let (mut other, restored) = restarted(&s, &changed, opened + 60);
    assert_eq!(restored, Restored { rules_kept: false, dropped_backends: vec![addr(OVERFLOW_B)] });
    let addrs: Vec<SocketAddr> = other.backends().iter().map(|b| b.addr).collect();
    assert_eq!(addrs, [addr(OVERFLOW_A), addr("10.200.3.23")]);
    assert_eq!(other.state(), ShuntState::Open);
    other.tick(opened + 61, &new_sessions(2000.0), &[]);
    assert_eq!(other.state(), ShuntState::Closing, "2000/s does not hold the new 3000 rule");
}
