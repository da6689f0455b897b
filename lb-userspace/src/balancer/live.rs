//! The operator's changes to a running balancer. Backend and service changes are edits of the
//! running configuration, checked by the same validator as the file and applied by
//! `reconcile`; drain state is not part of the configuration and switches here.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{Balancer, Drain, LiveError, publish};
use crate::{
    config::{BackendConfig, Config, ConfigError, ServiceConfig},
    dataplane::SessionCounts,
};

/// How long a drain may last when the operator gives no `--timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

impl Balancer {
    /// Adds a backend to a service. It enters the table at once and gets new flows once it is
    /// up: with `lb run`, when its health check first passes (as at start).
    pub fn add_backend(&mut self, service: &str, addr: SocketAddr, weight: u32) -> Result<Vec<String>, LiveError> {
        let mut desired = self.running_config();
        let svc = service_mut(&mut desired, service)?;
        if let Some(b) = svc.backends.iter().find(|b| endpoint(b) == addr) {
            return Err(LiveError::Refused(format!(
                "service {service:?} already has backend {addr} (weight {}): change its weight with \
                 `lb backend weight {service} {addr} W`",
                b.weight
            )));
        }
        svc.backends.push(BackendConfig { address: addr.ip(), port: addr.port(), weight });
        self.apply_edit(format!("adding backend {addr} to service {service:?}"), desired)
    }

    /// Removes a backend at once: out of the table and the in-service list, then its sessions
    /// go stale and are re-chosen by their next packet. `drain` is the gentle way.
    pub fn remove_backend(&mut self, service: &str, addr: SocketAddr) -> Result<Vec<String>, LiveError> {
        let mut desired = self.running_config();
        let svc = service_mut(&mut desired, service)?;
        let i = backend_index(svc, addr)?;
        svc.backends.remove(i);
        self.apply_edit(format!("removing backend {addr} from service {service:?}"), desired)
    }

    pub fn set_weight(&mut self, service: &str, addr: SocketAddr, weight: u32) -> Result<Vec<String>, LiveError> {
        let mut desired = self.running_config();
        let svc = service_mut(&mut desired, service)?;
        let i = backend_index(svc, addr)?;
        svc.backends[i].weight = weight;
        self.apply_edit(format!("setting the weight of backend {addr} of service {service:?}"), desired)
    }

    /// Adds the one service that `toml` (a config file with one [[service]]) describes.
    pub fn add_service(&mut self, toml: &str) -> Result<Vec<String>, LiveError> {
        let file = Config::parse(toml)
            .map_err(|source| LiveError::Invalid { what: "adding a service".into(), source })?;
        let [svc] = file.services.as_slice() else {
            return Err(LiveError::Refused(format!(
                "the file describes {} services; `lb service add` takes a file with exactly one [[service]]",
                file.services.len()
            )));
        };
        let mut desired = self.running_config();
        desired.services.push(svc.clone());
        self.apply_edit(format!("adding service {:?}", svc.name), desired)
    }

    /// Removes a service: its SERVICES entry first (its packets pass from then on), then its
    /// backends.
    pub fn remove_service(&mut self, name: &str) -> Result<Vec<String>, LiveError> {
        let mut desired = self.running_config();
        self.service(name)?;
        desired.services.retain(|s| s.name != name);
        self.apply_edit(format!("removing service {name:?}"), desired)
    }

    /// Stops new flows to a backend while its sessions go on: out of the table and the
    /// in-service list, UP flag kept. `finish_drains` removes it once no session points at it
    /// or `timeout` after `now`. Draining a draining backend restarts its clock with `timeout`.
    pub fn drain(&mut self, service: &str, addr: SocketAddr, timeout: Duration, now: Instant) -> Result<Vec<String>, LiveError> {
        let (i, j) = self.locate(service, addr)?;
        let done = format!(
            "service {service}: backend {addr} draining: no new flows; removed once no session \
             uses it, at the latest in {} s",
            timeout.as_secs()
        );
        let prev = &self.services[i];
        if prev.backends[j].drain.is_some() {
            // Already out of the table: only the clock changes, no map write.
            self.services[i].backends[j].drain = Some(Drain { since: now, timeout });
            return Ok(vec![done]);
        }
        if !prev.backends.iter().enumerate().any(|(k, b)| k != j && b.in_table()) {
            return Err(LiveError::Refused(format!(
                "backend {addr} is the last backend of service {service:?} that takes new flows: \
                 add another (`lb backend add`) or undrain one first, or remove the service"
            )));
        }
        let mut next = prev.clone();
        next.backends[j].drain = Some(Drain { since: now, timeout });
        publish::publish(&mut self.dp, Some(prev), &mut next)?;
        self.services[i] = next;
        Ok(vec![done])
    }

    /// Puts a draining backend back into the table (and the in-service list if it is up).
    pub fn undrain(&mut self, service: &str, addr: SocketAddr) -> Result<Vec<String>, LiveError> {
        let (i, j) = self.locate(service, addr)?;
        let prev = &self.services[i];
        if prev.backends[j].drain.is_none() {
            return Err(LiveError::Refused(format!(
                "backend {addr} of service {service:?} is not draining: nothing to undrain"
            )));
        }
        let mut next = prev.clone();
        next.backends[j].drain = None;
        publish::publish(&mut self.dp, Some(prev), &mut next)?;
        self.services[i] = next;
        Ok(vec![format!("service {service}: backend {addr} takes new flows again")])
    }

    /// How often draining backends' sessions should be counted: the shortest health interval
    /// of a service with a draining backend; None while nothing drains.
    pub fn drain_scan_interval(&self) -> Option<Duration> {
        self.services
            .iter()
            .filter(|s| s.backends.iter().any(|b| b.drain.is_some()))
            .map(|s| s.config.health.interval)
            .min()
    }

    /// Removes every draining backend that is down, whose timeout has passed at `now`, or,
    /// given fresh session counts, that no session record names any more (its id and
    /// generation).
    pub fn finish_drains(&mut self, now: Instant, sessions: Option<&SessionCounts>) -> Result<Vec<String>, LiveError> {
        let mut done = Vec::new();
        for svc in &self.services {
            for b in &svc.backends {
                let Some(d) = b.drain else { continue };
                let left = sessions.map(|c| c.get(&(b.id, b.generation)).copied().unwrap_or(0));
                let why = if !b.up {
                    // Its UP flag is down: every session it had is re-chosen anyway.
                    "it is down, so no session can use it".to_string()
                } else if left == Some(0) {
                    "no session uses it any more".to_string()
                } else if now >= d.since + d.timeout {
                    let left = left.map(|n| format!(", {n} session(s) left")).unwrap_or_default();
                    format!("drain timeout of {} s passed{left}", d.timeout.as_secs())
                } else {
                    continue;
                };
                done.push((svc.config.name.clone(), b.addr, why));
            }
        }
        let mut lines = Vec::new();
        for (service, addr, why) in done {
            self.remove_backend(&service, addr)?;
            lines.push(format!("service {service}: drained backend {addr} removed: {why}"));
        }
        Ok(lines)
    }

    /// Indexes of a backend: its service in `services`, itself in the service's backends.
    fn locate(&self, service: &str, addr: SocketAddr) -> Result<(usize, usize), LiveError> {
        let i = self
            .services
            .iter()
            .position(|s| s.config.name == service)
            .ok_or_else(|| LiveError::UnknownService(service.to_string()))?;
        let j = self.services[i]
            .backends
            .iter()
            .position(|b| b.addr == addr)
            .ok_or_else(|| LiveError::UnknownBackend { service: service.to_string(), backend: addr })?;
        Ok((i, j))
    }

    fn apply_edit(&mut self, what: String, desired: Config) -> Result<Vec<String>, LiveError> {
        let desired = revalidate(&desired).map_err(|source| LiveError::Invalid { what, source })?;
        self.reconcile(&desired)
    }
}

/// Runs an edited configuration through the file's validator, so a live change obeys exactly
/// the rules a config file does (weights, families, DSR ports, duplicates, limits).
fn revalidate(config: &Config) -> Result<Config, ConfigError> {
    let text = toml::to_string(config).map_err(|e| ConfigError::Invalid {
        file: None,
        at: "running configuration".into(),
        message: format!("cannot be written as TOML: {e}"),
    })?;
    Config::parse(&text)
}

fn service_mut<'a>(config: &'a mut Config, name: &str) -> Result<&'a mut ServiceConfig, LiveError> {
    config
        .services
        .iter_mut()
        .find(|s| s.name == name)
        .ok_or_else(|| LiveError::UnknownService(name.to_string()))
}

fn backend_index(svc: &ServiceConfig, addr: SocketAddr) -> Result<usize, LiveError> {
    svc.backends
        .iter()
        .position(|b| endpoint(b) == addr)
        .ok_or_else(|| LiveError::UnknownBackend { service: svc.name.clone(), backend: addr })
}

fn endpoint(b: &BackendConfig) -> SocketAddr {
    SocketAddr::new(b.address, b.port)
}
