//! One service's shunting end to end: samples and observations in, decisions out.

use super::super::*;
use std::net::SocketAddr;

use super::{OVERFLOW_A, OVERFLOW_B, addr, new_sessions, service};

const T0: UnixSecs = 2_000_000;

/// Rules: enter above 1500 for 3 s, exit below 800 for 5 s; min_open 10 s, drain 20 s;
/// both hooks.
fn shunt() -> ServiceShunt {
    let svc = service(
        "enter = [ { metric = \"new_sessions_per_sec\", above = 1500, for_secs = 3 } ]\n\
         exit = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 5 } ]\n\
         min_open_secs = 10\ndrain_timeout = 20\n\
         on_open = [\"/bin/sh\", \"-c\", \"echo open\"]\non_close = [\"/bin/sh\", \"-c\", \"echo close\"]",
        "",
    );
    ServiceShunt::new(&svc, T0).expect("the service has a shunt block")
}

fn both(healthy: bool, sessions: u64) -> [BackendObservation; 2] {
    [OVERFLOW_A, OVERFLOW_B].map(|ip| BackendObservation { addr: addr(ip), healthy, sessions })
}

#[test]
fn load_opens_the_pool_its_backends_take_flows_and_it_closes_by_draining() {
    let mut s = shunt();
    let mut hooks = Vec::new();
    let mut t = T0;
    let mut step = |s: &mut ServiceShunt, load: f64, healthy: bool, sessions: u64| {
        t += 1;
        let out = s.tick(t, &new_sessions(load), &both(healthy, sessions));
        if let Some(h) = out.hook.clone() {
            hooks.push((t, h.hook, h.argv.unwrap_or_default().join(" ")));
        }
        (t, out)
    };
    for _ in 0..2 {
        step(&mut s, 2000.0, false, 0);
    }
    assert_eq!(s.state(), ShuntState::Closed);
    let (opened, out) = step(&mut s, 2000.0, false, 0);
    assert_eq!(s.state(), ShuntState::Opening, "third second above 1500");
    assert_eq!(out.taking_new_flows, [], "no backend healthy yet");
    let (_, out) = step(&mut s, 2000.0, true, 0);
    assert_eq!(s.state(), ShuntState::Open);
    assert_eq!(out.taking_new_flows, [addr(OVERFLOW_A), addr(OVERFLOW_B)]);
    assert_eq!(out.first_openings, [addr(OVERFLOW_A), addr(OVERFLOW_B)]);
    let status = s.status();
    assert!(matches!(&status.why, Why::Rule(held) if held.value == 2000.0), "{:?}", status.why);
    assert_eq!(status.since, opened + 1);
    // Load falls at once: exit holds after 5 s, but min_open keeps it open 10 s from opening.
    let mut closing_at = None;
    for _ in 0..12 {
        let (t, out) = step(&mut s, 100.0, true, 40);
        if s.state() == ShuntState::Closing && closing_at.is_none() {
            closing_at = Some(t);
            assert_eq!(out.taking_new_flows, [], "a closing pool takes no new flows");
        }
    }
    assert_eq!(closing_at, Some(opened + 10));
    assert!(matches!(s.status().why, Why::ExitRules { .. }));
    // Sessions end: closed, on_close runs.
    let (closed, _) = step(&mut s, 100.0, true, 0);
    assert_eq!(s.state(), ShuntState::Closed);
    assert_eq!(s.status().why, Why::Drained);
    // Healthy and idle, the closed pool gives its backends nothing.
    assert_eq!(step(&mut s, 100.0, true, 0).1.taking_new_flows, []);
    assert_eq!(
        hooks,
        [(opened, Hook::OnOpen, "/bin/sh -c echo open".to_string()), (closed, Hook::OnClose, "/bin/sh -c echo close".into())]
    );
}

#[test]
fn an_external_open_with_a_ttl_closes_by_itself() {
    let mut s = shunt();
    s.external(T0, ExternalCommand::Open { reason: "partner campaign".into(), ttl_secs: Some(30) }).expect("accepted");
    s.tick(T0, &new_sessions(0.0), &both(true, 0));
    assert_eq!(s.state(), ShuntState::Open);
    assert_eq!(s.status().why, Why::External { reason: "partner campaign".into(), expires_at: Some(T0 + 30) });
    s.tick(T0 + 29, &new_sessions(0.0), &both(true, 5));
    assert_eq!(s.state(), ShuntState::Open);
    s.tick(T0 + 30, &new_sessions(0.0), &both(true, 5));
    assert_eq!(s.state(), ShuntState::Closing);
    assert_eq!(s.status().why, Why::ExternalExpired { reason: "partner campaign".into() });
    assert_eq!(s.external(T0, ExternalCommand::Open { reason: String::new(), ttl_secs: Some(0) }), Err(PolicyError::ZeroTtl));
}

#[test]
fn the_status_serializes_and_keeps_the_last_50_events() {
    let mut s = shunt();
    for t in 0..40 {
        s.manual(T0 + t, ManualCommand::Open { reason: format!("try {t}") });
        s.manual(T0 + t, ManualCommand::Release);
    }
    let status = s.status();
    assert_eq!(status.events.len(), EVENTS_KEPT);
    assert_eq!(status.events.last().map(|e| e.at), Some(T0 + 39), "the newest kept");
    assert_eq!(status.events.first().map(|e| e.at), Some(T0 + 15), "the oldest dropped");
    let json = serde_json::to_value(&status).expect("serializable");
    assert_eq!(json["state"], "closed");
    assert_eq!(json["events"][0]["event"], "command");
    assert_eq!(json["events"][0]["why"]["trigger"], "manual");
    assert_eq!(status.events[0].to_string(), format!("{}: manual open (manual: try 15)", T0 + 15));
    assert_eq!(json["backends"][0]["state"], "closed");
}

#[test]
fn a_service_without_a_shunt_block_has_no_shunting() {
    let text = "[[service]]\nname = \"dns\"\nvip = \"10.0.0.53\"\nport = 53\nprotocol = \"udp\"\n[[service.backend]]\naddress = \"10.0.2.21\"\n";
    let config = crate::config::Config::parse(text).expect("valid");
    assert!(ServiceShunt::new(&config.services[0], T0).is_none());
}

#[test]
fn new_events_are_told_apart_even_once_the_log_is_full() {
    let mut s = shunt();
    let seen = s.events_pushed();
    s.manual(T0, ManualCommand::Open { reason: "a".into() });
    assert_eq!(s.events_since(seen).count(), 1);
    for t in 0..60 {
        s.manual(T0 + t, ManualCommand::Release);
    }
    let seen = s.events_pushed();
    assert_eq!(seen, 61);
    s.manual(T0 + 61, ManualCommand::Open { reason: "b".into() });
    s.manual(T0 + 61, ManualCommand::Close { reason: "c".into() });
    let new: Vec<String> = s.events_since(seen).map(ToString::to_string).collect();
    assert_eq!(new, [format!("{}: manual open (manual: b)", T0 + 61), format!("{}: manual close (manual: c)", T0 + 61)]);
    // More new events than the log keeps: the kept ones.
    assert_eq!(s.events_since(0).count(), EVENTS_KEPT);
}

#[test]
fn a_reload_keeps_the_open_pool_its_commands_and_streaks() {
    let mut s = shunt();
    s.manual(T0, ManualCommand::Open { reason: "surge".into() });
    s.tick(T0 + 1, &new_sessions(2000.0), &both(true, 3));
    s.tick(T0 + 2, &new_sessions(2000.0), &both(true, 3));
    assert_eq!(s.state(), ShuntState::Open);
    // Same rules, a third overflow backend, OVERFLOW_B gone, other timeouts.
    let svc = service(
        "enter = [ { metric = \"new_sessions_per_sec\", above = 1500, for_secs = 3 } ]\n\
         exit = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 5 } ]\n\
         min_open_secs = 0\ndrain_timeout = 5",
        "",
    );
    let mut svc = svc;
    svc.backends.retain(|b| SocketAddr::new(b.address, b.port) != addr(OVERFLOW_B));
    let mut third = svc.backends.last().expect("an overflow backend").clone();
    third.address = "10.200.3.23".parse().expect("ip");
    svc.backends.push(third);
    assert_eq!(s.reconfigure(&svc, T0 + 3), Some(Reconfigured { rules_kept: true }));
    assert_eq!(s.state(), ShuntState::Open, "the pool stays open");
    let addrs: Vec<SocketAddr> = s.backends().iter().map(|b| b.addr).collect();
    assert_eq!(addrs, [addr(OVERFLOW_A), addr("10.200.3.23")]);
    assert_eq!(s.backends().get(addr(OVERFLOW_A)).map(|b| b.state), Some(OverflowBackendState::Open));
    // The third streak second above 1500 completes the enter rule started before the reload.
    let seen = s.events_pushed();
    let out = s.tick(T0 + 3, &new_sessions(2000.0), &[]);
    assert!(s.events_since(seen).any(|e| e.kind == EventKind::TriggerFired), "the streak carried over");
    assert_eq!(out.taking_new_flows, [addr(OVERFLOW_A)], "the new backend's health is not known yet");
    // The manual open still holds: release it, the rules still claim the pool.
    s.manual(T0 + 4, ManualCommand::Release);
    s.tick(T0 + 4, &new_sessions(2000.0), &[]);
    assert_eq!(s.state(), ShuntState::Open);
}

#[test]
fn changed_rules_start_their_streaks_over_and_no_shunt_block_is_refused() {
    let mut s = shunt();
    s.tick(T0 + 1, &new_sessions(2000.0), &both(true, 0));
    s.tick(T0 + 2, &new_sessions(2000.0), &both(true, 0));
    let svc = service(
        "enter = [ { metric = \"new_sessions_per_sec\", above = 1000, for_secs = 3 } ]\n\
         exit = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 5 } ]",
        "",
    );
    assert_eq!(s.reconfigure(&svc, T0 + 3), Some(Reconfigured { rules_kept: false }));
    s.tick(T0 + 3, &new_sessions(2000.0), &both(true, 0));
    assert_eq!(s.state(), ShuntState::Closed, "one second of the new rule's streak");
    s.tick(T0 + 4, &new_sessions(2000.0), &both(true, 0));
    s.tick(T0 + 5, &new_sessions(2000.0), &both(true, 0));
    assert_eq!(s.state(), ShuntState::Open);
    let mut plain = svc.clone();
    plain.shunt = None;
    assert_eq!(s.reconfigure(&plain, T0 + 6), None);
    assert_eq!(s.state(), ShuntState::Open, "left as it was");
}
