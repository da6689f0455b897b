//! The one path from a service's state to its map entries, and the one place its tables are
//! built.

use lb_common::{
    BACKEND_F_FULL, BACKEND_F_PACED, BACKEND_F_UP, Backend, Endpoint, NatVip, NewSessionQuota, SERVICE_F_NAT,
    SERVICE_F_OVERFLOW, ServiceInfo, ServiceKey, port_raw,
};

use super::{BackendState, ServiceState, ip_raw};
use crate::{
    config::{Forwarding, ServiceConfig},
    dataplane::{Dataplane, DataplaneError},
    hashing::{self, TableBackend},
};

/// The service's server index table: slot -> backend id, over the primary backends that take
/// new flows (not draining), by weight, with the service's scheduler (Maglev or ring). Backends
/// are placed by address, so a backend keeps its slots whatever id it has.
pub fn build_table(svc: &ServiceState) -> Vec<u32> {
    table_of(svc, BackendState::in_table)
}

/// The service's in-service list: backends a second choice may pick (healthy, not draining),
/// in the service's order. `explain` reads the same list.
pub fn in_service_ids(svc: &ServiceState) -> Vec<u32> {
    svc.backends.iter().filter(|b| b.in_service()).map(|b| b.id).collect()
}

/// The overflow pool's table, like `build_table` over its open backends; empty (no slots) while
/// none is open.
pub fn build_pool_table(svc: &ServiceState) -> Vec<u32> {
    if !svc.backends.iter().any(BackendState::in_pool_table) {
        return Vec::new();
    }
    table_of(svc, BackendState::in_pool_table)
}

/// The overflow pool's in-service list: open overflow backends that are healthy.
pub fn pool_in_service_ids(svc: &ServiceState) -> Vec<u32> {
    svc.backends.iter().filter(|b| b.in_pool_service()).map(|b| b.id).collect()
}

fn table_of(svc: &ServiceState, member: impl Fn(&BackendState) -> bool) -> Vec<u32> {
    let members: Vec<TableBackend> = svc
        .backends
        .iter()
        .filter(|b| member(b))
        .map(|b| TableBackend { id: b.id, weight: b.weight, name: b.addr.to_string() })
        .collect();
    hashing::build_table(&svc.config.scheduler(), &members, svc.config.table_size)
}

/// SERVICE_F_* and HASH_* bits of a service.
fn service_flags(cfg: &ServiceConfig) -> u32 {
    let nat = if cfg.forwarding == Forwarding::Nat { SERVICE_F_NAT } else { 0 };
    cfg.hash_key.hash_fields() | nat
}

/// The BACKENDS entry of a backend: UP while it is healthy (draining ones included, so their
/// sessions go on), PACED with a new-session quota, FULL while measured at another quota.
pub(super) fn backend_entry(b: &BackendState) -> Backend {
    let (addr, family) = ip_raw(b.addr.ip());
    let up = if b.up { BACKEND_F_UP } else { 0 };
    let paced = if new_session_quota(b).is_set() { BACKEND_F_PACED } else { 0 };
    let full = if b.full { BACKEND_F_FULL } else { 0 };
    Backend { addr, port: port_raw(b.addr.port()), family, flags: up | paced | full, generation: b.generation }
}

pub(super) fn new_session_quota(b: &BackendState) -> NewSessionQuota {
    NewSessionQuota::per_second(b.quota.max_new_sessions_per_sec.unwrap_or(0))
}

/// Writes a backend's quota and BACKENDS entry, quota first when it gains one (the PACED flag
/// must find it), entry first when it loses it. `up` is the UP flag to write (`set_health`
/// orders its own changes of it).
fn write_backend(dp: &mut Dataplane, b: &BackendState, up: bool) -> Result<(), DataplaneError> {
    let quota = new_session_quota(b);
    let entry = backend_entry(&BackendState { up, ..b.clone() });
    if quota.is_set() {
        dp.set_new_session_quota(b.id, &quota)?;
        dp.set_backend(b.id, &entry)
    } else {
        dp.set_backend(b.id, &entry)?;
        dp.set_new_session_quota(b.id, &quota)
    }
}

/// The (backend endpoint, VIP) pairs whose replies the data plane must rewrite: every backend
/// of a NAT service, draining ones included (their flows go on).
pub(super) fn nat_replies(svc: &ServiceState) -> Vec<(Endpoint, NatVip)> {
    if svc.config.forwarding != Forwarding::Nat {
        return Vec::new();
    }
    let vip = NatVip { addr: svc.key.addr, port: svc.key.port, _pad: 0 };
    svc.backends
        .iter()
        .map(|b| {
            let e = backend_entry(b);
            (Endpoint { addr: e.addr, port: e.port, proto: svc.key.proto, family: e.family }, vip)
        })
        .collect()
}

/// What the maps hold for one service: its live definition, the table and in-service list its
/// live banks hold (and its pool's), and the BACKENDS entries, quotas and NAT reply pairs of its
/// backends. Computed from the state lb holds (`of`), or read from adopted maps after a restart.
pub(super) struct Published {
    pub info: ServiceInfo,
    pub table: Vec<u32>,
    pub listed: Vec<u32>,
    pub pool: Option<(ServiceInfo, Vec<u32>, Vec<u32>)>,
    pub backends: Vec<PublishedBackend>,
    pub nat_replies: Vec<(Endpoint, NatVip)>,
}

pub(super) struct PublishedBackend {
    pub id: u32,
    pub entry: Backend,
    pub quota: NewSessionQuota,
}

impl Published {
    pub fn of(svc: &ServiceState) -> Published {
        Published {
            info: svc.info,
            table: build_table(svc),
            listed: in_service_ids(svc),
            pool: svc.pool.map(|info| (info, build_pool_table(svc), pool_in_service_ids(svc))),
            backends: svc
                .backends
                .iter()
                .map(|b| PublishedBackend { id: b.id, entry: backend_entry(b), quota: new_session_quota(b) })
                .collect(),
            nat_replies: nat_replies(svc),
        }
    }
}

/// Makes `next` the live state of its service, whose live state is `prev` (None: the service
/// is not in SERVICES yet). See `publish_over`.
pub(super) fn publish(
    dp: &mut Dataplane,
    prev: Option<&ServiceState>,
    next: &mut ServiceState,
) -> Result<(), DataplaneError> {
    publish_over(dp, prev.map(Published::of).as_ref(), next)
}

/// Makes `next` the live state of its service over what the maps hold for it (`prev`; None:
/// the service is not in SERVICES yet). In this order:
/// 1. BACKENDS entries of backends `prev` does not have (their counters zeroed: the id may
///    have served another backend before), and NAT reply entries for them;
/// 2. a changed table / in-service list into the inactive bank of each (for a new service:
///    bank 0, nothing reads it yet);
/// 3. `set_service`: one SERVICE_BANKS store that switches to those banks (the atomic
///    switch), and a SERVICES write if the service is new (it comes last and makes the service
///    exist) or its flags changed. Skipped if nothing would change;
/// 4. backends `prev` has and `next` has not lose their UP flag, so their sessions go stale
///    and are re-chosen by their next packet, and NAT reply entries `next` no longer needs go.
///    The caller frees their ids.
pub(super) fn publish_over(
    dp: &mut Dataplane,
    prev: Option<&Published>,
    next: &mut ServiceState,
) -> Result<(), DataplaneError> {
    let before = |id: u32| prev.and_then(|p| p.backends.iter().find(|b| b.id == id));
    for b in &next.backends {
        match before(b.id) {
            None => {
                dp.reset_backend_counters(b.id)?;
                write_backend(dp, b, b.up)?;
            }
            Some(old) => {
                // Quotas or the full mark changed: rewritten with the UP flag it had.
                let up = old.entry.flags & BACKEND_F_UP != 0;
                if backend_entry(&BackendState { up, ..b.clone() }) != old.entry || new_session_quota(b) != old.quota {
                    write_backend(dp, b, up)?
                }
            }
        }
    }
    let (old_replies, new_replies) = (prev.map(|p| p.nat_replies.clone()).unwrap_or_default(), nat_replies(next));
    for (backend, vip) in new_replies.iter().filter(|r| !old_replies.contains(r)) {
        dp.add_nat_reply(backend, *vip)?;
    }

    // The overflow pool's table first: the service's entry may be about to name it.
    let prev_pool = prev.and_then(|p| p.pool.as_ref());
    if let Some(pool) = next.pool {
        let prev_pool = prev_pool.filter(|(info, _, _)| info.id == pool.id);
        let info = stage(dp, prev_pool, pool, build_pool_table(next), pool_in_service_ids(next))?;
        if prev_pool.map(|(p, _, _)| *p) != Some(info) {
            dp.set_pool(&info)?;
        }
        next.pool = Some(info);
    }

    let flags = service_flags(&next.config) | if next.pool.is_some() { SERVICE_F_OVERFLOW } else { 0 };
    let base = ServiceInfo { flags, overflow_id: next.pool.map_or(0, |p| p.id), ..next.info };
    let prev_service = prev.map(|p| (p.info, p.table.clone(), p.listed.clone()));
    let info = stage(dp, prev_service.as_ref(), base, build_table(next), in_service_ids(next))?;
    if prev.is_none() {
        dp.reset_service_counters(info.id)?;
    }
    if prev.map(|p| p.info) != Some(info) {
        dp.set_service(&next.key, &info)?;
    }
    next.info = info;
    // A pool the service no longer names (or names under another id) retires.
    if let Some((old, _, _)) = prev_pool.filter(|(old, _, _)| next.pool.map(|p| p.id) != Some(old.id)) {
        dp.remove_pool(old.id);
    }

    if let Some(p) = prev {
        let kept = |id: u32| next.backends.iter().any(|b| b.id == id);
        for b in p.backends.iter().filter(|b| !kept(b.id)) {
            dp.set_backend(b.id, &Backend { flags: 0, ..b.entry })?;
        }
    }
    for (backend, vip) in old_replies.iter().filter(|r| !new_replies.contains(r)) {
        dp.remove_nat_reply(backend, *vip)?;
    }
    Ok(())
}

/// Writes a table and an in-service list into the banks `prev` (its live info, table and list)
/// does not use, where they changed, and returns the info naming the banks to flip to (sizes
/// included). `base` carries the id and flags; with no `prev` (a new table) bank 0 is written.
fn stage(
    dp: &mut Dataplane,
    prev: Option<&(ServiceInfo, Vec<u32>, Vec<u32>)>,
    base: ServiceInfo,
    table: Vec<u32>,
    listed: Vec<u32>,
) -> Result<ServiceInfo, DataplaneError> {
    let mut info = ServiceInfo { table_size: table.len() as u32, ..base };
    let (table_changed, list_changed) = match prev {
        None => (true, true),
        Some((_, t, l)) => (table != *t, listed != *l),
    };
    if table_changed {
        if let Some((p, _, _)) = prev {
            info.lookup_bank = 1 - p.lookup_bank;
        }
        if !table.is_empty() {
            dp.write_lookup(info.id, info.lookup_bank, &table)?;
        }
    }
    if list_changed {
        if let Some((p, _, _)) = prev {
            info.in_service_bank = 1 - p.in_service_bank;
        }
        dp.write_in_service(info.id, info.in_service_bank, &listed)?;
        info.in_service_count = listed.len() as u32;
    }
    Ok(info)
}

/// Takes a service out of SERVICES (packets to it pass from now on), then drops the UP flag of
/// each of its backends and their NAT reply entries, and retires its pool table. The caller
/// frees the ids.
pub(super) fn withdraw(dp: &mut Dataplane, svc: &ServiceState) -> Result<(), DataplaneError> {
    withdraw_published(dp, &svc.key, &Published::of(svc))
}

/// `withdraw` of what the maps hold for the service at `key`.
pub(super) fn withdraw_published(dp: &mut Dataplane, key: &ServiceKey, svc: &Published) -> Result<(), DataplaneError> {
    dp.remove_service(key)?;
    if let Some((pool, _, _)) = &svc.pool {
        dp.remove_pool(pool.id);
    }
    for b in &svc.backends {
        dp.set_backend(b.id, &Backend { flags: 0, ..b.entry })?;
    }
    for (backend, vip) in &svc.nat_replies {
        dp.remove_nat_reply(backend, *vip)?;
    }
    Ok(())
}
