//! The file exactly as written. Numbers are read as i64 and addresses as strings so that
//! `validate` (not serde) judges their range and syntax and can name the service they belong to;
//! fields the file may leave out are `Option` so validation knows whether a value was given.

use serde::Deserialize;

use super::{Forwarding, HashKey, HealthKind, Protocol};

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
}
