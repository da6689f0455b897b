//! The file exactly as written. Numbers are read as i64 and addresses as strings so that
//! `validate` (not serde) judges their range and syntax and can name the service they belong to;
//! fields the file may leave out are `Option` so validation knows whether a value was given.

use serde::Deserialize;

use super::{Forwarding, HashKey, HealthKind, Metric, Pool, Protocol};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    // Default so an empty file reaches validation and gets the "no services" advice.
    #[serde(default)]
    pub service: Vec<RawService>,
    pub sessions: Option<RawSessions>,
}

/// `[sessions]`: the session table, global to the instance.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    pub capacity: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub name: String,
    pub vip: String,
    pub port: i64,
    pub protocol: Protocol,
    pub forwarding: Option<Forwarding>,
    pub hash_key: Option<HashKey>,
    pub table_size: Option<i64>,
    pub scheduler: Option<RawScheduler>,
    pub ring_points: Option<i64>,
    /// Seconds.
    pub drain_timeout: Option<i64>,
    pub health: Option<RawHealth>,
    pub shunt: Option<RawShunt>,
    pub load_alerts: Option<RawLoadAlerts>,
    #[serde(default)]
    pub backend: Vec<RawBackend>,
}

/// `scheduler`'s names; `ring_points` goes with `ring` and is judged by `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawScheduler {
    Maglev,
    Ring,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub kind: Option<HealthKind>,
    pub path: Option<String>,
    pub port: Option<i64>,
    pub interval_ms: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub address: String,
    /// Defaults to the service port.
    pub port: Option<i64>,
    pub weight: Option<i64>,
    pub pool: Option<Pool>,
    pub max_new_sessions_per_sec: Option<i64>,
    pub max_sessions: Option<i64>,
    pub max_bytes_per_sec: Option<i64>,
}

/// `[service.shunt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShunt {
    #[serde(default)]
    pub enter: Vec<RawRule>,
    #[serde(default)]
    pub exit: Vec<RawRule>,
    pub min_open_secs: Option<i64>,
    pub drain_timeout: Option<i64>,
    #[serde(default)]
    pub windows: Vec<RawWindow>,
    pub on_open: Option<Vec<String>>,
    pub on_close: Option<Vec<String>>,
}

/// `{ metric = "...", above = N, for_secs = S }` (or `below`): `validate` wants exactly one
/// side.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub metric: Metric,
    pub above: Option<i64>,
    pub below: Option<i64>,
    pub for_secs: i64,
}

/// RFC 3339 times as written; `validate` parses them so the error can name the window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoadAlerts {
    pub new_sessions_per_sec: Option<i64>,
    pub active_sessions: Option<i64>,
    pub bytes_per_sec: Option<i64>,
    pub quota_percent: Option<i64>,
}
