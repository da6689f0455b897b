//! Planning without a kernel: which services change, which ids new backends get, what is
//! refused.

use std::{net::SocketAddr, time::{Duration, Instant}};

use super::*;
use crate::balancer::Drain;

/// (name, vip, [(backend address, weight)]).
type ServiceSpec<'a> = (&'a str, &'a str, &'a [(&'a str, u32)]);

fn config(services: &[ServiceSpec]) -> Config {
    let mut text = String::new();
    for (name, vip, backends) in services {
        text += &format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\ntable_size = 97\n"
        );
        for (addr, weight) in *backends {
            text += &format!("[[service.backend]]\naddress = \"{addr}\"\nport = 8080\nweight = {weight}\n");
        }
    }
    Config::parse(&text).expect("valid test config")
}

/// The running state `config` gives when applied to nothing (as at start).
fn start(config: &Config, initial: InitialHealth) -> (Vec<ServiceState>, Ids) {
    let p = plan(&[], config, &Ids::default(), initial).expect("plan from nothing");
    (p.added, p.ids)
}

fn addr(s: &str) -> SocketAddr {
    format!("{s}:8080").parse().unwrap()
}

fn ids_of(svc: &ServiceState) -> Vec<(SocketAddr, u32, u32)> {
    svc.backends.iter().map(|b| (b.addr, b.id, b.generation)).collect()
}

const A: &str = "10.200.3.11";
const B: &str = "10.200.3.12";
const C: &str = "10.200.3.13";

#[test]
fn start_assigns_ids_in_file_order() {
    let c = config(&[("web", "10.200.100.1", &[(A, 1), (B, 1)]), ("api", "10.200.100.2", &[(C, 1)])]);
    let (running, _) = start(&c, InitialHealth::Down);
    assert_eq!(running.iter().map(|s| s.info.id).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(ids_of(&running[0]), [(addr(A), 0, 1), (addr(B), 1, 1)]);
    assert_eq!(ids_of(&running[1]), [(addr(C), 2, 1)]);
    assert!(running.iter().flat_map(|s| &s.backends).all(|b| !b.up && b.drain.is_none()));
}

#[test]
fn an_unchanged_config_plans_nothing() {
    let c = config(&[("web", "10.200.100.1", &[(A, 1), (B, 1)])]);
    let (running, ids) = start(&c, InitialHealth::Up);
    let p = plan(&running, &c, &ids, InitialHealth::Up).unwrap();
    assert!(p.removed.is_empty() && p.changed.is_empty() && p.added.is_empty(), "{p:?}");
    assert!(p.summary.is_empty());
    assert_eq!(p.ids.backends_available(), ids.backends_available());
}

#[test]
fn an_added_backend_gets_the_next_free_id_and_the_others_keep_theirs() {
    let (running, ids) = start(&config(&[("web", "10.200.100.1", &[(A, 1), (B, 1)])]), InitialHealth::Up);
    let p = plan(&running, &config(&[("web", "10.200.100.1", &[(A, 1), (B, 1), (C, 2)])]), &ids, InitialHealth::Down).unwrap();
    assert!(p.removed.is_empty() && p.added.is_empty());
    let next = &p.changed[0];
    assert_eq!(ids_of(next), [(addr(A), 0, 1), (addr(B), 1, 1), (addr(C), 2, 1)]);
    // Kept backends keep their health; the new one waits for its check.
    assert_eq!(next.backends.iter().map(|b| b.up).collect::<Vec<_>>(), [true, true, false]);
    assert_eq!(next.info, running[0].info);
    assert_eq!(p.summary, ["service web: backend 10.200.3.13:8080 added (weight 2), in service once its health check passes"]);
}

#[test]
fn a_removed_backend_frees_its_id_for_reuse_last_with_a_new_generation() {
    let (running, ids) = start(&config(&[("web", "10.200.100.1", &[(A, 1), (B, 1)])]), InitialHealth::Up);
    let p = plan(&running, &config(&[("web", "10.200.100.1", &[(A, 1)])]), &ids, InitialHealth::Up).unwrap();
    assert_eq!(ids_of(&p.changed[0]), [(addr(A), 0, 1)]);
    assert_eq!(p.summary, ["service web: backend 10.200.3.12:8080 removed"]);
    assert_eq!(p.ids.backends_available(), ids.backends_available() + 1);
    // Id 1 is the last one handed out again, then with generation 2.
    let mut later = p.ids.clone();
    let mut last = None;
    while let Some(x) = later.take_backend() {
        last = Some(x);
    }
    assert_eq!(last, Some((1, 2)));
}

#[test]
fn a_weight_change_keeps_ids_and_health() {
    let (running, ids) = start(&config(&[("web", "10.200.100.1", &[(A, 1), (B, 1)])]), InitialHealth::Up);
    let p = plan(&running, &config(&[("web", "10.200.100.1", &[(A, 1), (B, 5)])]), &ids, InitialHealth::Down).unwrap();
    let next = &p.changed[0];
    assert_eq!(ids_of(next), ids_of(&running[0]));
    assert_eq!(next.backends.iter().map(|b| (b.weight, b.up)).collect::<Vec<_>>(), [(1, true), (5, true)]);
    assert_eq!(p.summary, ["service web: backend 10.200.3.12:8080 weight 1 -> 5"]);
}

#[test]
fn only_changed_services_are_touched() {
    let before = config(&[("web", "10.200.100.1", &[(A, 1)]), ("api", "10.200.100.2", &[(B, 1)])]);
    let (running, ids) = start(&before, InitialHealth::Up);
    let after = config(&[("web", "10.200.100.1", &[(A, 1)]), ("api", "10.200.100.2", &[(B, 3)])]);
    let p = plan(&running, &after, &ids, InitialHealth::Up).unwrap();
    assert_eq!(p.changed.iter().map(|s| s.config.name.as_str()).collect::<Vec<_>>(), ["api"]);
}

#[test]
fn services_come_and_go_and_a_moved_vip_is_a_replacement() {
    let before = config(&[("web", "10.200.100.1", &[(A, 1)]), ("api", "10.200.100.2", &[(B, 1)])]);
    let (running, ids) = start(&before, InitialHealth::Up);
    let after = config(&[("web", "10.200.100.9", &[(A, 1)]), ("new", "10.200.100.3", &[(C, 1)])]);
    let p = plan(&running, &after, &ids, InitialHealth::Up).unwrap();
    let names = |v: &[ServiceState]| v.iter().map(|s| s.config.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&p.removed), ["web", "api"]);
    assert!(p.changed.is_empty());
    assert_eq!(names(&p.added), ["web", "new"]);
    // Fresh service ids: the two freed ones go to the back of the queue.
    assert_eq!(p.added.iter().map(|s| s.info.id).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(p.order, ["web", "new"]);
    assert_eq!(
        p.summary,
        [
            "service web: vip, port or protocol changed: replaced (its sessions end)",
            "service api: removed",
            "service web: added with 1 backend(s)",
            "service new: added with 1 backend(s)",
        ]
    );
}

#[test]
fn settings_changes_are_described() {
    let (running, ids) = start(&config(&[("web", "10.200.100.1", &[(A, 1)])]), InitialHealth::Up);
    let mut after = config(&[("web", "10.200.100.1", &[(A, 1)])]);
    after.services[0].hash_key = crate::config::HashKey::SourceIp;
    after.services[0].health.rise = 5;
    let p = plan(&running, &after, &ids, InitialHealth::Up).unwrap();
    assert_eq!(
        p.summary,
        ["service web: hash_key five-tuple -> source-ip", "service web: health check settings changed (its checks restart)"]
    );
}

#[test]
fn keeping_only_draining_backends_is_refused() {
    let (mut running, ids) = start(&config(&[("web", "10.200.100.1", &[(A, 1), (B, 1)])]), InitialHealth::Up);
    running[0].backends[0].drain = Some(Drain { since: Instant::now(), timeout: Duration::from_secs(60) });
    let err = plan(&running, &config(&[("web", "10.200.100.1", &[(A, 1)])]), &ids, InitialHealth::Up).unwrap_err();
    assert!(err.to_string().contains("no backend for new flows"), "{err}");
    // The drain state survives an unrelated change.
    let p = plan(&running, &config(&[("web", "10.200.100.1", &[(A, 1), (B, 2)])]), &ids, InitialHealth::Up).unwrap();
    assert!(p.changed[0].backends[0].drain.is_some());
}

#[test]
fn running_out_of_backend_ids_is_refused() {
    let (running, mut ids) = start(&config(&[("web", "10.200.100.1", &[(A, 1)])]), InitialHealth::Up);
    while ids.backends_available() > 1 {
        ids.take_backend();
    }
    let two_more = config(&[("web", "10.200.100.1", &[(A, 1), (B, 1), (C, 1)])]);
    let err = plan(&running, &two_more, &ids, InitialHealth::Up).unwrap_err();
    assert!(err.to_string().contains("no free backend id"), "{err}");
    // Swapping a backend for another still fits: the new one needs the last free id.
    let swap = config(&[("web", "10.200.100.1", &[(B, 1)])]);
    assert!(plan(&running, &swap, &ids, InitialHealth::Up).is_ok());
}

/// Overflow backends (issue 13) get ids like any backend, but never enter the primary table or
/// the in-service list: while the shunt is closed they must get no flows.
#[test]
fn overflow_backends_stay_out_of_the_primary_table_and_in_service_list() {
    let text = "[[service]]\nname = \"web\"\nvip = \"10.200.100.1\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\ntable_size = 97\n\
                [service.shunt]\n\
                [[service.backend]]\naddress = \"10.200.3.11\"\nport = 8080\n\
                [[service.backend]]\naddress = \"10.200.3.12\"\nport = 8080\npool = \"overflow\"\n";
    let c = Config::parse(text).expect("valid test config");
    let (running, ids) = start(&c, InitialHealth::Up);
    let web = &running[0];
    assert_eq!(ids_of(web), [(addr(A), 0, 1), (addr(B), 1, 1)]);
    let overflow = &web.backends[1];
    assert!(overflow.up && !overflow.in_table() && !overflow.in_service());
    let table = crate::balancer::build_table(web);
    assert_eq!(table.len(), 97);
    assert!(table.iter().all(|&id| id == 0), "only the primary backend owns slots: {table:?}");
    assert_eq!(crate::balancer::in_service_ids(web), [0]);

    // Moving a backend between pools is a change of table, described as such.
    let moved = Config::parse(&text.replace("pool = \"overflow\"", "").replace("[service.shunt]\n", "")).expect("valid");
    let p = plan(&running, &moved, &ids, InitialHealth::Up).unwrap();
    assert!(p.changed[0].backends[1].in_table());
    assert_eq!(p.summary, ["service web: backend 10.200.3.12:8080 pool overflow -> primary", "service web: shunt settings changed"]);
}
