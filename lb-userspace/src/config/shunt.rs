//! The validated shapes of traffic shunting (issue 13): a backend's pool and quotas,
//! `[service.shunt]` (when the overflow pool opens and closes) and `[service.load_alerts]`.
//! The rules are in `validate_shunt`; what they drive is `crate::policy`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Which pool a backend belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// In the service's table: takes new flows whenever it is healthy.
    #[default]
    Primary,
    /// Normally idle: takes new flows only while the service's shunt is open, and only those
    /// the primary pool cannot take.
    Overflow,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Primary => "primary",
            Pool::Overflow => "overflow",
        }
    }

    pub fn is_primary(&self) -> bool {
        *self == Pool::Primary
    }
}

/// A backend's quotas, each optional. `max_new_sessions_per_sec` is for the data plane to
/// enforce per flow; the other two are judged by the control plane from its once-a-second
/// measurements (`crate::policy::quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Quota {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_new_sessions_per_sec: Option<u32>,
    /// Concurrent sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_sec: Option<u64>,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        *self == Quota::default()
    }
}

/// What a shunt rule measures: one figure of the service per second
/// (`crate::policy::ServiceSample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// New sessions of the service in the last second.
    NewSessionsPerSec,
    PacketsPerSec,
    BytesPerSec,
    /// Session records of the service that are not closing.
    ActiveSessions,
    /// Percent of its quota used by the most loaded primary backend (100 = at its quota): the
    /// highest of its new sessions, sessions and bytes against their quotas.
    PrimaryLoad,
    /// The slowest latest health check among the primary backends, in milliseconds.
    HealthCheckLatencyMs,
}

impl Metric {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::NewSessionsPerSec => "new_sessions_per_sec",
            Metric::PacketsPerSec => "packets_per_sec",
            Metric::BytesPerSec => "bytes_per_sec",
            Metric::ActiveSessions => "active_sessions",
            Metric::PrimaryLoad => "primary_load",
            Metric::HealthCheckLatencyMs => "health_check_latency_ms",
        }
    }
}

/// Which side of its threshold a rule holds on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Threshold {
    /// Holds while the metric is strictly above the value.
    Above(u64),
    /// Holds while the metric is strictly below the value.
    Below(u64),
}

impl Threshold {
    pub fn holds(self, value: f64) -> bool {
        match self {
            Threshold::Above(t) => value > t as f64,
            Threshold::Below(t) => value < t as f64,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Above(t) => write!(f, "above {t}"),
            Threshold::Below(t) => write!(f, "below {t}"),
        }
    }
}

/// One `enter` or `exit` rule: `metric` on one side of its threshold for `for_secs` samples
/// in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "RuleFields")]
pub struct ShuntRule {
    pub metric: Metric,
    pub threshold: Threshold,
    /// Consecutive one-second samples the condition must hold, >= 1.
    pub for_secs: u32,
}

impl std::fmt::Display for ShuntRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} for {} s", self.metric.as_str(), self.threshold, self.for_secs)
    }
}

/// A rule as the file writes it, so a `Config` serializes back to the same TOML.
#[derive(Serialize)]
struct RuleFields {
    metric: Metric,
    #[serde(skip_serializing_if = "Option::is_none")]
    above: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    below: Option<u64>,
    for_secs: u32,
}

impl From<ShuntRule> for RuleFields {
    fn from(r: ShuntRule) -> Self {
        let (above, below) = match r.threshold {
            Threshold::Above(t) => (Some(t), None),
            Threshold::Below(t) => (None, Some(t)),
        };
        RuleFields { metric: r.metric, above, below, for_secs: r.for_secs }
    }
}

/// A scheduled period during which the pool is held open: `start` included, `end` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ShuntWindow {
    #[serde(serialize_with = "rfc3339")]
    pub start: OffsetDateTime,
    #[serde(serialize_with = "rfc3339")]
    pub end: OffsetDateTime,
}

impl ShuntWindow {
    /// Whether `unix_secs` falls inside the window.
    pub fn contains(&self, unix_secs: i64) -> bool {
        (self.start.unix_timestamp()..self.end.unix_timestamp()).contains(&unix_secs)
    }
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// `[service.shunt]`: when the service's overflow pool opens and how it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShuntConfig {
    /// Any one of them holding opens the pool. May be empty (manual, pushed or scheduled only).
    pub enter: Vec<ShuntRule>,
    /// All of them holding closes a pool the rules opened. Empty iff `enter` is.
    pub exit: Vec<ShuntRule>,
    /// No automatic close before the pool has been open this long.
    #[serde(rename = "min_open_secs", serialize_with = "super::as_secs")]
    pub min_open: Duration,
    /// How long overflow sessions may take to finish once the pool closes.
    #[serde(rename = "drain_timeout", serialize_with = "super::as_secs")]
    pub drain_timeout: Duration,
    pub windows: Vec<ShuntWindow>,
    /// argv run when the pool starts opening (program: an absolute path to an executable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_open: Option<Vec<String>>,
    /// argv run once the pool has drained and closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_close: Option<Vec<String>>,
}

/// `[service.load_alerts]`: thresholds applied to every backend of the service; a backend
/// crossing one raises an event (`crate::policy::alerts`), shunting configured or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LoadAlertsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_sessions_per_sec: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_sessions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// Percent of any of the backend's own quotas (1..=100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_percent: Option<u32>,
}
