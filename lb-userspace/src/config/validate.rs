//! Turns the file as written (`schema`) into a `Config`, or the first problem found as a
//! `ConfigError` whose `at` names the service (index and name), backend and field.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use lb_common::{
    DEFAULT_SESSION_CAPACITY, DEFAULT_TABLE_SIZE, MAX_BACKENDS, MAX_SERVICE_BACKENDS, MAX_SERVICES,
    MAX_SESSION_CAPACITY, MAX_TABLE_SIZE, MIN_SESSION_CAPACITY, NAT_REPLY_VIPS,
};

use super::schema::{RawBackend, RawConfig, RawHealth, RawScheduler, RawService, RawSessions};
use super::*;
use super::validate_shunt;
use crate::hashing::{DEFAULT_RING_POINTS, MAX_RING_POINTS};

type Result<T> = std::result::Result<T, ConfigError>;

/// Health intervals and timeouts above an hour are almost surely a unit mistake (seconds or
/// microseconds written as milliseconds).
const MAX_HEALTH_MS: i64 = 3_600_000;
/// Longer rise/fall counts would keep a dead backend in service for hours.
const MAX_RISE_FALL: i64 = 1000;
const MAX_NAME_LEN: usize = 32;

pub(super) fn config(raw: RawConfig) -> Result<Config> {
    if raw.service.is_empty() {
        return Err(ConfigError::invalid(
            "top level",
            "no services: add at least one [[service]] table (see examples/lb.toml)",
        ));
    }
    if raw.service.len() > MAX_SERVICES as usize {
        return Err(ConfigError::invalid(
            "top level",
            format!(
                "{} services, but the data plane holds at most {MAX_SERVICES}; split them over \
                 several instances",
                raw.service.len()
            ),
        ));
    }
    let mut services: Vec<ServiceConfig> = Vec::with_capacity(raw.service.len());
    for (i, rs) in raw.service.into_iter().enumerate() {
        let s = service(i, rs)?;
        let at = format!("service[{i}] \"{}\"", s.name);
        if let Some(k) = services.iter().position(|o| o.name == s.name) {
            return Err(ConfigError::invalid(
                at,
                format!(
                    "duplicate name (service[{k}] is also named \"{}\"); names must be unique",
                    s.name
                ),
            ));
        }
        if let Some(o) = services
            .iter()
            .find(|o| (o.vip, o.port, o.protocol) == (s.vip, s.port, s.protocol))
        {
            return Err(ConfigError::invalid(
                at,
                format!(
                    "duplicate service (same vip {}, port {}, protocol {} as service \"{}\"); \
                     change one of them or merge their backends",
                    s.vip,
                    s.port,
                    s.protocol.as_str(),
                    o.name
                ),
            ));
        }
        services.push(s);
    }
    let total: usize = services.iter().map(|s| s.backends.len()).sum();
    if total > MAX_BACKENDS as usize {
        return Err(ConfigError::invalid(
            "top level",
            format!(
                "{total} backends over all services, but the data plane holds at most \
                 {MAX_BACKENDS}; split the services over several instances"
            ),
        ));
    }
    nat_backend_sharing(&services)?;
    let sessions = sessions(raw.sessions.unwrap_or_default())?;
    Ok(Config { sessions, services })
}

/// `[sessions]`. The capacity is a power of two because a flow's bucket is a mask of its hash;
/// rounding for the operator would double the memory asked for without a word, so the error
/// names the two nearest choices instead.
fn sessions(raw: RawSessions) -> Result<SessionsConfig> {
    let Some(capacity) = raw.capacity else {
        return Ok(SessionsConfig::default());
    };
    let (min, max) = (i64::from(MIN_SESSION_CAPACITY), i64::from(MAX_SESSION_CAPACITY));
    let mib = |n: i64| session_table_mib(n as u64);
    if !(min..=max).contains(&capacity) {
        return Err(ConfigError::invalid(
            "sessions",
            format!(
                "capacity {capacity} must be a power of two from {min} to {max} ({} MiB); leave it \
                 out for the default {DEFAULT_SESSION_CAPACITY} ({} MiB)",
                mib(max),
                mib(i64::from(DEFAULT_SESSION_CAPACITY))
            ),
        ));
    }
    let below = 1i64 << (63 - capacity.leading_zeros());
    if below != capacity {
        return Err(ConfigError::invalid(
            "sessions",
            format!(
                "capacity {capacity} is not a power of two: use {} ({} MiB) or {below} ({} MiB)",
                below * 2,
                mib(below * 2),
                mib(below)
            ),
        ));
    }
    Ok(SessionsConfig { capacity: capacity as u32 })
}

/// The data plane matches a NAT backend's replies against at most NAT_REPLY_VIPS services per
/// backend endpoint (address, port, protocol).
fn nat_backend_sharing(services: &[ServiceConfig]) -> Result<()> {
    let mut users: HashMap<(IpAddr, u16, Protocol), Vec<&str>> = HashMap::new();
    for s in services.iter().filter(|s| s.forwarding == Forwarding::Nat) {
        for b in &s.backends {
            let names = users.entry((b.address, b.port, s.protocol)).or_default();
            names.push(&s.name);
            if names.len() > NAT_REPLY_VIPS {
                return Err(ConfigError::invalid(
                    format!("service \"{}\": backend {}", s.name, endpoint(b.address, b.port as i64)),
                    format!(
                        "this backend serves {} NAT services ({}), at most {NAT_REPLY_VIPS} may \
                         share one backend address, port and protocol; give it another port",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn service(i: usize, rs: RawService) -> Result<ServiceConfig> {
    if !valid_name(&rs.name) {
        return Err(ConfigError::invalid(
            format!("service[{i}]"),
            format!(
                "name {:?} must be 1 to {MAX_NAME_LEN} characters from a-z, 0-9, '_' and '-'",
                rs.name
            ),
        ));
    }
    let at = format!("service[{i}] \"{}\"", rs.name);
    let vip = address(&at, "vip", &rs.vip)?;
    let port: u16 = ranged(&at, "port", rs.port, 1, 65535)?;
    let forwarding = rs.forwarding.unwrap_or_default();
    let backends = backends(&at, vip, port, forwarding, rs.backend)?;
    let table_size = table_size(&at, rs.table_size, backends.len())?;
    let scheduler = scheduler(&at, rs.scheduler, rs.ring_points, &backends)?;
    let drain_timeout = drain_timeout(&at, rs.drain_timeout)?;
    Ok(ServiceConfig {
        name: rs.name,
        vip,
        port,
        protocol: rs.protocol,
        forwarding,
        hash_key: rs.hash_key.unwrap_or_default(),
        table_size,
        scheduler,
        drain_timeout,
        health: health(&format!("{at}: health"), rs.health.unwrap_or_default())?,
        shunt: validate_shunt::shunt(&at, rs.shunt, &backends, drain_timeout)?,
        load_alerts: validate_shunt::load_alerts(&at, rs.load_alerts)?,
        backends,
    })
}

/// `drain_timeout` in seconds: at least one (a drain must give sessions a chance), at most a day.
fn drain_timeout(at: &str, raw: Option<i64>) -> Result<Duration> {
    let Some(secs) = raw else { return Ok(DEFAULT_DRAIN_TIMEOUT) };
    let max = MAX_DRAIN_TIMEOUT.as_secs() as i64;
    if !(1..=max).contains(&secs) {
        return Err(ConfigError::invalid(
            at,
            format!(
                "drain_timeout {secs} must be 1..={max} seconds; leave it out for the default {}",
                DEFAULT_DRAIN_TIMEOUT.as_secs()
            ),
        ));
    }
    Ok(Duration::from_secs(secs as u64))
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A unicast address: packets for 0.0.0.0 or a multicast group cannot be balanced or forwarded.
pub(super) fn address(at: &str, field: &str, text: &str) -> Result<IpAddr> {
    let addr: IpAddr = text.parse().map_err(|_| {
        ConfigError::invalid(
            at,
            format!("{field} {text:?} is not an IP address; write IPv4 (10.0.0.100) or IPv6 (2001:db8::100)"),
        )
    })?;
    if addr.is_unspecified() || addr.is_multicast() {
        return Err(ConfigError::invalid(
            at,
            format!("{field} {addr} is not a unicast address; give the host's own address"),
        ));
    }
    Ok(addr)
}

/// `value` if it lies in lo..=hi, converted to the field's type.
pub(super) fn ranged<T: TryFrom<i64>>(at: &str, field: &str, value: i64, lo: i64, hi: i64) -> Result<T> {
    let err = || ConfigError::invalid(at, format!("{field} {value} must be {lo}..={hi}"));
    if !(lo..=hi).contains(&value) {
        return Err(err());
    }
    T::try_from(value).map_err(|_| err())
}

fn backends(
    at: &str,
    vip: IpAddr,
    service_port: u16,
    forwarding: Forwarding,
    raw: Vec<RawBackend>,
) -> Result<Vec<BackendConfig>> {
    if raw.is_empty() {
        return Err(ConfigError::invalid(
            at,
            "no backends; add at least one [[service.backend]] with an address",
        ));
    }
    if raw.len() > MAX_SERVICE_BACKENDS as usize {
        return Err(ConfigError::invalid(
            at,
            format!(
                "{} backends, but a service holds at most {MAX_SERVICE_BACKENDS}",
                raw.len()
            ),
        ));
    }
    let mut out: Vec<BackendConfig> = Vec::with_capacity(raw.len());
    for (j, rb) in raw.into_iter().enumerate() {
        let address = address(&format!("{at}: backend[{j}]"), "address", &rb.address)?;
        let raw_port = rb.port.unwrap_or(i64::from(service_port));
        let here = format!("{at}: backend[{j}] {}", endpoint(address, raw_port));
        let port: u16 = ranged(&here, "port", raw_port, 1, 65535)?;
        let weight = ranged(
            &here,
            "weight",
            rb.weight.unwrap_or(i64::from(DEFAULT_WEIGHT)),
            1,
            i64::from(MAX_WEIGHT),
        )?;
        if address.is_ipv4() != vip.is_ipv4() {
            return Err(ConfigError::invalid(
                here,
                format!(
                    "address is {} but the vip {vip} is {}; a service's backends must be in its vip's family",
                    family(address),
                    family(vip)
                ),
            ));
        }
        if forwarding == Forwarding::Dsr && port != service_port {
            return Err(ConfigError::invalid(
                here,
                format!(
                    "port {port} differs from the service port {service_port}, which dsr forwarding \
                     cannot change (it rewrites MACs only); set port = {service_port} or \
                     forwarding = \"nat\""
                ),
            ));
        }
        if let Some(k) = out
            .iter()
            .position(|b| (b.address, b.port) == (address, port))
        {
            return Err(ConfigError::invalid(
                here,
                format!(
                    "duplicate backend (same address and port as backend[{k}]); remove one, or raise its weight"
                ),
            ));
        }
        out.push(BackendConfig {
            address,
            port,
            weight,
            pool: rb.pool.unwrap_or_default(),
            quota: validate_shunt::quota(&here, &rb)?,
        });
    }
    Ok(out)
}

pub(super) fn endpoint(address: IpAddr, port: i64) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Maglev fills the table by permutations that only cover every slot when its size is prime,
/// and a backend only gets traffic if it gets at least one slot.
fn table_size(at: &str, raw: Option<i64>, backends: usize) -> Result<u32> {
    let Some(size) = raw else {
        return Ok(DEFAULT_TABLE_SIZE);
    };
    let max = i64::from(MAX_TABLE_SIZE);
    if !(1..=max).contains(&size) {
        return Err(ConfigError::invalid(
            at,
            format!(
                "table_size {size} must be a prime in 2..={max}; leave it out for the default {DEFAULT_TABLE_SIZE}"
            ),
        ));
    }
    if !is_prime(size) {
        let hint = match (2..size).rev().find(|&n| is_prime(n)) {
            Some(p) => format!(
                "use {p}, the nearest prime below, or leave it out for the default {DEFAULT_TABLE_SIZE}"
            ),
            None => format!("leave it out for the default {DEFAULT_TABLE_SIZE}"),
        };
        return Err(ConfigError::invalid(
            at,
            format!("table_size {size} is not a prime; {hint}"),
        ));
    }
    if (size as usize) < backends {
        return Err(ConfigError::invalid(
            at,
            format!(
                "table_size {size} is smaller than the {backends} backends, so some would get no traffic; use a larger prime"
            ),
        ));
    }
    Ok(size as u32)
}

/// `ring_points` belongs to the ring alone, and the ring's build time grows with its points
/// (weight x ring_points over all backends), so their total is bounded.
fn scheduler(
    at: &str,
    kind: Option<RawScheduler>,
    ring_points: Option<i64>,
    backends: &[BackendConfig],
) -> Result<SchedulerConfig> {
    match (kind.unwrap_or(RawScheduler::Maglev), ring_points) {
        (RawScheduler::Maglev, None) => Ok(SchedulerConfig::Maglev),
        (RawScheduler::Maglev, Some(p)) => {
            let note = if kind.is_none() {
                " (the default is \"maglev\")"
            } else {
                ""
            };
            Err(ConfigError::invalid(
                at,
                format!(
                    "ring_points {p} is only used by scheduler = \"ring\"{note}; remove it or set \
                     scheduler = \"ring\""
                ),
            ))
        }
        (RawScheduler::Ring, p) => {
            let per_weight: u32 = ranged(
                at,
                "ring_points",
                p.unwrap_or(i64::from(DEFAULT_RING_POINTS)),
                1,
                i64::from(MAX_RING_POINTS_PER_WEIGHT),
            )?;
            let weight: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
            let points = weight * u64::from(per_weight);
            if points > MAX_RING_POINTS {
                let given = if p.is_some() { "" } else { " (the default)" };
                return Err(ConfigError::invalid(
                    at,
                    format!(
                        "ring_points {per_weight}{given} x total backend weight {weight} = {points} ring \
                         points, more than the {MAX_RING_POINTS} a table may take; lower ring_points \
                         or the weights (only their ratios matter)"
                    ),
                ));
            }
            Ok(SchedulerConfig::Ring {
                points_per_weight: per_weight,
            })
        }
    }
}

pub(super) fn is_prime(n: i64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn health(at: &str, r: RawHealth) -> Result<HealthConfig> {
    let kind = r.kind.unwrap_or_default();
    let path = match (kind, r.path) {
        (HealthKind::Http, None) => {
            return Err(ConfigError::invalid(
                at,
                "kind \"http\" needs a path, e.g. path = \"/healthz\"",
            ));
        }
        (HealthKind::Http, Some(p)) => Some(http_path(at, p)?),
        (HealthKind::Tcp, Some(p)) => {
            return Err(ConfigError::invalid(
                at,
                format!(
                    "path {p:?} is only used by kind = \"http\"; remove it or set kind = \"http\""
                ),
            ));
        }
        (HealthKind::Tcp, None) => None,
    };
    let port = r
        .port
        .map(|p| ranged::<u16>(at, "port", p, 1, 65535))
        .transpose()?;
    let default_ms = |d: Duration| d.as_millis() as i64;
    let interval_ms: u64 = ranged(
        at,
        "interval_ms",
        r.interval_ms.unwrap_or(default_ms(DEFAULT_HEALTH_INTERVAL)),
        2,
        MAX_HEALTH_MS,
    )?;
    let timeout_ms: u64 = ranged(
        at,
        "timeout_ms",
        r.timeout_ms.unwrap_or(default_ms(DEFAULT_HEALTH_TIMEOUT)),
        1,
        MAX_HEALTH_MS,
    )?;
    if timeout_ms >= interval_ms {
        // Name the defaulted one so the reader knows which value they never wrote.
        let note = match (r.interval_ms, r.timeout_ms) {
            (_, None) => {
                format!(" (timeout_ms defaults to {timeout_ms}; set it below {interval_ms})")
            }
            (None, _) => {
                format!(" (interval_ms defaults to {interval_ms}; set it above {timeout_ms})")
            }
            _ => String::new(),
        };
        return Err(ConfigError::invalid(
            at,
            format!(
                "timeout_ms {timeout_ms} must be less than interval_ms {interval_ms}, so checks never overlap{note}"
            ),
        ));
    }
    Ok(HealthConfig {
        kind,
        path,
        port,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        rise: ranged(
            at,
            "rise",
            r.rise.unwrap_or(i64::from(DEFAULT_HEALTH_RISE)),
            1,
            MAX_RISE_FALL,
        )?,
        fall: ranged(
            at,
            "fall",
            r.fall.unwrap_or(i64::from(DEFAULT_HEALTH_FALL)),
            1,
            MAX_RISE_FALL,
        )?,
    })
}

/// The path goes verbatim into the request line, so it must not smuggle in spaces or new lines.
fn http_path(at: &str, p: String) -> Result<String> {
    if !p.starts_with('/') {
        return Err(ConfigError::invalid(
            at,
            format!(
                "path {p:?} must start with '/', e.g. \"/{}\"",
                p.trim_start_matches('/')
            ),
        ));
    }
    if p.len() > 1024 || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            at,
            format!(
                "path {p:?} must be at most 1024 characters without spaces or control characters (percent-encode them)"
            ),
        ));
    }
    Ok(p)
}
