//! Every metric `lb` exports, from one `Status`, written by the `prometheus-client` crate (the
//! Prometheus project's own Rust client) in the text format 0.0.4. Names follow Prometheus
//! conventions: `lb_` prefix, base units (seconds, bytes), `_total` on counters (the crate adds
//! it). Series are labelled by service name and backend "addr:port" (never by map id, which is
//! reused). The README's Metrics table is the contract: names, types and labels stay.
//!
//! Counters restart at 0 when their service or backend is recreated (a backend removed and
//! added again gets its counters zeroed); `rate()` treats that as a counter reset.

use std::{fmt, sync::OnceLock};

use lb_common::Outcome;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, prometheus_text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    api::{BackendStatus, Status},
    dataplane::XDP_OBJECT,
};

/// The whole exposition for `status`.
pub fn render(status: &Status) -> String {
    // A registry per scrape: every value is a snapshot (a Status), not a live metric.
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(status.clone())));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// A sample's value: counts print as integers, measurements as floats.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

type Labels = Vec<(&'static str, String)>;

/// Writes one family: its HELP and TYPE, then a sample per label set. `name` is the series
/// name; for a counter the crate writes the `_total` itself, so it is taken off here.
fn family(
    enc: &mut DescriptorEncoder,
    name: &'static str,
    kind: MetricType,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, Value)>,
) -> fmt::Result {
    let base = match kind {
        MetricType::Counter => name.strip_suffix("_total").expect("a counter's name ends in _total"),
        _ => name,
    };
    let mut metric = enc.encode_descriptor(base, help, None, kind)?;
    for (labels, value) in samples {
        let sample = metric.encode_family(&labels)?;
        match (kind, value) {
            (MetricType::Counter, Value::Int(v)) => ConstCounter::new(v).encode(sample)?,
            (MetricType::Counter, Value::Float(v)) => ConstCounter::new(v).encode(sample)?,
            (_, Value::Int(v)) => ConstGauge::new(v).encode(sample)?,
            (_, Value::Float(v)) => ConstGauge::new(v).encode(sample)?,
        }
    }
    Ok(())
}

/// The status a scrape renders.
#[derive(Debug)]
struct Snapshot(Status);

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let status = &self.0;
        let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
        let build = vec![("version", env!("CARGO_PKG_VERSION").to_string()), ("xdp_object", xdp_object_digest().to_string())];
        family(&mut enc, "lb_build_info", gauge, "Always 1; labels: lb version and digest of the XDP object it loaded.", [(build, 1u64.into())])?;
        let ifaces = status.interfaces.iter().map(|i| (vec![("interface", i.clone()), ("xdp_mode", status.xdp_mode.clone())], 1u64.into()));
        family(&mut enc, "lb_interface_attached", gauge, "Always 1 per interface the XDP program is attached to.", ifaces)?;

        services(&mut enc, status)?;
        backends(&mut enc, status)?;
        shunting(&mut enc, status)?;

        let none = Labels::new;
        family(
            &mut enc,
            "lb_session_count_age_seconds",
            gauge,
            "Age of the count behind lb_backend_active_sessions (SESSIONS is walked at most once a second, less often when it is large).",
            status.session_count_age_secs.map(|age| (none(), age.into())),
        )?;
        family(&mut enc, "lb_session_capacity", gauge, "Flows the session table records at most ([sessions] capacity).", [(
            none(),
            status.session_capacity.into(),
        )])?;
        family(
            &mut enc,
            "lb_sessions_active",
            gauge,
            "Session records that are not closing, over all backends, as of lb_session_count_age_seconds ago.",
            status.sessions_active.map(|n| (none(), n.into())),
        )?;
        let outcomes = status.outcomes.iter().map(|(reason, n)| (vec![("verdict", verdict(reason).to_string()), ("reason", reason.clone())], (*n).into()));
        family(
            &mut enc,
            "lb_packets_total",
            counter,
            "Packets the XDP program handled, by verdict (pass, drop, tx, redirect) and reason; every packet counts once.",
            outcomes,
        )?;
        family(
            &mut enc,
            "lb_events_total",
            counter,
            "Events on a packet's way: second_choice (the table slot's backend was out of service), \
             session_rechosen (a session's backend was out of service or gone), new_flow_not_recorded \
             (a new flow found its session bucket full of live connections and was forwarded \
             unrecorded), reply_of_ended_flow (a NAT backend's packet matched a flow that is over and \
             passed untouched), spilled_to_overflow (a new flow's choice was at its quota: sent to the \
             overflow pool), every_choice_full (every choice was at its quota: sent to the first).",
            status.events.iter().map(|(event, n)| (vec![("event", event.clone())], (*n).into())),
        )
    }
}

fn services(enc: &mut DescriptorEncoder, status: &Status) -> fmt::Result {
    let info = status.services.iter().map(|s| {
        let labels = vec![
            ("service", s.name.clone()),
            ("vip", s.vip.to_string()),
            ("port", s.port.to_string()),
            ("protocol", s.protocol.clone()),
            ("forwarding", s.forwarding.clone()),
            ("hash_key", s.hash_key.clone()),
        ];
        (labels, 1u64.into())
    });
    family(enc, "lb_service_info", MetricType::Gauge, "Always 1 per service; labels: its vip, port, protocol, forwarding and hash key.", info)?;
    let per_service = |enc: &mut DescriptorEncoder, name, kind, help: &str, value: fn(&crate::api::ServiceStatus) -> u64| {
        family(enc, name, kind, help, status.services.iter().map(|s| (vec![("service", s.name.clone())], value(s).into())))
    };
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    per_service(enc, "lb_service_packets_total", counter, "Packets sent to the service's backends.", |s| s.counters.packets)?;
    per_service(enc, "lb_service_bytes_total", counter, "Bytes (whole frames as received) sent to the service's backends.", |s| s.counters.bytes)?;
    per_service(enc, "lb_service_new_sessions_total", counter, "New sessions (flows given a backend) of the service.", |s| {
        s.counters.new_sessions
    })?;
    per_service(enc, "lb_service_backends", gauge, "Backends configured for the service.", |s| s.backends.len() as u64)?;
    per_service(enc, "lb_service_backends_in_service", gauge, "Backends of the service that take new flows (healthy and not draining).", |s| {
        s.backends_in_service.into()
    })
}

fn backends(enc: &mut DescriptorEncoder, status: &Status) -> fmt::Result {
    let all: Vec<Backend> = status
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s.name.as_str(), b.address.to_string(), b)))
        .collect();
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    per_backend(enc, &all, "lb_backend_packets_total", counter, "Packets sent to the backend.", |b| Some(b.counters.packets))?;
    per_backend(enc, &all, "lb_backend_bytes_total", counter, "Bytes (whole frames as received) sent to the backend.", |b| {
        Some(b.counters.bytes)
    })?;
    per_backend(enc, &all, "lb_backend_new_sessions_total", counter, "New sessions given to the backend.", |b| {
        Some(b.counters.new_sessions)
    })?;
    per_backend(enc, &all, "lb_backend_healthy", gauge, "1 if the backend's health checks put it up, else 0.", |b| Some(b.health == "up"))?;
    per_backend(enc, &all, "lb_backend_draining", gauge, "1 while the backend drains (no new flows, its sessions go on), else 0.", |b| {
        Some(b.drain.is_some())
    })?;
    per_backend(
        enc,
        &all,
        "lb_backend_in_service",
        gauge,
        "1 if the backend takes new flows (healthy and not draining; an overflow backend: and its pool open to it), else 0.",
        |b| Some(b.health == "up" && b.drain.is_none() && (b.pool == "primary" || b.taking_overflow)),
    )?;
    per_backend(enc, &all, "lb_backend_weight", gauge, "The backend's weight (its share of new flows).", |b| Some(b.weight))?;
    per_backend(
        enc,
        &all,
        "lb_backend_active_sessions",
        gauge,
        "Session records naming the backend that are not closing, as of lb_session_count_age_seconds ago.",
        |b| Some(b.active_sessions),
    )?;
    per_backend(enc, &all, "lb_backend_drain_elapsed_seconds", gauge, "How long the backend has been draining (no sample when it is not).", |b| {
        b.drain.map(|d| d.elapsed_secs)
    })?;
    per_backend(enc, &all, "lb_backend_health_checks_total", counter, "Health checks of the backend finished since its checker (re)started.", |b| {
        Some(b.checks)
    })?;
    per_backend(
        enc,
        &all,
        "lb_backend_health_check_ok",
        gauge,
        "1 if the backend's latest health check passed, 0 if it failed (no sample before the first).",
        |b| b.last_check_ok,
    )?;
    per_backend(enc, &all, "lb_backend_health_check_latency_seconds", gauge, "How long the backend's latest health check took.", |b| {
        b.last_check_latency_ms.map(|ms| ms / 1e3)
    })
}

/// Overflow pools, quotas, load alerts and contribution accounts (issue 13).
fn shunting(enc: &mut DescriptorEncoder, status: &Status) -> fmt::Result {
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    let shunted = || status.services.iter().filter_map(|s| s.shunt.as_ref().map(|sh| (vec![("service", s.name.clone())], sh)));
    family(
        enc,
        "lb_shunt_state",
        gauge,
        "The service's overflow pool: 0 closed, 1 opening, 2 open, 3 closing.",
        shunted().map(|(l, sh)| (l, shunt_state_number(&sh.state).into())),
    )?;
    family(
        enc,
        "lb_shunt_openings_total",
        counter,
        "Times the service's overflow pool opened (closed -> opening) since the data plane started (kept across restarts that adopt it).",
        shunted().map(|(l, sh)| (l, sh.opened_total.into())),
    )?;
    let all: Vec<Backend> = status
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s.name.as_str(), b.address.to_string(), b)))
        .collect();
    per_backend(enc, &all, "lb_backend_full", gauge, "1 while the backend is marked full (measured at its max_sessions or max_bytes_per_sec), else 0.", |b| {
        Some(b.full)
    })?;
    let labelled = |b: &Backend, key: &'static str, value: &str| {
        vec![("service", b.0.to_string()), ("backend", b.1.clone()), (key, value.to_string())]
    };
    let quota_use = all.iter().flat_map(|b| {
        let q = b.2.quota.unwrap_or_default();
        [("new_sessions_per_sec", q.new_sessions_percent), ("sessions", q.sessions_percent), ("bytes_per_sec", q.bytes_percent)]
            .into_iter()
            .filter_map(move |(quota, used)| used.map(|u| (labelled(b, "quota", quota), (u / 100.0).into())))
    });
    family(
        enc,
        "lb_backend_quota_use_ratio",
        gauge,
        "How much of each of its quotas the backend used over the last second (1 = at the quota).",
        quota_use,
    )?;
    let alerts = all.iter().flat_map(|b| b.2.load_alerts.iter().map(move |(metric, on)| (labelled(b, "metric", metric), (*on).into())));
    family(enc, "lb_backend_load_alert", gauge, "1 while the backend is over its service's load_alerts threshold for the metric, else 0.", alerts)?;
    let rows = &status.contributions;
    let contribution = |enc: &mut DescriptorEncoder, name, help: &str, value: fn(&crate::api::ContributionCounts) -> u64| {
        let samples = rows.iter().map(|r| (vec![("service", r.service.clone()), ("backend", r.backend.to_string())], value(&r.counts).into()));
        family(enc, name, counter, help, samples)
    };
    contribution(enc, "lb_overflow_contribution_openings_total", "Pool openings in which the overflow backend took flows (kept across restarts).", |c| {
        c.openings
    })?;
    contribution(enc, "lb_overflow_contribution_seconds_open_total", "Seconds the overflow backend was open (kept across restarts).", |c| {
        c.seconds_open
    })?;
    contribution(enc, "lb_overflow_contribution_new_sessions_total", "New sessions the overflow backend served (kept across restarts).", |c| {
        c.new_sessions
    })?;
    contribution(enc, "lb_overflow_contribution_packets_total", "Packets the overflow backend was sent (kept across restarts).", |c| c.packets)?;
    contribution(enc, "lb_overflow_contribution_bytes_total", "Bytes the overflow backend was sent (kept across restarts).", |c| c.bytes)
}

fn shunt_state_number(state: &str) -> u64 {
    match state {
        "opening" => 1,
        "open" => 2,
        "closing" => 3,
        _ => 0,
    }
}

/// (service name, "addr:port", its status).
type Backend<'a> = (&'a str, String, &'a BackendStatus);

/// One family with a sample per backend that has a value for it.
fn per_backend<V: Into<Value>>(
    enc: &mut DescriptorEncoder,
    all: &[Backend],
    name: &'static str,
    kind: MetricType,
    help: &str,
    value: impl Fn(&BackendStatus) -> Option<V>,
) -> fmt::Result {
    let samples = all.iter().filter_map(|(service, addr, b)| {
        value(b).map(|v| (vec![("service", service.to_string()), ("backend", addr.clone())], v.into()))
    });
    family(enc, name, kind, help, samples)
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
