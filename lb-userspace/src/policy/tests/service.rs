//! One service's shunting end to end: samples and observations in, decisions out.

use super::super::*;
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
    assert!(matches!(s.status().why, Why::ExitRules(_)));
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
