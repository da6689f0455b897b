//! What it takes to make the running services equal a validated `Config`: which services go,
//! which change in place (and into what state), which come, with every id assigned. Decided
//! before any map is written, so a change that cannot be made is refused with nothing touched.
//! Pure: no kernel needed, unit-tested below.

use std::net::SocketAddr;

use lb_common::{MAX_BACKENDS, MAX_SERVICES, ServiceInfo};

use super::{BackendState, InitialHealth, LiveError, ServiceState, ids::Ids, service_key};
use crate::config::{BackendConfig, Config, ServiceConfig};

#[derive(Debug)]
pub(super) struct Plan {
    /// Running services to take out: gone from the config, or their vip, port or protocol
    /// changed (those come back in `added`, with new ids).
    pub removed: Vec<ServiceState>,
    /// Next states of running services that change in place (one switch each).
    pub changed: Vec<ServiceState>,
    /// New services, ids assigned, not in SERVICES yet.
    pub added: Vec<ServiceState>,
    /// Service names in the order of the config.
    pub order: Vec<String>,
    /// The id pools once all of it is done.
    pub ids: Ids,
    /// One line per change, for the operator.
    pub summary: Vec<String>,
}

/// Plans `desired` against `running`. Ids are assigned in the order the changes are applied
/// (removed services, then changed ones, then added ones; within a changed service its new
/// backends before its removed ones are freed), so no id is reused before its owner is retired.
pub(super) fn plan(
    running: &[ServiceState],
    desired: &Config,
    ids: &Ids,
    initial: InitialHealth,
) -> Result<Plan, LiveError> {
    let mut plan = Plan {
        removed: Vec::new(),
        changed: Vec::new(),
        added: Vec::new(),
        order: desired.services.iter().map(|s| s.name.clone()).collect(),
        ids: ids.clone(),
        summary: Vec::new(),
    };
    let in_place = |new: &ServiceConfig| {
        running.iter().find(|s| s.config.name == new.name && s.key == service_key(new))
    };
    for old in running {
        let name = &old.config.name;
        match desired.services.iter().find(|s| s.name == *name) {
            Some(new) if in_place(new).is_some() => continue,
            Some(_) => plan.summary.push(format!(
                "service {name}: vip, port or protocol changed: replaced (its sessions end)"
            )),
            None => plan.summary.push(format!("service {name}: removed")),
        }
        plan.ids.put_service(old.info.id);
        if let Some(pool) = old.pool {
            plan.ids.put_service(pool.id);
        }
        for b in &old.backends {
            plan.ids.put_backend(b.id);
        }
        plan.removed.push(old.clone());
    }
    for new in &desired.services {
        match in_place(new) {
            Some(old) if old.config != *new => {
                let next = changed(old, new, &mut plan.ids, initial)?;
                plan.summary.extend(describe(old, &next));
                plan.changed.push(next);
            }
            _ => {}
        }
    }
    for new in desired.services.iter().filter(|s| in_place(s).is_none()) {
        let next = fresh(new, &mut plan.ids, initial)?;
        plan.summary.push(format!(
            "service {}: added with {} backend(s){}",
            new.name,
            next.backends.len(),
            down_note(initial)
        ));
        plan.added.push(next);
    }
    Ok(plan)
}

/// The next state of a service that stays in place: backends kept by address (id, health,
/// drain state and sessions with them), new ones with fresh ids, weights and settings as in
/// `new`.
fn changed(
    old: &ServiceState,
    new: &ServiceConfig,
    ids: &mut Ids,
    initial: InitialHealth,
) -> Result<ServiceState, LiveError> {
    let backends = new
        .backends
        .iter()
        .map(|bc| {
            let addr = SocketAddr::new(bc.address, bc.port);
            match old.backends.iter().find(|b| b.addr == addr) {
                Some(b) => Ok(BackendState { weight: bc.weight, pool: bc.pool, quota: bc.quota, ..b.clone() }),
                None => fresh_backend(addr, bc, ids, initial),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    for b in old.backends.iter().filter(|b| !backends.iter().any(|n| n.id == b.id)) {
        ids.put_backend(b.id);
    }
    if !backends.iter().any(BackendState::in_table) {
        return Err(LiveError::Refused(format!(
            "service {} would have no backend for new flows: every backend it keeps is draining; \
             undrain one (`lb backend undrain {} ADDR:PORT`) or keep another backend",
            new.name, new.name
        )));
    }
    let pool = match (old.pool, has_overflow(new)) {
        (Some(pool), true) => Some(pool),
        (None, true) => Some(ServiceInfo { id: take_pool_id(new, ids)?, ..Default::default() }),
        (Some(pool), false) => {
            ids.put_service(pool.id);
            None
        }
        (None, false) => None,
    };
    Ok(ServiceState { config: new.clone(), backends, pool, ..old.clone() })
}

fn has_overflow(svc: &ServiceConfig) -> bool {
    svc.backends.iter().any(|b| !b.pool.is_primary())
}

/// An id for a service's overflow pool table: it comes from the service ids (each has banks).
pub(super) fn take_pool_id(svc: &ServiceConfig, ids: &mut Ids) -> Result<u32, LiveError> {
    ids.take_service().ok_or_else(|| {
        LiveError::Refused(format!(
            "no free service id for the overflow pool of service {}: the data plane holds at most \
             {MAX_SERVICES} tables, and a service with overflow backends takes two; remove a service first",
            svc.name
        ))
    })
}

/// A service that is not in SERVICES yet, with fresh ids for it and its backends.
fn fresh(new: &ServiceConfig, ids: &mut Ids, initial: InitialHealth) -> Result<ServiceState, LiveError> {
    let id = ids.take_service().ok_or_else(|| {
        LiveError::Refused(format!(
            "no free service id: the data plane holds at most {MAX_SERVICES} services; remove one first"
        ))
    })?;
    let backends = new
        .backends
        .iter()
        .map(|bc| fresh_backend(SocketAddr::new(bc.address, bc.port), bc, ids, initial))
        .collect::<Result<Vec<_>, _>>()?;
    let pool = if has_overflow(new) { Some(ServiceInfo { id: take_pool_id(new, ids)?, ..Default::default() }) } else { None };
    Ok(ServiceState {
        config: new.clone(),
        key: service_key(new),
        info: ServiceInfo { id, ..Default::default() },
        pool,
        backends,
    })
}

/// A new backend: down until its health check passes (as at start), unless `initial` says up.
pub(super) fn fresh_backend(
    addr: SocketAddr,
    config: &BackendConfig,
    ids: &mut Ids,
    initial: InitialHealth,
) -> Result<BackendState, LiveError> {
    let (id, generation) = ids.take_backend().ok_or_else(|| {
        LiveError::Refused(format!(
            "no free backend id: the data plane holds at most {MAX_BACKENDS} backends over all \
             services (draining ones included); remove some first, or make this change in two steps"
        ))
    })?;
    Ok(BackendState {
        id,
        addr,
        weight: config.weight,
        up: initial == InitialHealth::Up,
        generation,
        drain: None,
        pool: config.pool,
        quota: config.quota,
        open: false,
        full: false,
    })
}

fn down_note(initial: InitialHealth) -> &'static str {
    match initial {
        InitialHealth::Down => ", in service as their health checks pass",
        InitialHealth::Up => "",
    }
}

/// One line per difference between a service's running and next state.
fn describe(old: &ServiceState, next: &ServiceState) -> Vec<String> {
    let name = &next.config.name;
    let (o, n) = (&old.config, &next.config);
    let mut lines = Vec::new();
    let mut setting = |what: &str, from: String, to: String| {
        if from != to {
            lines.push(format!("service {name}: {what} {from} -> {to}"));
        }
    };
    setting("forwarding", o.forwarding.as_str().into(), n.forwarding.as_str().into());
    setting("hash_key", o.hash_key.as_str().into(), n.hash_key.as_str().into());
    setting("table_size", o.table_size.to_string(), n.table_size.to_string());
    setting("drain_timeout", format!("{} s", o.drain_timeout.as_secs()), format!("{} s", n.drain_timeout.as_secs()));
    if o.health != n.health {
        lines.push(format!("service {name}: health check settings changed (its checks restart)"));
    }
    for b in &next.backends {
        match old.backends.iter().find(|ob| ob.id == b.id) {
            None => lines.push(format!(
                "service {name}: backend {} added (weight {}){}",
                b.addr,
                b.weight,
                if b.up { "" } else { ", in service once its health check passes" }
            )),
            Some(ob) if ob.weight != b.weight => lines.push(format!(
                "service {name}: backend {} weight {} -> {}",
                b.addr, ob.weight, b.weight
            )),
            Some(_) => {}
        }
        match old.backends.iter().find(|ob| ob.id == b.id) {
            Some(ob) if ob.pool != b.pool => lines.push(format!(
                "service {name}: backend {} pool {} -> {}",
                b.addr,
                ob.pool.as_str(),
                b.pool.as_str()
            )),
            _ => {}
        }
    }
    let quota_of = |c: &ServiceConfig, addr| c.backends.iter().find(|bc| SocketAddr::new(bc.address, bc.port) == addr).map(|bc| bc.quota);
    for b in next.backends.iter().filter(|b| quota_of(o, b.addr).is_some_and(|q| Some(q) != quota_of(n, b.addr))) {
        lines.push(format!("service {name}: backend {} quotas changed", b.addr));
    }
    if o.shunt != n.shunt {
        lines.push(format!("service {name}: shunt settings changed"));
    }
    if o.load_alerts != n.load_alerts {
        lines.push(format!("service {name}: load alert thresholds changed"));
    }
    for ob in old.backends.iter().filter(|ob| !next.backends.iter().any(|b| b.id == ob.id)) {
        let was = if ob.drain.is_some() { " (was draining)" } else { "" };
        lines.push(format!("service {name}: backend {} removed{was}", ob.addr));
    }
    if lines.is_empty() {
        lines.push(format!("service {name}: backend order changed"));
    }
    lines
}

#[cfg(test)]
mod tests;
