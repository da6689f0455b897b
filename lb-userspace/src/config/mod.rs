//! The configuration file: what services to balance and over which backends.
//!
//! `schema` is the TOML exactly as written (loose types, every field optional where the file may
//! omit it); `validate` turns it into the types below or into one `ConfigError` that names the
//! field, the value and the fix. Everything past this module may trust a `Config`: names are
//! unique, limits fit the data plane, and every backend can actually be reached.
//! The file format is documented in docs/config.md; examples/lb.toml is a complete example.

mod error;
mod schema;
mod shunt;
mod validate;
mod validate_shunt;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod shunt_tests;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use shunt::{LoadAlertsConfig, Metric, Pool, Quota, ShuntConfig, ShuntRule, ShuntWindow, Threshold};

/// Health check defaults, used field by field when `[service.health]` leaves one out.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(2000);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_millis(1000);
pub const DEFAULT_HEALTH_RISE: u32 = 2;
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// Backend weight when the file gives none, and the largest one allowed.
pub const DEFAULT_WEIGHT: u32 = 1;
pub const MAX_WEIGHT: u32 = 1000;
/// How long a drain may last when `lb backend drain` gives no `--timeout` and the service no
/// `drain_timeout`; and the longest `drain_timeout` the file may set.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Largest `ring_points`; the default is `crate::hashing::DEFAULT_RING_POINTS`.
pub const MAX_RING_POINTS_PER_WEIGHT: u32 = 1000;

/// A validated configuration. Serializes back to the same TOML shape it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub sessions: SessionsConfig,
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

/// `[sessions]`: the session table the data plane keeps for the whole instance. It is sized
/// when `lb run` loads the program, so a reload cannot change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionsConfig {
    /// Flows the table records at most (a power of two, lb_common::MIN_SESSION_CAPACITY..=
    /// MAX_SESSION_CAPACITY); 16 bytes of kernel memory each.
    pub capacity: u32,
}

/// Kernel memory of a session table of `records` records, in MiB (what an operator sizes by).
pub fn session_table_mib(records: u64) -> u64 {
    (records * size_of::<lb_common::SessionSlot>() as u64) >> 20
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig { capacity: lb_common::DEFAULT_SESSION_CAPACITY }
    }
}

/// One service: clients send `protocol` traffic to `vip:port`; it is spread over `backends`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceConfig {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub forwarding: Forwarding,
    pub hash_key: HashKey,
    /// Slots in the server index table (a prime, at most lb_common::MAX_TABLE_SIZE).
    pub table_size: u32,
    /// How the table's slots are given to backends; written as `scheduler` and `ring_points`.
    #[serde(flatten)]
    pub scheduler: SchedulerConfig,
    /// How long a drain lasts at most when the operator gives no timeout (`drain_timeout`,
    /// whole seconds).
    #[serde(rename = "drain_timeout", serialize_with = "as_secs")]
    pub drain_timeout: Duration,
    pub health: HealthConfig,
    /// `[service.shunt]`: present iff the service has overflow backends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shunt: Option<ShuntConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_alerts: Option<LoadAlertsConfig>,
    #[serde(rename = "backend")]
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number, as the data plane keys services by it.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::PROTO_TCP,
            Protocol::Udp => lb_common::PROTO_UDP,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// How a packet reaches the chosen backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Direct server return: only MACs are rewritten, the backend answers the client itself.
    /// The backend must hold the VIP and listen on the service port.
    #[default]
    Dsr,
    /// Destination address/port rewritten to the backend's; replies come back through the LB.
    Nat,
}

impl Forwarding {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::Dsr => "dsr",
            Forwarding::Nat => "nat",
        }
    }
}

/// Which packet fields pick the backend: what flows a client's traffic stays together over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashKey {
    /// Every connection is placed on its own.
    #[default]
    FiveTuple,
    /// All traffic of one client address goes to one backend.
    SourceIp,
    /// One client address to one service port goes to one backend.
    SourceIpPort,
}

impl HashKey {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            HashKey::FiveTuple => "five-tuple",
            HashKey::SourceIp => "source-ip",
            HashKey::SourceIpPort => "source-ip-port",
        }
    }

    /// The lb_common::HASH_* bits the data plane feeds into the flow hash.
    pub fn hash_fields(self) -> u32 {
        match self {
            HashKey::FiveTuple => lb_common::HASH_FIVE_TUPLE,
            HashKey::SourceIp => lb_common::HASH_SRC_ADDR,
            HashKey::SourceIpPort => lb_common::HASH_SRC_ADDR | lb_common::HASH_DST_PORT,
        }
    }
}

/// Which consistent-hashing scheduler fills a service's server index table; see
/// `crate::hashing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "scheduler", rename_all = "lowercase")]
pub enum SchedulerConfig {
    /// Maglev: near-perfect balance, little disruption when backends change.
    Maglev,
    /// A ring with virtual nodes: looser balance, but a change of backends moves only the
    /// changed backend's traffic.
    Ring {
        /// Points on the ring per unit of backend weight, 1..=MAX_RING_POINTS_PER_WEIGHT.
        #[serde(rename = "ring_points")]
        points_per_weight: u32,
    },
}

impl ServiceConfig {
    /// The table builder this service's table is built with.
    pub fn scheduler(&self) -> crate::hashing::Scheduler {
        match self.scheduler {
            SchedulerConfig::Maglev => crate::hashing::Scheduler::Maglev,
            SchedulerConfig::Ring { points_per_weight } => {
                crate::hashing::Scheduler::Ring { points_per_weight }
            }
        }
    }
}

/// How each backend of a service is checked; see `crate::health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthConfig {
    pub kind: HealthKind,
    /// Request path of an HTTP check (set iff `kind` is Http; starts with '/').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port to check instead of the backend's own port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(rename = "interval_ms", serialize_with = "as_millis")]
    pub interval: Duration,
    /// Always shorter than `interval`, so checks of one backend never overlap.
    #[serde(rename = "timeout_ms", serialize_with = "as_millis")]
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            kind: HealthKind::Tcp,
            path: None,
            port: None,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_HEALTH_RISE,
            fall: DEFAULT_HEALTH_FALL,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// Healthy iff a TCP connection is accepted within the timeout.
    #[default]
    Tcp,
    /// Healthy iff `GET path` answers 2xx or 3xx within the timeout.
    Http,
}

impl HealthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthKind::Tcp => "tcp",
            HealthKind::Http => "http",
        }
    }
}

/// One backend of a service. `port` is where its traffic goes (equal to the service port in
/// DSR mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendConfig {
    pub address: IpAddr,
    pub port: u16,
    /// Share of the service's traffic relative to its siblings, 1..=MAX_WEIGHT (of the
    /// overflow pool's table for an overflow backend).
    pub weight: u32,
    #[serde(skip_serializing_if = "Pool::is_primary")]
    pub pool: Pool,
    #[serde(flatten)]
    pub quota: Quota,
}

impl BackendConfig {
    /// A primary backend without quotas (what `lb backend add` adds).
    pub fn primary(address: IpAddr, port: u16, weight: u32) -> Self {
        BackendConfig { address, port, weight, pool: Pool::Primary, quota: Quota::default() }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`. Errors name the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| e.in_file(path))
    }

    /// `load`, and the digest of the bytes read (`crate::state::fnv1a64`): what the running
    /// state was based on, so the next start can tell whether the file changed since.
    pub fn load_with_digest(path: &Path) -> Result<(Config, u64), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|e| e.in_file(path))?;
        Ok((config, crate::state::fnv1a64(text.as_bytes())))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: schema::RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
        validate::config(raw)
    }

    /// Reads back a configuration saved as JSON (`serde_json::to_value(&config)`, the file's
    /// shape), through the same validation as a file. `what` names it in errors.
    pub fn from_json(value: serde_json::Value, what: &str) -> Result<Config, ConfigError> {
        let raw: schema::RawConfig = serde_json::from_value(value).map_err(|e| ConfigError::Invalid {
            file: None,
            at: what.to_string(),
            message: e.to_string(),
        })?;
        validate::config(raw)
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Validation keeps durations in whole milliseconds well inside u64.
    s.serialize_u64(d.as_millis() as u64)
}
