//! The rules of traffic shunting's keys: a backend's quotas, `[service.shunt]` and
//! `[service.load_alerts]`. Errors name the service, the field and the value, and what to do.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::schema::{RawBackend, RawLoadAlerts, RawRule, RawShunt, RawWindow};
use super::validate::{endpoint, ranged};
use super::*;

type Result<T> = std::result::Result<T, ConfigError>;

/// Above these, rules and windows stop being something an operator can read at a glance.
const MAX_RULES: usize = 16;
const MAX_WINDOWS: usize = 64;
/// A rule that must hold for more than an hour reacts too late to be a load rule.
const MAX_FOR_SECS: i64 = 3600;
const DEFAULT_MIN_OPEN_SECS: i64 = 60;
const MAX_MIN_OPEN_SECS: i64 = 86_400;

/// A backend's quotas: each optional, none of them 0 (a backend allowed nothing belongs out
/// of the service, not in it with a quota of 0).
pub(super) fn quota(at: &str, rb: &RawBackend) -> Result<Quota> {
    let positive = |field: &str, value: Option<i64>, max: i64| -> Result<Option<i64>> {
        match value {
            None => Ok(None),
            Some(v) if (1..=max).contains(&v) => Ok(Some(v)),
            Some(v) => Err(ConfigError::invalid(
                at,
                format!(
                    "{field} {v} must be 1..={max}; a quota of 0 would let the backend take \
                     nothing: remove the backend, or leave {field} out for no quota"
                ),
            )),
        }
    };
    let u32_max = i64::from(u32::MAX);
    Ok(Quota {
        max_new_sessions_per_sec: positive("max_new_sessions_per_sec", rb.max_new_sessions_per_sec, u32_max)?
            .map(|v| v as u32),
        max_sessions: positive("max_sessions", rb.max_sessions, u32_max)?.map(|v| v as u32),
        max_bytes_per_sec: positive("max_bytes_per_sec", rb.max_bytes_per_sec, i64::MAX)?
            .map(|v| v as u64),
    })
}

/// `[service.shunt]`, which a service has iff it has overflow backends.
pub(super) fn shunt(
    at: &str,
    raw: Option<RawShunt>,
    backends: &[BackendConfig],
    service_drain_timeout: Duration,
) -> Result<Option<ShuntConfig>> {
    let overflow: Vec<_> = backends.iter().filter(|b| b.pool == Pool::Overflow).collect();
    let Some(raw) = raw else {
        if let Some(b) = overflow.first() {
            return Err(ConfigError::invalid(
                at,
                format!(
                    "backend {} is in pool \"overflow\" but the service has no [service.shunt] to \
                     say when that pool opens; add [service.shunt] or set pool = \"primary\"",
                    endpoint(b.address, i64::from(b.port))
                ),
            ));
        }
        return Ok(None);
    };
    let at = format!("{at}: shunt");
    if overflow.is_empty() {
        return Err(ConfigError::invalid(
            &at,
            "no backend has pool = \"overflow\", so there is nothing to open; add overflow \
             backends or remove [service.shunt]",
        ));
    }
    if overflow.len() == backends.len() {
        return Err(ConfigError::invalid(
            &at,
            "every backend is in pool \"overflow\"; the service needs at least one primary backend \
             (pool = \"primary\", the default) for its normal traffic",
        ));
    }
    let enter = rules(&at, "enter", raw.enter, backends)?;
    let exit = rules(&at, "exit", raw.exit, backends)?;
    match (enter.is_empty(), exit.is_empty()) {
        (false, true) => {
            return Err(ConfigError::invalid(
                &at,
                "enter rules but no exit rules: load would open the pool and nothing would close \
                 it; add exit rules, e.g. exit = [{ metric = \"new_sessions_per_sec\", below = N, \
                 for_secs = 30 }]",
            ));
        }
        (true, false) => {
            return Err(ConfigError::invalid(
                &at,
                "exit rules but no enter rules: exit rules only close a pool that enter rules \
                 opened; add enter rules or remove the exit rules",
            ));
        }
        _ => {}
    }
    for e in &enter {
        for x in exit.iter().filter(|x| x.metric == e.metric) {
            flap_free(&at, e, x)?;
        }
    }
    let min_open_secs = ranged::<u64>(
        &at,
        "min_open_secs",
        raw.min_open_secs.unwrap_or(DEFAULT_MIN_OPEN_SECS),
        0,
        MAX_MIN_OPEN_SECS,
    )?;
    let drain_timeout = match raw.drain_timeout {
        None => service_drain_timeout,
        Some(secs) => {
            let max = MAX_DRAIN_TIMEOUT.as_secs() as i64;
            Duration::from_secs(ranged::<u64>(&at, "drain_timeout", secs, 1, max)?)
        }
    };
    if raw.windows.len() > MAX_WINDOWS {
        return Err(ConfigError::invalid(
            &at,
            format!("{} windows, at most {MAX_WINDOWS}; merge adjacent ones", raw.windows.len()),
        ));
    }
    let windows = raw
        .windows
        .into_iter()
        .enumerate()
        .map(|(k, w)| window(&format!("{at}: windows[{k}]"), w))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(ShuntConfig {
        enter,
        exit,
        min_open: Duration::from_secs(min_open_secs),
        drain_timeout,
        windows,
        on_open: raw.on_open.map(|argv| hook(&at, "on_open", argv)).transpose()?,
        on_close: raw.on_close.map(|argv| hook(&at, "on_close", argv)).transpose()?,
    }))
}

fn rules(at: &str, list: &str, raw: Vec<RawRule>, backends: &[BackendConfig]) -> Result<Vec<ShuntRule>> {
    if raw.len() > MAX_RULES {
        return Err(ConfigError::invalid(
            at,
            format!("{} {list} rules, at most {MAX_RULES}", raw.len()),
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(k, r)| rule(&format!("{at}: {list}[{k}] {}", r.metric.as_str()), r, backends))
        .collect()
}

fn rule(at: &str, r: RawRule, backends: &[BackendConfig]) -> Result<ShuntRule> {
    let threshold = match (r.above, r.below) {
        (Some(v), None) => Threshold::Above(ranged(at, "above", v, 0, i64::MAX)?),
        (None, Some(0)) => {
            return Err(ConfigError::invalid(
                at,
                "below 0 never holds (no metric is negative); use a positive threshold",
            ));
        }
        (None, Some(v)) => Threshold::Below(ranged(at, "below", v, 0, i64::MAX)?),
        (Some(a), Some(b)) => {
            return Err(ConfigError::invalid(
                at,
                format!("both above {a} and below {b}; a rule has one side: keep one, or write two rules"),
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                at,
                "no threshold; add above = N or below = N",
            ));
        }
    };
    if r.for_secs == 0 {
        return Err(ConfigError::invalid(
            at,
            "for_secs 0 would act on a single noisy sample; give the seconds the condition must \
             hold in a row, at least 1 (3 or more is steadier)",
        ));
    }
    let for_secs = ranged(at, "for_secs", r.for_secs, 1, MAX_FOR_SECS)?;
    if r.metric == Metric::PrimaryLoad && !backends.iter().any(|b| b.pool == Pool::Primary && !b.quota.is_empty()) {
        return Err(ConfigError::invalid(
            at,
            "primary_load is the share of a primary backend's quota in use, but no primary backend \
             has a quota; give one max_new_sessions_per_sec, max_sessions or max_bytes_per_sec",
        ));
    }
    Ok(ShuntRule { metric: r.metric, threshold, for_secs })
}

/// An exit rule on the same metric as an enter rule must sit strictly on the other side of
/// it: a value that satisfies both would open and close the pool in turn.
fn flap_free(at: &str, enter: &ShuntRule, exit: &ShuntRule) -> Result<()> {
    let ok = match (enter.threshold, exit.threshold) {
        (Threshold::Above(e), Threshold::Below(x)) => x <= e,
        (Threshold::Below(e), Threshold::Above(x)) => x >= e,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let fix = match enter.threshold {
        Threshold::Above(e) => format!("use below = N with N at most {e}"),
        Threshold::Below(e) => format!("use above = N with N at least {e}"),
    };
    Err(ConfigError::invalid(
        at,
        format!(
            "exit rule {} {} is on the wrong side of enter rule {} {}: a value that satisfies \
             both would open and close the pool in turn (it would flap); {fix}",
            exit.metric.as_str(),
            exit.threshold,
            enter.metric.as_str(),
            enter.threshold
        ),
    ))
}

fn window(at: &str, w: RawWindow) -> Result<ShuntWindow> {
    let time = |field: &str, text: &str| {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
            ConfigError::invalid(
                at,
                format!(
                    "{field} {text:?} is not an RFC 3339 time ({e}); write e.g. \
                     \"2026-12-24T18:00:00Z\" (UTC)"
                ),
            )
        })
    };
    let (start, end) = (time("start", &w.start)?, time("end", &w.end)?);
    if end <= start {
        return Err(ConfigError::invalid(
            at,
            format!(
                "end {:?} is not after start {:?}; the window would never be open: swap them or \
                 fix the date",
                w.end, w.start
            ),
        ));
    }
    Ok(ShuntWindow { start, end })
}

/// A hook is run without a shell, so its program must be an executable file named by an
/// absolute path (the daemon's PATH and working directory are not the operator's).
fn hook(at: &str, field: &str, argv: Vec<String>) -> Result<Vec<String>> {
    let Some(program) = argv.first() else {
        return Err(ConfigError::invalid(
            at,
            format!("{field} is empty; give the program and its arguments, e.g. [\"/usr/local/bin/overflow-ctl\", \"start\"], or leave {field} out"),
        ));
    };
    let path = Path::new(program);
    if !path.is_absolute() {
        return Err(ConfigError::invalid(
            at,
            format!("{field} program {program:?} is not an absolute path; hooks run without a shell or PATH: write its full path"),
        ));
    }
    let executable = std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .map_err(|e| {
            ConfigError::invalid(
                at,
                format!("{field} program {program:?} cannot be used: {e}; install it or fix the path"),
            )
        })?;
    if !executable {
        return Err(ConfigError::invalid(
            at,
            format!("{field} program {program:?} is not an executable file; chmod +x it or name the program itself"),
        ));
    }
    Ok(argv)
}

pub(super) fn load_alerts(at: &str, raw: Option<RawLoadAlerts>) -> Result<Option<LoadAlertsConfig>> {
    let Some(raw) = raw else { return Ok(None) };
    let at = format!("{at}: load_alerts");
    let threshold = |field: &str, v: Option<i64>| -> Result<Option<u64>> {
        v.map(|v| ranged(&at, field, v, 1, i64::MAX)).transpose()
    };
    let alerts = LoadAlertsConfig {
        new_sessions_per_sec: threshold("new_sessions_per_sec", raw.new_sessions_per_sec)?,
        active_sessions: threshold("active_sessions", raw.active_sessions)?,
        bytes_per_sec: threshold("bytes_per_sec", raw.bytes_per_sec)?,
        quota_percent: raw.quota_percent.map(|v| ranged(&at, "quota_percent", v, 1, 100)).transpose()?,
    };
    if alerts == LoadAlertsConfig::default() {
        return Err(ConfigError::invalid(
            &at,
            "no thresholds; give new_sessions_per_sec, active_sessions, bytes_per_sec or \
             quota_percent, or remove [service.load_alerts]",
        ));
    }
    Ok(Some(alerts))
}
