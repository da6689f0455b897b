//! Quotas judged from the once-a-second measurements. `max_sessions` and `max_bytes_per_sec`
//! are enforced here, by the control plane: a backend at one of them is "full" and is given no
//! new flows until a later second finds it below (so it may run over for up to about a second,
//! plus the age of the session count). `max_new_sessions_per_sec` is the data plane's to
//! enforce per flow; here it only counts towards `primary_load` and alerts.

use std::net::SocketAddr;

use serde::Serialize;

use super::BackendSample;
use crate::config::{BackendConfig, Pool, Quota, ServiceConfig};

/// How much of each of its quotas a backend used in one second, in percent (None: no such
/// quota).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct QuotaUse {
    pub new_sessions: Option<f64>,
    pub sessions: Option<f64>,
    pub bytes: Option<f64>,
}

impl QuotaUse {
    pub fn of(quota: &Quota, sample: &BackendSample) -> Self {
        let percent = |used: u64, max: Option<u64>| max.map(|m| used as f64 * 100.0 / m as f64);
        QuotaUse {
            new_sessions: percent(sample.new_sessions, quota.max_new_sessions_per_sec.map(u64::from)),
            sessions: percent(sample.active_sessions, quota.max_sessions.map(u64::from)),
            bytes: percent(sample.bytes, quota.max_bytes_per_sec),
        }
    }

    /// The most used of its quotas, in percent (None: the backend has no quota).
    pub fn highest(&self) -> Option<f64> {
        [self.new_sessions, self.sessions, self.bytes].into_iter().flatten().reduce(f64::max)
    }
}

/// The backends of `service` that are at `max_sessions` or `max_bytes_per_sec` in `samples`
/// (primary and overflow alike): they take no new flows until a later sample finds them below.
pub fn full_backends(service: &ServiceConfig, samples: &[BackendSample]) -> Vec<SocketAddr> {
    with_samples(service, samples)
        .filter(|(b, s)| {
            let over = |used: u64, max: Option<u64>| max.is_some_and(|m| used >= m);
            over(s.active_sessions, b.quota.max_sessions.map(u64::from)) || over(s.bytes, b.quota.max_bytes_per_sec)
        })
        .map(|(_, s)| s.addr)
        .collect()
}

/// The service's `primary_load` metric: the highest share of its quotas (percent) any primary
/// backend used. 0 when no primary backend has a quota or a sample.
pub fn primary_load(service: &ServiceConfig, samples: &[BackendSample]) -> f64 {
    with_samples(service, samples)
        .filter(|(b, _)| b.pool == Pool::Primary)
        .filter_map(|(b, s)| QuotaUse::of(&b.quota, s).highest())
        .fold(0.0, f64::max)
}

/// Each backend of the service that has a sample, with it.
fn with_samples<'a>(
    service: &'a ServiceConfig,
    samples: &'a [BackendSample],
) -> impl Iterator<Item = (&'a BackendConfig, &'a BackendSample)> {
    service.backends.iter().filter_map(move |b| {
        let addr = SocketAddr::new(b.address, b.port);
        samples.iter().find(|s| s.addr == addr).map(|s| (b, s))
    })
}
