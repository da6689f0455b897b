//! Per-backend load alerts (`[service.load_alerts]`): an event when a backend's measurement
//! goes over a threshold, and one when it is back at or under it. Only crossings are
//! reported, so a backend that stays loaded raises one alert, not one a second.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::Serialize;

use super::{BackendSample, QuotaUse, UnixSecs};
use crate::config::{LoadAlertsConfig, ServiceConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    NewSessionsPerSec,
    ActiveSessions,
    BytesPerSec,
    /// The most used of the backend's own quotas, in percent.
    QuotaPercent,
}

impl AlertMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::NewSessionsPerSec => "new_sessions_per_sec",
            AlertMetric::ActiveSessions => "active_sessions",
            AlertMetric::BytesPerSec => "bytes_per_sec",
            AlertMetric::QuotaPercent => "quota_percent",
        }
    }
}

/// A threshold crossed, either way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadAlert {
    pub at: UnixSecs,
    pub backend: SocketAddr,
    pub metric: AlertMetric,
    pub value: f64,
    pub threshold: u64,
    /// true: went over the threshold; false: back at or under it.
    pub raised: bool,
}

/// The alerts raised now for one service's backends.
#[derive(Debug, Clone, Default)]
pub struct LoadAlerts {
    raised: HashSet<(SocketAddr, AlertMetric)>,
}

impl LoadAlerts {
    /// Compares one second of samples with the service's thresholds; returns the crossings.
    pub fn observe(&mut self, now: UnixSecs, service: &ServiceConfig, samples: &[BackendSample]) -> Vec<LoadAlert> {
        let Some(limits) = service.load_alerts else { return Vec::new() };
        let mut crossings = Vec::new();
        for b in &service.backends {
            let addr = SocketAddr::new(b.address, b.port);
            let Some(s) = samples.iter().find(|s| s.addr == addr) else { continue };
            for (metric, value, threshold) in measurements(&limits, &QuotaUse::of(&b.quota, s), s) {
                let over = value > threshold as f64;
                let was = self.raised.contains(&(addr, metric));
                if over == was {
                    continue;
                }
                if over {
                    self.raised.insert((addr, metric));
                } else {
                    self.raised.remove(&(addr, metric));
                }
                crossings.push(LoadAlert { at: now, backend: addr, metric, value, threshold, raised: over });
            }
        }
        crossings
    }

    /// Whether `backend` has an alert raised on `metric` (`lb status` marks it).
    pub fn is_raised(&self, backend: SocketAddr, metric: AlertMetric) -> bool {
        self.raised.contains(&(backend, metric))
    }
}

/// (metric, value, threshold) for each threshold that applies to this backend.
fn measurements(limits: &LoadAlertsConfig, quota_use: &QuotaUse, s: &BackendSample) -> Vec<(AlertMetric, f64, u64)> {
    let absolute = [
        (AlertMetric::NewSessionsPerSec, s.new_sessions, limits.new_sessions_per_sec),
        (AlertMetric::ActiveSessions, s.active_sessions, limits.active_sessions),
        (AlertMetric::BytesPerSec, s.bytes, limits.bytes_per_sec),
    ];
    let mut out: Vec<_> = absolute
        .into_iter()
        .filter_map(|(m, v, t)| t.map(|t| (m, v as f64, t)))
        .collect();
    // Only backends with a quota have a share of it to alert on.
    if let (Some(t), Some(used)) = (limits.quota_percent, quota_use.highest()) {
        out.push((AlertMetric::QuotaPercent, used, u64::from(t)));
    }
    out
}
