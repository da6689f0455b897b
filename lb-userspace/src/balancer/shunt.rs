//! What the shunting policy (`crate::policy`) changes in the data plane: which overflow
//! backends are open (in the pool's table, taking the new flows the primary pool has no room
//! for) and which backends are marked full at the quotas the control plane measures itself.
//! Neither is configuration: both are state, like health and drains.

use std::net::SocketAddr;

use super::{Balancer, LiveError, ServiceState, publish};
use crate::config::Pool;

impl Balancer {
    /// Makes exactly the overflow backends `open` of `service` open (the rest closed): one switch
    /// of the pool's table. A closed backend takes no new flow; its sessions go on (it keeps its
    /// UP flag), so closing drains. Returns whether anything changed. Refused with nothing
    /// changed if `open` names anything but the service's overflow backends.
    pub fn set_pool_open(&mut self, service: &str, open: &[SocketAddr]) -> Result<bool, LiveError> {
        let i = self.service_index(service)?;
        let prev = &self.services[i];
        if prev.pool.is_none() {
            return Err(LiveError::Refused(format!(
                "service {service:?} has no overflow backends (pool = \"overflow\"): there is no pool to open"
            )));
        }
        if let Some(addr) = open.iter().find(|a| !prev.backends.iter().any(|b| b.addr == **a && b.pool == Pool::Overflow)) {
            return Err(LiveError::Refused(format!(
                "{addr} is not an overflow backend of service {service:?}: see `lb shunt status {service}`"
            )));
        }
        let mut next = prev.clone();
        for b in next.backends.iter_mut().filter(|b| b.pool == Pool::Overflow) {
            b.open = open.contains(&b.addr);
        }
        self.switch(i, next)
    }

    /// Marks a backend full (at its max_sessions or max_bytes_per_sec, as measured) or not: a
    /// full backend takes no new flow while another choice has room. Returns whether anything
    /// changed.
    pub fn set_full(&mut self, service: &str, backend: SocketAddr, full: bool) -> Result<bool, LiveError> {
        let i = self.service_index(service)?;
        let mut next = self.services[i].clone();
        let b = next
            .backends
            .iter_mut()
            .find(|b| b.addr == backend)
            .ok_or_else(|| LiveError::UnknownBackend { service: service.to_string(), backend })?;
        b.full = full;
        self.switch(i, next)
    }

    /// Marks exactly the backends `full` of `service` full (the rest not): one switch for all
    /// of the service's marks, none when nothing changes. Returns the backends whose mark
    /// changed, with their new mark. Addresses that are not the service's backends are ignored
    /// (a backend removed since they were measured).
    pub fn set_full_marks(&mut self, service: &str, full: &[SocketAddr]) -> Result<Vec<(SocketAddr, bool)>, LiveError> {
        let i = self.service_index(service)?;
        // Called every second for every service: nothing is cloned unless a mark changes.
        let changed: Vec<(SocketAddr, bool)> = self.services[i]
            .backends
            .iter()
            .filter(|b| b.full != full.contains(&b.addr))
            .map(|b| (b.addr, !b.full))
            .collect();
        if !changed.is_empty() {
            let mut next = self.services[i].clone();
            for b in &mut next.backends {
                b.full = full.contains(&b.addr);
            }
            self.switch(i, next)?;
        }
        Ok(changed)
    }

    fn service_index(&self, service: &str) -> Result<usize, LiveError> {
        self.services
            .iter()
            .position(|s| s.config.name == service)
            .ok_or_else(|| LiveError::UnknownService(service.to_string()))
    }

    /// Publishes `next` as service `i`'s state if it differs from the running one.
    fn switch(&mut self, i: usize, mut next: ServiceState) -> Result<bool, LiveError> {
        let prev = &self.services[i];
        let same = prev.backends.iter().zip(&next.backends).all(|(a, b)| (a.open, a.full) == (b.open, b.full));
        if same {
            return Ok(false);
        }
        publish::publish(&mut self.dp, Some(prev), &mut next)?;
        self.services[i] = next;
        Ok(true)
    }
}
