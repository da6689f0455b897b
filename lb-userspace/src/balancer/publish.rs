//! The one path from a service's state to its map entries, and the one place its tables are
//! built.

use lb_common::{BACKEND_F_UP, Backend, Endpoint, NatVip, SERVICE_F_NAT, ServiceInfo, port_raw};

use super::{BackendState, ServiceState, ip_raw};
use crate::{
    config::{Forwarding, ServiceConfig},
    dataplane::{Dataplane, DataplaneError},
    hashing::{self, TableBackend},
};

/// The service's server index table: slot -> backend id, over the backends that take new
/// flows (not draining), by weight, with the service's scheduler (Maglev or ring). Backends are
/// placed by address, so a backend keeps its slots whatever id it has.
pub fn build_table(svc: &ServiceState) -> Vec<u32> {
    let members: Vec<TableBackend> = svc
        .backends
        .iter()
        .filter(|b| b.in_table())
        .map(|b| TableBackend { id: b.id, weight: b.weight, name: b.addr.to_string() })
        .collect();
    hashing::build_table(&svc.config.scheduler(), &members, svc.config.table_size)
}

/// The service's in-service list: backends a second choice may pick (healthy, not draining),
/// in the service's order. `explain` reads the same list.
pub fn in_service_ids(svc: &ServiceState) -> Vec<u32> {
    svc.backends.iter().filter(|b| b.in_service()).map(|b| b.id).collect()
}

/// SERVICE_F_* and HASH_* bits of a service.
fn service_flags(cfg: &ServiceConfig) -> u32 {
    let nat = if cfg.forwarding == Forwarding::Nat { SERVICE_F_NAT } else { 0 };
    cfg.hash_key.hash_fields() | nat
}

/// The BACKENDS entry of a backend: UP while it is healthy (draining ones included, so their
/// sessions go on).
pub(super) fn backend_entry(b: &BackendState) -> Backend {
    let (addr, family) = ip_raw(b.addr.ip());
    Backend {
        addr,
        port: port_raw(b.addr.port()),
        family,
        flags: if b.up { BACKEND_F_UP } else { 0 },
        generation: b.generation,
    }
}

/// The (backend endpoint, VIP) pairs whose replies the data plane must rewrite: every backend
/// of a NAT service, draining ones included (their flows go on).
fn nat_replies(svc: &ServiceState) -> Vec<(Endpoint, NatVip)> {
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

/// Makes `next` the live state of its service, whose live state is `prev` (None: the service
/// is not in SERVICES yet). In this order:
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
pub(super) fn publish(
    dp: &mut Dataplane,
    prev: Option<&ServiceState>,
    next: &mut ServiceState,
) -> Result<(), DataplaneError> {
    let had = |id: u32| prev.is_some_and(|p| p.backends.iter().any(|b| b.id == id));
    for b in next.backends.iter().filter(|b| !had(b.id)) {
        dp.reset_backend_counters(b.id)?;
        dp.set_backend(b.id, &backend_entry(b))?;
    }
    let (old_replies, new_replies) = (prev.map(nat_replies).unwrap_or_default(), nat_replies(next));
    for (backend, vip) in new_replies.iter().filter(|r| !old_replies.contains(r)) {
        dp.add_nat_reply(backend, *vip)?;
    }

    let table = build_table(next);
    let listed = in_service_ids(next);
    let mut info = ServiceInfo {
        flags: service_flags(&next.config),
        table_size: table.len() as u32,
        ..next.info
    };
    let (table_changed, list_changed) = match prev {
        None => (true, true),
        Some(p) => (table != build_table(p), listed != in_service_ids(p)),
    };
    if table_changed {
        if let Some(p) = prev {
            info.lookup_bank = 1 - p.info.lookup_bank;
        }
        dp.write_lookup(info.id, info.lookup_bank, &table)?;
    }
    if list_changed {
        if let Some(p) = prev {
            info.in_service_bank = 1 - p.info.in_service_bank;
        }
        dp.write_in_service(info.id, info.in_service_bank, &listed)?;
        info.in_service_count = listed.len() as u32;
    }
    if prev.is_none() {
        dp.reset_service_counters(info.id)?;
    }
    if prev.map(|p| p.info) != Some(info) {
        dp.set_service(&next.key, &info)?;
    }
    next.info = info;

    if let Some(p) = prev {
        let kept = |id: u32| next.backends.iter().any(|b| b.id == id);
        for b in p.backends.iter().filter(|b| !kept(b.id)) {
            dp.set_backend(b.id, &Backend { flags: 0, ..backend_entry(b) })?;
        }
    }
    for (backend, vip) in old_replies.iter().filter(|r| !new_replies.contains(r)) {
        dp.remove_nat_reply(backend, *vip)?;
    }
    Ok(())
}

/// Takes a service out of SERVICES (packets to it pass from now on), then drops the UP flag of
/// each of its backends and their NAT reply entries. The caller frees the ids.
pub(super) fn withdraw(dp: &mut Dataplane, svc: &ServiceState) -> Result<(), DataplaneError> {
    dp.remove_service(&svc.key)?;
    for b in &svc.backends {
        dp.set_backend(b.id, &Backend { flags: 0, ..backend_entry(b) })?;
    }
    for (backend, vip) in nat_replies(svc) {
        dp.remove_nat_reply(&backend, vip)?;
    }
    Ok(())
}
