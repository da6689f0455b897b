//! What `lb shunt status` and `lb shunt report` show: each shunted service's pool (state, since,
//! why), its overflow backends and last events; the overflow backends' contribution accounts.
//! The daemon builds these from `crate::policy`; here they are plain data the CLI can read back.

use std::{fmt::Write, net::SocketAddr};

use serde::{Deserialize, Serialize};

use super::{QuotaStatus, Rates};

/// A shunt command of the operator (`lb shunt open|close|release SERVICE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ShuntAction {
    Open { reason: String },
    Close { reason: String },
    /// Give control back to the automatic triggers (rules, windows, external pushes).
    Release,
}

/// One service with `[service.shunt]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShuntServiceStatus {
    pub service: String,
    /// closed | opening | open | closing.
    pub state: String,
    /// Unix seconds: when the pool entered its state.
    pub since: i64,
    /// Why it is in its state, as text ("manual: surge", "enter rule ...").
    pub why: String,
    /// The same, as data: `{"trigger": "manual", "reason": "surge"}` and the like.
    pub trigger: serde_json::Value,
    /// Times the pool opened (closed -> opening) since the data plane started (kept across
    /// restarts that adopt it).
    pub opened_total: u64,
    pub backends: Vec<ShuntBackendStatus>,
    /// The last events (at most 50), oldest first.
    pub events: Vec<ShuntEvent>,
}

/// One overflow backend of a shunted service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShuntBackendStatus {
    pub address: SocketAddr,
    /// closed | starting | ready_awaiting_health | open | closing | draining.
    pub state: String,
    pub since: i64,
    /// Its own last report (ready | closing), if any since the pool opened.
    pub report: Option<String>,
    pub healthy: bool,
    /// In the pool's table now: it takes spilled new flows.
    pub taking_new_flows: bool,
    /// Marked full (at max_sessions or max_bytes_per_sec, as measured).
    pub full: bool,
    /// Active sessions, as last counted.
    pub sessions: u64,
    pub rates: Rates,
    pub quota: Option<QuotaStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShuntEvent {
    pub at: i64,
    /// One line, as the daemon logs it.
    pub text: String,
    /// The event as data (kind, states, trigger).
    pub detail: serde_json::Value,
}

/// `lb shunt report`: every overflow backend's contribution, by service then address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContributionReport {
    /// Where the accounts are kept (`--state-dir`).
    pub state_file: String,
    pub backends: Vec<ContributionRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionCounts {
    /// Pool openings in which it took flows.
    pub openings: u64,
    pub seconds_open: u64,
    pub new_sessions: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionRow {
    pub service: String,
    pub backend: SocketAddr,
    #[serde(flatten)]
    pub counts: ContributionCounts,
}

/// Unix seconds as RFC 3339 (UTC), or the number if it is out of range.
pub fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// The human-readable form of `lb shunt status`.
pub fn render_shunt_status(services: &[ShuntServiceStatus]) -> String {
    let mut out = String::new();
    if services.is_empty() {
        out.push_str("no service has overflow backends ([service.shunt])\n");
    }
    for s in services {
        let _ = writeln!(
            out,
            "service {}: {} since {} ({}); opened {} time(s)",
            s.service, s.state, when(s.since), s.why, s.opened_total
        );
        for b in &s.backends {
            let report = b.report.as_deref().map(|r| format!(" reported {r}")).unwrap_or_default();
            let quota = b.quota.as_ref().map(|q| format!("  quota {}", q.summary())).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<28} {:<21} since {}{report}  {}{}{}  sessions={} new/s={:.1} pkt/s={:.1} B/s={:.0}{quota}",
                b.address.to_string(),
                b.state,
                when(b.since),
                if b.healthy { "healthy" } else { "unhealthy" },
                if b.taking_new_flows { " taking-new-flows" } else { "" },
                if b.full { " FULL" } else { "" },
                b.sessions,
                b.rates.new_sessions_per_sec,
                b.rates.packets_per_sec,
                b.rates.bytes_per_sec,
            );
        }
        if !s.events.is_empty() {
            let _ = writeln!(out, "  events:");
            for e in &s.events {
                let _ = writeln!(out, "    {} {}", when(e.at), e.text.split_once(": ").map_or(e.text.as_str(), |(_, t)| t));
            }
        }
    }
    out
}

/// The human-readable form of `lb shunt report`.
pub fn render_report(r: &ContributionReport) -> String {
    let mut out = format!("contribution accounts ({})\n", r.state_file);
    if r.backends.is_empty() {
        out.push_str("no overflow backend has an account yet\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16} {:<28} {:>8} {:>12} {:>12} {:>12} {:>14}",
        "service", "backend", "openings", "seconds_open", "new_sessions", "packets", "bytes"
    );
    for row in &r.backends {
        let c = row.counts;
        let _ = writeln!(
            out,
            "{:<16} {:<28} {:>8} {:>12} {:>12} {:>12} {:>14}",
            row.service,
            row.backend.to_string(),
            c.openings,
            c.seconds_open,
            c.new_sessions,
            c.packets,
            c.bytes
        );
    }
    out
}
