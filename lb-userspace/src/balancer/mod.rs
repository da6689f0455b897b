//! Desired state -> BPF maps. Holds the services and backends as configured, their ids in the
//! maps, their health and drain state, and turns every change into map writes through
//! `dataplane`, building new tables aside and switching to them with one write.
//!
//! - `publish`: the one path from a service's state to its map entries (and `build_table`,
//!   the one place tables are built);
//! - `plan` + `reconcile`: make the running state equal a validated `Config` (start, reload,
//!   and every config-shaped live change);
//! - `live`: the operator's backend and service changes; `drain`: draining backends;
//! - `explain`: where a flow goes and why, read from the live maps;
//! - `adopt`: the state of maps an earlier lb left (a restart), read back and matched to the
//!   config.

mod addr;
mod adopt;
mod drain;
mod error;
mod explain;
mod ids;
mod live;
mod plan;
mod publish;
mod reconcile;
mod shunt;

pub use addr::{flow_key, ip_raw, service_key};
pub use error::LiveError;
pub use explain::{Explanation, OverflowView, SessionView};
pub use publish::{build_pool_table, build_table, in_service_ids, pool_in_service_ids};

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_common::{ServiceInfo, ServiceKey};

use crate::{
    config::{Config, Pool, Quota, ServiceConfig, SessionsConfig},
    dataplane::{Dataplane, DataplaneError},
};

/// Health of backends before their first check (also of backends added later).
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
    /// Healthy: its BACKENDS entry carries the UP flag.
    pub up: bool,
    pub generation: u32,
    /// Set while draining: out of the table and the in-service list (no new flows), UP flag
    /// kept (its sessions go on) until it has no sessions left or the timeout passes.
    pub drain: Option<Drain>,
    /// Overflow backends (issue 13) have an id and a BACKENDS entry, so the overflow table can
    /// name them later, but are never in the primary table or in-service list: while the
    /// shunt is closed they get no flows (`crate::policy` decides when they may).
    #[serde(skip_serializing_if = "Pool::is_primary")]
    pub pool: Pool,
    /// Its quotas, from the config: the data plane paces its new sessions
    /// (`max_new_sessions_per_sec`); the control plane sets `full` for the others.
    #[serde(skip_serializing_if = "Quota::is_empty")]
    pub quota: Quota,
    /// An overflow backend the shunt has opened: in the pool's table, it takes the new flows
    /// the primary pool has no room for (`crate::policy` decides).
    pub open: bool,
    /// Measured at its `max_sessions` or `max_bytes_per_sec`: it takes no new flow while another
    /// choice has room.
    pub full: bool,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Drain {
    #[serde(skip)]
    pub since: Instant,
    pub timeout: Duration,
}

impl BackendState {
    /// Whether the server index table names it: a primary backend that is not draining.
    pub fn in_table(&self) -> bool {
        self.drain.is_none() && self.pool == Pool::Primary
    }

    /// Whether a second choice may pick it.
    pub fn in_service(&self) -> bool {
        self.up && self.in_table()
    }

    /// Whether the overflow pool's table names it: an open overflow backend, not draining.
    pub fn in_pool_table(&self) -> bool {
        self.pool == Pool::Overflow && self.open && self.drain.is_none()
    }

    /// Whether a spilled flow may go to it past the pool table's choice.
    pub fn in_pool_service(&self) -> bool {
        self.up && self.in_pool_table()
    }
}

#[derive(Clone, Debug)]
pub struct ServiceState {
    pub config: ServiceConfig,
    pub key: ServiceKey,
    /// What SERVICES and SERVICE_BANKS hold for this service right now.
    pub info: ServiceInfo,
    /// The overflow pool's table (its own id and banks), for a service with overflow backends.
    pub pool: Option<ServiceInfo>,
    /// In the order of `config.backends`.
    pub backends: Vec<BackendState>,
}

pub struct Balancer {
    dp: Dataplane,
    services: Vec<ServiceState>,
    ids: ids::Ids,
    initial: InitialHealth,
}

impl Balancer {
    /// Writes every service of `config` into a freshly loaded dataplane (service and backend
    /// ids in the order of the file). On error nothing is attached yet, so dropping the
    /// half-filled dataplane leaves no trace in the kernel.
    pub fn new(dp: Dataplane, config: &Config, initial: InitialHealth) -> Result<Self, LiveError> {
        let mut balancer = Balancer { dp, services: Vec::new(), ids: ids::Ids::default(), initial };
        balancer.reconcile(config)?;
        Ok(balancer)
    }

    /// Puts a backend in or out of service. Returns whether anything changed. The table stays
    /// as it is: the data plane's second choice covers a slot whose backend is down.
    pub fn set_health(&mut self, service: &str, backend: SocketAddr, up: bool) -> Result<bool, DataplaneError> {
        let Some(i) = self.services.iter().position(|s| s.config.name == service) else {
            return Ok(false);
        };
        let prev = &self.services[i];
        let Some(j) = prev.backends.iter().position(|b| b.addr == backend) else {
            return Ok(false);
        };
        if prev.backends[j].up == up {
            return Ok(false);
        }
        let mut next = prev.clone();
        next.backends[j].up = up;
        let (id, entry) = (next.backends[j].id, publish::backend_entry(&next.backends[j]));
        // Order matters: a backend going down leaves the in-service list before its flag drops,
        // so a second choice never lands on it; one coming up gets its flag before it is listed.
        if up {
            self.dp.set_backend(id, &entry)?;
        }
        publish::publish(&mut self.dp, Some(prev), &mut next)?;
        if !up {
            self.dp.set_backend(id, &entry)?;
        }
        self.services[i] = next;
        Ok(true)
    }

    pub fn services(&self) -> &[ServiceState] {
        &self.services
    }

    pub fn service(&self, name: &str) -> Result<&ServiceState, LiveError> {
        self.services
            .iter()
            .find(|s| s.config.name == name)
            .ok_or_else(|| LiveError::UnknownService(name.to_string()))
    }

    /// The configuration the balancer runs now (live changes included, drain state not).
    pub fn running_config(&self) -> Config {
        Config {
            sessions: SessionsConfig { capacity: self.dp.session_capacity() },
            services: self.services.iter().map(|s| s.config.clone()).collect(),
        }
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    pub fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dp
    }
}
