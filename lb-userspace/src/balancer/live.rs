//! The operator's backend and service changes: edits of the running configuration, checked by
//! the same validator as the file and applied by `reconcile`. (Drain state is not part of the
//! configuration: `drain`.)

use std::net::SocketAddr;

use super::{Balancer, LiveError};
use crate::config::{BackendConfig, Config, ConfigError, ServiceConfig};

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
        svc.backends.push(BackendConfig::primary(addr.ip(), addr.port(), weight));
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
