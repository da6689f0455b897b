//! What the policy is fed once a second: one sample per service (what the shunt rules read)
//! and one per backend (what quotas, alerts and contributions count).

use std::net::SocketAddr;

use serde::Serialize;

use crate::config::Metric;

/// One second of a service, in the units of `Metric`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServiceSample {
    pub new_sessions_per_sec: f64,
    pub packets_per_sec: f64,
    pub bytes_per_sec: f64,
    pub active_sessions: f64,
    /// Percent (100 = a primary backend at its quota): `quota::primary_load`.
    pub primary_load: f64,
    pub health_check_latency_ms: f64,
}

impl ServiceSample {
    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::NewSessionsPerSec => self.new_sessions_per_sec,
            Metric::PacketsPerSec => self.packets_per_sec,
            Metric::BytesPerSec => self.bytes_per_sec,
            Metric::ActiveSessions => self.active_sessions,
            Metric::PrimaryLoad => self.primary_load,
            Metric::HealthCheckLatencyMs => self.health_check_latency_ms,
        }
    }
}

/// One second of one backend: what it was given in that second, and its sessions at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackendSample {
    pub addr: SocketAddr,
    pub new_sessions: u64,
    /// Session records naming it that are not closing.
    pub active_sessions: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl BackendSample {
    /// A second in which the backend got nothing.
    pub fn idle(addr: SocketAddr) -> Self {
        BackendSample { addr, new_sessions: 0, active_sessions: 0, packets: 0, bytes: 0 }
    }
}
