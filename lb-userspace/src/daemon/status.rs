//! `lb status` from the running daemon: configuration, health, drain state, counters, rates
//! and session records per backend (as last counted). `lb metrics` renders the same `Status`.

use std::time::Instant;

use super::state::Daemon;
use crate::{
    api::{BackendStatus, DrainStatus, ServiceStatus, Status},
    dataplane::PinDir,
};

pub(super) fn status(d: &Daemon) -> Status {
    let dp = d.balancer.dataplane();
    let health = d.health.lock().map(|h| h.clone()).unwrap_or_default();
    let now = Instant::now();
    let services = d
        .balancer
        .services()
        .iter()
        .map(|svc| ServiceStatus {
            name: svc.config.name.clone(),
            vip: svc.config.vip,
            port: svc.config.port,
            protocol: svc.config.protocol.as_str().to_string(),
            forwarding: svc.config.forwarding.as_str().to_string(),
            hash_key: svc.config.hash_key.as_str().to_string(),
            backends_in_service: svc.info.in_service_count,
            counters: dp.service_counters(svc.info.id),
            backends: svc
                .backends
                .iter()
                .map(|b| {
                    let h = health.get(&(svc.config.name.clone(), b.addr));
                    BackendStatus {
                        address: b.addr,
                        id: b.id,
                        generation: b.generation,
                        weight: b.weight,
                        health: if b.up { "up" } else { "down" }.into(),
                        drain: b.drain.map(|dr| DrainStatus {
                            elapsed_secs: now.duration_since(dr.since).as_secs_f64(),
                            timeout_secs: dr.timeout.as_secs(),
                        }),
                        active_sessions: d.sessions.get(b.id, b.generation),
                        rates: d.rates.get(b.id, b.generation),
                        checks: h.map(|h| h.checks).unwrap_or(0),
                        last_check_ok: h.and_then(|h| h.last_ok),
                        last_check_latency_ms: h.and_then(|h| h.last_latency).map(|l| l.as_secs_f64() * 1e3),
                        last_error: h.and_then(|h| h.last_error.clone()),
                        counters: dp.backend_counters(b.id),
                        pool: b.pool.as_str().to_string(),
                        taking_overflow: b.in_pool_table(),
                        full: b.full,
                        quota: d.shunting.quota_status(&svc.config.name, b.addr, &b.quota),
                        load_alerts: d.shunting.load_alerts(&svc.config, b.addr),
                    }
                })
                .collect(),
            shunt: d.shunting.summary(&svc.config.name),
        })
        .collect();
    let pins = dp.pins();
    Status {
        instance: d.args.instance.to_string(),
        pin_dir: pins.map(|p| p.path().display().to_string()),
        pin_dir_outside: pins.and_then(PinDir::path_from_outside).map(|p| p.display().to_string()),
        layout_version: dp.layout_version().to_string(),
        adopted: dp.adopted(),
        started_at: d.started_at,
        interfaces: dp.interfaces(),
        xdp_mode: format!("{:?}", d.args.xdp_mode).to_lowercase(),
        services,
        outcomes: dp.outcomes().into_iter().map(|(o, n)| (o.name().to_string(), n)).collect(),
        events: dp.events().into_iter().map(|(e, n)| (e.name().to_string(), n)).collect(),
        session_count_age_secs: d.sessions.age(now).map(|a| a.as_secs_f64()),
        session_capacity: dp.session_capacity(),
        sessions_active: d.sessions.total(),
        contributions: d.shunting.contribution_rows(),
    }
}
