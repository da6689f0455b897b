//! The policy driven by hand-made time and samples.

mod alerts;
mod contribution;
mod lifecycle;
mod overflow_backends;
mod quota;
mod rules;
mod service;
mod snapshot;
mod triggers;

use std::net::SocketAddr;

use crate::config::{Config, ServiceConfig};

/// A service with two primary and two overflow backends and `shunt` as its `[service.shunt]`
/// body (and `backend_extra` added to every backend).
pub(super) fn service(shunt: &str, backend_extra: &str) -> ServiceConfig {
    let mut text = format!(
        "[[service]]\nname = \"web\"\nvip = \"10.200.100.1\"\nport = 80\nprotocol = \"tcp\"\n[service.shunt]\n{shunt}\n"
    );
    for (addr, pool) in [(PRIMARY_A, "primary"), (PRIMARY_B, "primary"), (OVERFLOW_A, "overflow"), (OVERFLOW_B, "overflow")] {
        text += &format!("[[service.backend]]\naddress = \"{addr}\"\npool = \"{pool}\"\n{backend_extra}\n");
    }
    let mut config = Config::parse(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
    config.services.remove(0)
}

pub(super) const PRIMARY_A: &str = "10.200.3.11";
pub(super) const PRIMARY_B: &str = "10.200.3.12";
pub(super) const OVERFLOW_A: &str = "10.200.3.21";
pub(super) const OVERFLOW_B: &str = "10.200.3.22";

pub(super) fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("test address"), 80)
}

/// A service sample with only new sessions per second set.
pub(super) fn new_sessions(per_sec: f64) -> super::ServiceSample {
    super::ServiceSample { new_sessions_per_sec: per_sec, ..Default::default() }
}

/// Deterministic noise in -1.0..1.0 (a linear congruential generator: no dependency, same
/// series every run).
pub(super) struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed)
    }

    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}
