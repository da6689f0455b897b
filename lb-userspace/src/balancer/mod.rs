//! Desired state -> BPF maps. Holds the services and backends as configured, their ids in the
//! maps and their health, and turns every change into map writes through `dataplane`, building
//! new tables aside and switching to them with one write.

mod addr;
mod explain;
mod table;

pub use addr::{flow_key, ip_raw, service_key};
pub use explain::{Explanation, SessionView};
pub use table::even_table;

use std::net::SocketAddr;

use lb_common::{BACKEND_F_UP, Backend, SERVICE_F_NAT, ServiceInfo, ServiceKey, port_raw};

use crate::{
    config::{Config, Forwarding, ServiceConfig},
    dataplane::{Dataplane, DataplaneError},
};

/// Health of backends before their first check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialHealth {
    /// Out of service until a health check passes (what `lb run` does).
    Down,
    /// In service at once (tests and benchmarks that run no health checks).
    Up,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendState {
    /// Index in BACKENDS and BACKEND_STATS.
    pub id: u32,
    pub addr: SocketAddr,
    pub weight: u32,
    pub up: bool,
    pub generation: u32,
}

#[derive(Clone, Debug)]
pub struct ServiceState {
    pub config: ServiceConfig,
    pub key: ServiceKey,
    /// What SERVICES holds for this service right now.
    pub info: ServiceInfo,
    pub backends: Vec<BackendState>,
}

pub struct Balancer {
    dp: Dataplane,
    services: Vec<ServiceState>,
}

impl Balancer {
    /// Writes every service of `config` into a freshly loaded dataplane. On error nothing is
    /// attached yet, so dropping the half-filled dataplane leaves no trace in the kernel.
    pub fn new(dp: Dataplane, config: &Config, initial: InitialHealth) -> Result<Self, DataplaneError> {
        let mut balancer = Balancer { dp, services: Vec::new() };
        let mut next_backend_id = 0u32;
        for (service_id, svc) in config.services.iter().enumerate() {
            let backends = svc
                .backends
                .iter()
                .map(|b| {
                    let id = next_backend_id;
                    next_backend_id += 1;
                    BackendState {
                        id,
                        addr: SocketAddr::new(b.address, b.port),
                        weight: b.weight,
                        up: initial == InitialHealth::Up,
                        generation: 1,
                    }
                })
                .collect();
            let mut flags = svc.hash_key.hash_fields();
            if svc.forwarding == Forwarding::Nat {
                flags |= SERVICE_F_NAT;
            }
            let state = ServiceState {
                config: svc.clone(),
                key: service_key(svc),
                info: ServiceInfo { id: service_id as u32, flags, table_size: svc.table_size, ..Default::default() },
                backends,
            };
            balancer.install(state)?;
        }
        Ok(balancer)
    }

    fn install(&mut self, mut svc: ServiceState) -> Result<(), DataplaneError> {
        for b in &svc.backends {
            self.dp.set_backend(b.id, &backend_entry(b))?;
        }
        let weights: Vec<(u32, u32)> = svc.backends.iter().map(|b| (b.id, b.weight)).collect();
        let table = even_table(&weights, svc.info.table_size);
        self.dp.write_lookup(svc.info.id, svc.info.lookup_bank, &table)?;
        let up: Vec<u32> = svc.backends.iter().filter(|b| b.up).map(|b| b.id).collect();
        self.dp.write_in_service(svc.info.id, svc.info.in_service_bank, &up)?;
        svc.info.in_service_count = up.len() as u32;
        self.dp.set_service(&svc.key, &svc.info)?;
        self.services.push(svc);
        Ok(())
    }

    /// Puts a backend in or out of service. Returns whether anything changed.
    pub fn set_health(&mut self, service: &str, backend: SocketAddr, up: bool) -> Result<bool, DataplaneError> {
        let Some(svc) = self.services.iter_mut().find(|s| s.config.name == service) else {
            return Ok(false);
        };
        let Some(b) = svc.backends.iter_mut().find(|b| b.addr == backend) else {
            return Ok(false);
        };
        if b.up == up {
            return Ok(false);
        }
        b.up = up;
        let (id, entry) = (b.id, backend_entry(b));
        // Order matters: a backend going down leaves the in-service list before its flag drops,
        // so a second choice never lands on it; one coming up gets its flag before it is listed.
        if up {
            self.dp.set_backend(id, &entry)?;
            publish_in_service(&mut self.dp, svc)?;
        } else {
            publish_in_service(&mut self.dp, svc)?;
            self.dp.set_backend(id, &entry)?;
        }
        Ok(true)
    }

    pub fn services(&self) -> &[ServiceState] {
        &self.services
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    pub fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dp
    }
}

/// Writes the service's up backends into its inactive in-service bank, then flips to it.
fn publish_in_service(dp: &mut Dataplane, svc: &mut ServiceState) -> Result<(), DataplaneError> {
    let up: Vec<u32> = svc.backends.iter().filter(|b| b.up).map(|b| b.id).collect();
    let bank = 1 - svc.info.in_service_bank;
    dp.write_in_service(svc.info.id, bank, &up)?;
    let mut info = svc.info;
    info.in_service_bank = bank;
    info.in_service_count = up.len() as u32;
    dp.set_service(&svc.key, &info)?;
    svc.info = info;
    Ok(())
}

fn backend_entry(b: &BackendState) -> Backend {
    let (addr, family) = ip_raw(b.addr.ip());
    Backend {
        addr,
        port: port_raw(b.addr.port()),
        family,
        flags: if b.up { BACKEND_F_UP } else { 0 },
        generation: b.generation,
    }
}
