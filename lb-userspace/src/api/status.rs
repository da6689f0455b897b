//! What `lb status` shows: services, backends, health, and counters.

use std::{
    collections::BTreeMap,
    fmt::Write,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

use super::ContributionRow;
use crate::dataplane::Counters;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// `lb run --instance`.
    #[serde(default)]
    pub instance: String,
    /// Where the maps (by name) and the program (`prog_lb_xdp`) are pinned.
    #[serde(default)]
    pub pin_dir: Option<String>,
    /// The same directory seen from outside lb's mount namespace, when it has its own (under
    /// `ip netns exec`): /proc/<lb's pid>/root/sys/fs/bpf/lb/<instance>.
    #[serde(default)]
    pub pin_dir_outside: Option<String>,
    /// The map layout version of the data plane (`LB_LAYOUT`, README "Layouts").
    #[serde(default)]
    pub layout_version: String,
    /// This lb adopted the data plane an earlier lb left running (sessions, counters and
    /// shunting state kept); false: it attached a fresh one (first start, or `--fresh`).
    #[serde(default)]
    pub adopted: bool,
    /// When this lb started, Unix seconds.
    #[serde(default)]
    pub started_at: i64,
    pub interfaces: Vec<String>,
    pub xdp_mode: String,
    pub services: Vec<ServiceStatus>,
    /// Packets per outcome (verdict and reason), e.g. "pass_no_service".
    pub outcomes: BTreeMap<String, u64>,
    pub events: BTreeMap<String, u64>,
    /// How old the backends' `active_sessions` are: SESSIONS is walked by the daemon at most
    /// once a second (less often when it is large), not per request. None before the first walk.
    #[serde(default)]
    pub session_count_age_secs: Option<f64>,
    /// Flows SESSIONS records at most (`[sessions] capacity`).
    #[serde(default)]
    pub session_capacity: u32,
    /// Records that are not closing, over all backends (gone ones too), as of
    /// `session_count_age_secs` ago: how full the table is. None before the first walk.
    #[serde(default)]
    pub sessions_active: Option<u64>,
    /// The overflow backends' contribution accounts (`lb shunt report`).
    #[serde(default)]
    pub contributions: Vec<ContributionRow>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub forwarding: String,
    pub hash_key: String,
    pub backends_in_service: u32,
    pub counters: Counters,
    pub backends: Vec<BackendStatus>,
    /// Its overflow pool, for a service with `[service.shunt]` (`lb shunt status` has more).
    #[serde(default)]
    pub shunt: Option<ShuntSummary>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShuntSummary {
    /// closed | opening | open | closing.
    pub state: String,
    /// Unix seconds.
    pub since: i64,
    pub why: String,
    /// Times the pool opened since the data plane started (kept across restarts that adopt it).
    pub opened_total: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: SocketAddr,
    /// Index in BACKENDS (what `lb explain` names) and the generation its entry carries.
    pub id: u32,
    pub generation: u32,
    pub weight: u32,
    /// "up" (healthy) or "down".
    pub health: String,
    /// Set while draining: no new flows, sessions go on.
    pub drain: Option<DrainStatus>,
    /// Session records naming this backend that are not closing (UDP flows and TCP flows whose
    /// FIN/RST was not seen stay until a new flow takes their slot), as of `session_count_age_secs` ago.
    pub active_sessions: u64,
    /// Over the daemon's last sampling interval (about a second).
    pub rates: Rates,
    pub checks: u64,
    pub last_check_ok: Option<bool>,
    pub last_check_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    pub counters: Counters,
    /// "primary" or "overflow".
    #[serde(default = "primary")]
    pub pool: String,
    /// An overflow backend in its pool's table (it takes spilled new flows); false for primaries.
    #[serde(default)]
    pub taking_overflow: bool,
    /// Marked full (measured at its max_sessions or max_bytes_per_sec): no new flow while
    /// another choice has room.
    #[serde(default)]
    pub full: bool,
    /// Its quotas and how much of each it used in the last second; None without quotas.
    #[serde(default)]
    pub quota: Option<QuotaStatus>,
    /// Per `[service.load_alerts]` threshold (metric name): whether it is over it now.
    #[serde(default)]
    pub load_alerts: BTreeMap<String, bool>,
}

fn primary() -> String {
    "primary".into()
}

/// A backend's quotas and its use of them over the last second, in percent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuotaStatus {
    pub max_new_sessions_per_sec: Option<u32>,
    pub max_sessions: Option<u32>,
    pub max_bytes_per_sec: Option<u64>,
    pub new_sessions_percent: Option<f64>,
    pub sessions_percent: Option<f64>,
    pub bytes_percent: Option<f64>,
}

impl QuotaStatus {
    /// "new/s 12% sessions 80%": each quota it has, with its use.
    pub fn summary(&self) -> String {
        let parts = [
            ("new/s", self.max_new_sessions_per_sec.map(u64::from), self.new_sessions_percent),
            ("sessions", self.max_sessions.map(u64::from), self.sessions_percent),
            ("B/s", self.max_bytes_per_sec, self.bytes_percent),
        ];
        parts
            .iter()
            .filter_map(|(what, max, used)| {
                max.map(|m| format!("{what} {}/{m}", used.map_or("-".into(), |u| format!("{u:.0}%"))))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub new_sessions_per_sec: f64,
    pub packets_per_sec: f64,
    pub bytes_per_sec: f64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DrainStatus {
    pub elapsed_secs: f64,
    pub timeout_secs: u64,
}

/// The human-readable form of `lb status`.
pub fn render_text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "instance: {}", s.instance);
    if let Some(dir) = &s.pin_dir {
        let _ = match &s.pin_dir_outside {
            Some(outside) => writeln!(out, "maps pinned at {dir} (lb's own mount namespace; from outside: {outside})"),
            None => writeln!(out, "maps pinned at {dir}"),
        };
    }
    let how = if s.adopted { "adopted from an earlier lb" } else { "attached fresh" };
    let _ = writeln!(out, "data plane: layout {}, {how}; this lb runs since {}", s.layout_version, super::shunt::when(s.started_at));
    let _ = writeln!(out, "interfaces: {} (xdp {})", s.interfaces.join(", "), s.xdp_mode);
    let _ = match (s.sessions_active, s.session_count_age_secs) {
        (Some(active), Some(age)) => writeln!(
            out,
            "session table: {active} active of {} ({:.1}%), counted {age:.1} s ago",
            s.session_capacity,
            active as f64 * 100.0 / f64::from(s.session_capacity.max(1))
        ),
        _ => writeln!(out, "session table: capacity {}, active sessions not counted yet", s.session_capacity),
    };
    for svc in &s.services {
        let _ = writeln!(
            out,
            "\nservice {} {} {} {} hash={}  in service {}/{}  packets={} bytes={} sessions={}",
            svc.name, SocketAddr::new(svc.vip, svc.port), svc.protocol, svc.forwarding, svc.hash_key,
            svc.backends_in_service, svc.backends.len(),
            svc.counters.packets, svc.counters.bytes, svc.counters.new_sessions
        );
        if let Some(sh) = &svc.shunt {
            let _ = writeln!(out, "  shunt: {} since {} ({}); opened {} time(s)", sh.state, super::shunt::when(sh.since), sh.why, sh.opened_total);
        }
        for b in &svc.backends {
            let latency = b.last_check_latency_ms.map(|l| format!("{l:.1}ms")).unwrap_or_else(|| "-".into());
            let error = b.last_error.as_deref().map(|e| format!("  last error: {e}")).unwrap_or_default();
            let drain = b
                .drain
                .map(|d| format!(" draining {:.0}/{} s", d.elapsed_secs, d.timeout_secs))
                .unwrap_or_default();
            let r = b.rates;
            let pool = match (b.pool.as_str(), b.taking_overflow) {
                ("primary", _) => String::new(),
                (pool, true) => format!(" {pool}(taking flows)"),
                (pool, false) => format!(" {pool}"),
            };
            let quota = b.quota.map(|q| format!(" quota {}", q.summary())).unwrap_or_default();
            let full = if b.full { " FULL" } else { "" };
            let alerts: Vec<&str> = b.load_alerts.iter().filter(|(_, on)| **on).map(|(m, _)| m.as_str()).collect();
            let alerts = if alerts.is_empty() { String::new() } else { format!(" ALERT {}", alerts.join(",")) };
            let _ = writeln!(
                out,
                "  {:<28} w={:<4} {:<4}{pool}{drain}{full} check={:<8} active={} new/s={:.1} pkt/s={:.1} B/s={:.0}{quota}{alerts}  \
                 packets={} bytes={} sessions={}{}",
                b.address.to_string(), b.weight, b.health, latency, b.active_sessions,
                r.new_sessions_per_sec, r.packets_per_sec, r.bytes_per_sec,
                b.counters.packets, b.counters.bytes, b.counters.new_sessions, error
            );
        }
    }
    let _ = writeln!(out, "\npackets by outcome:");
    for (name, n) in s.outcomes.iter().filter(|(_, n)| **n > 0) {
        let _ = writeln!(out, "  {name:<24} {n}");
    }
    for (name, n) in s.events.iter().filter(|(_, n)| **n > 0) {
        let _ = writeln!(out, "  {name:<24} {n}");
    }
    out
}
