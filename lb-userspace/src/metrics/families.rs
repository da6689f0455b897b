//! Every metric `lb` exports, from one `Status`. Names follow Prometheus conventions: `lb_`
//! prefix, base units (seconds, bytes), `_total` on counters. Series are labelled by service
//! name and backend "addr:port" (never by map id, which is reused).
//!
//! Counters restart at 0 when their service or backend is recreated (a backend removed and
//! added again gets its counters zeroed); `rate()` treats that as a counter reset.

use std::sync::OnceLock;

use lb_common::Outcome;

use super::exposition::{Exposition, Kind, Value};
use crate::{
    api::{BackendStatus, ServiceStatus, Status},
    dataplane::XDP_OBJECT,
};

/// The whole exposition for `status`.
pub fn render(status: &Status) -> String {
    let mut x = Exposition::default();
    x.family("lb_build_info", Kind::Gauge, "Always 1; labels: lb version and digest of the XDP object it loaded.")
        .sample(&[("version", env!("CARGO_PKG_VERSION")), ("xdp_object", xdp_object_digest())], 1u64);
    let mut f = x.family("lb_interface_attached", Kind::Gauge, "Always 1 per interface the XDP program is attached to.");
    for iface in &status.interfaces {
        f.sample(&[("interface", iface), ("xdp_mode", &status.xdp_mode)], 1u64);
    }

    services(&mut x, status);
    backends(&mut x, status);

    let mut f = x.family(
        "lb_session_count_age_seconds",
        Kind::Gauge,
        "Age of the count behind lb_backend_active_sessions (SESSIONS is walked at most once a second, less often when it is large).",
    );
    if let Some(age) = status.session_count_age_secs {
        f.sample(&[], age);
    }
    x.family("lb_session_capacity", Kind::Gauge, "Flows the session table records at most ([sessions] capacity).")
        .sample(&[], u64::from(status.session_capacity));
    let mut f = x.family(
        "lb_sessions_active",
        Kind::Gauge,
        "Session records that are not closing, over all backends, as of lb_session_count_age_seconds ago.",
    );
    if let Some(active) = status.sessions_active {
        f.sample(&[], active);
    }

    let mut f = x.family(
        "lb_packets_total",
        Kind::Counter,
        "Packets the XDP program handled, by verdict (pass, drop, tx, redirect) and reason; every packet counts once.",
    );
    for (reason, n) in &status.outcomes {
        f.sample(&[("verdict", verdict(reason)), ("reason", reason)], *n);
    }
    let mut f = x.family(
        "lb_events_total",
        Kind::Counter,
        "Events on a packet's way: second_choice (the table slot's backend was out of service), \
         session_rechosen (a session's backend was out of service or gone), syn_not_recorded (a SYN \
         found its session bucket full of live connections and was forwarded unrecorded), \
         reply_of_ended_flow (a NAT backend's packet matched a flow that is over and passed untouched).",
    );
    for (event, n) in &status.events {
        f.sample(&[("event", event)], *n);
    }
    x.finish()
}

fn services(x: &mut Exposition, status: &Status) {
    let mut f = x.family(
        "lb_service_info",
        Kind::Gauge,
        "Always 1 per service; labels: its vip, port, protocol, forwarding and hash key.",
    );
    for s in &status.services {
        let port = s.port.to_string();
        f.sample(
            &[
                ("service", &s.name),
                ("vip", &s.vip),
                ("port", &port),
                ("protocol", &s.protocol),
                ("forwarding", &s.forwarding),
                ("hash_key", &s.hash_key),
            ],
            1u64,
        );
    }
    let counter = Kind::Counter;
    per_service(x, status, "lb_service_packets_total", counter, "Packets sent to the service's backends.", |s| {
        s.counters.packets
    });
    per_service(x, status, "lb_service_bytes_total", counter, "Bytes (whole frames as received) sent to the service's backends.", |s| {
        s.counters.bytes
    });
    per_service(x, status, "lb_service_new_sessions_total", counter, "New sessions (flows given a backend) of the service.", |s| {
        s.counters.new_sessions
    });
    per_service(x, status, "lb_service_backends", Kind::Gauge, "Backends configured for the service.", |s| {
        s.backends.len() as u64
    });
    per_service(
        x,
        status,
        "lb_service_backends_in_service",
        Kind::Gauge,
        "Backends of the service that take new flows (healthy and not draining).",
        |s| s.backends_in_service.into(),
    );
}

/// One family with a sample per service.
fn per_service(x: &mut Exposition, status: &Status, name: &'static str, kind: Kind, help: &str, value: impl Fn(&ServiceStatus) -> u64) {
    let mut f = x.family(name, kind, help);
    for s in &status.services {
        f.sample(&[("service", &s.name)], value(s));
    }
}

fn backends(x: &mut Exposition, status: &Status) {
    let all: Vec<Backend> = status
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s.name.as_str(), b.address.to_string(), b)))
        .collect();
    let counter = Kind::Counter;
    per_backend(x, &all, "lb_backend_packets_total", counter, "Packets sent to the backend.", |b| {
        Some(b.counters.packets)
    });
    per_backend(x, &all, "lb_backend_bytes_total", counter, "Bytes (whole frames as received) sent to the backend.", |b| {
        Some(b.counters.bytes)
    });
    per_backend(x, &all, "lb_backend_new_sessions_total", counter, "New sessions given to the backend.", |b| {
        Some(b.counters.new_sessions)
    });
    let gauge = Kind::Gauge;
    per_backend(x, &all, "lb_backend_healthy", gauge, "1 if the backend's health checks put it up, else 0.", |b| {
        Some(b.health == "up")
    });
    per_backend(x, &all, "lb_backend_draining", gauge, "1 while the backend drains (no new flows, its sessions go on), else 0.", |b| {
        Some(b.drain.is_some())
    });
    per_backend(x, &all, "lb_backend_in_service", gauge, "1 if the backend takes new flows (healthy and not draining), else 0.", |b| {
        Some(b.health == "up" && b.drain.is_none())
    });
    per_backend(x, &all, "lb_backend_weight", gauge, "The backend's weight (its share of new flows).", |b| Some(b.weight));
    per_backend(
        x,
        &all,
        "lb_backend_active_sessions",
        gauge,
        "Session records naming the backend that are not closing, as of lb_session_count_age_seconds ago.",
        |b| Some(b.active_sessions),
    );
    per_backend(x, &all, "lb_backend_drain_elapsed_seconds", gauge, "How long the backend has been draining (no sample when it is not).", |b| {
        b.drain.map(|d| d.elapsed_secs)
    });
    per_backend(x, &all, "lb_backend_health_checks_total", counter, "Health checks of the backend finished since its checker (re)started.", |b| {
        Some(b.checks)
    });
    per_backend(x, &all, "lb_backend_health_check_ok", gauge, "1 if the backend's latest health check passed, 0 if it failed (no sample before the first).", |b| {
        b.last_check_ok
    });
    per_backend(x, &all, "lb_backend_health_check_latency_seconds", gauge, "How long the backend's latest health check took.", |b| {
        b.last_check_latency_ms.map(|ms| ms / 1e3)
    });
}

/// (service name, "addr:port", its status).
type Backend<'a> = (&'a str, String, &'a BackendStatus);

/// One family with a sample per backend that has a value for it.
fn per_backend<V: Into<Value>>(
    x: &mut Exposition,
    all: &[Backend],
    name: &'static str,
    kind: Kind,
    help: &str,
    value: impl Fn(&BackendStatus) -> Option<V>,
) {
    let mut f = x.family(name, kind, help);
    for (service, addr, b) in all {
        if let Some(v) = value(b) {
            f.sample(&[("service", service), ("backend", addr)], v);
        }
    }
}

/// The verdict of an outcome named in `Status`; "unknown" for a name this build does not know
/// (a status from another version).
fn verdict(outcome: &str) -> &'static str {
    Outcome::ALL.iter().find(|o| o.name() == outcome).map_or("unknown", |o| o.verdict())
}

/// Identifies the data path build: the first 16 hex digits of the FNV-1a hash of the object.
fn xdp_object_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let h = XDP_OBJECT.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        format!("{h:016x}")
    })
}
