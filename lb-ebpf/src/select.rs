//! Step 4-5: pick a backend for a new flow. The flow hash selects a slot of the service's server
//! index table; if that backend is down, a second choice among the in-service list, derived from
//! the same hash, so every CPU and `lb explain` make the same choice. A choice at its quota
//! (quota.rs) spills the flow to the service's overflow pool, if open: the pool's own table
//! (spread and sticky like the primary one), then the rest of the pool; when every choice is
//! full, the flow goes to its first choice all the same.

use lb_common::{
    Backend, Event, HASH_FIELDS_MASK, HASH_FIVE_TUPLE, SERVICE_F_OVERFLOW, ServiceEntry, ServiceInfo, flow_hash,
    in_service_index, lookup_index, second_choice, table_slot,
};

use crate::{
    maps::{IN_SERVICE, LOOKUP},
    quota, service,
    session::{Assignment, Flow, usable_backend},
    stats,
};

/// Overflow backends tried after the pool table's choice, before giving up: a bound for the
/// verifier, and for the cost of a flow nobody has room for.
const MAX_SPILL_PROBES: u32 = 16;

#[inline(always)]
pub fn choose(flow: &Flow, svc: &ServiceInfo, now_ns: u64) -> Option<Assignment> {
    let hash = table_hash(flow, svc);
    let first = choose_backend(hash, svc);
    if let Some((id, backend)) = first {
        if quota::admit(id, &backend, now_ns) {
            return Some(Assignment::new(svc, id, backend));
        }
    }
    // At its quota (or no primary backend in service at all): the overflow pool, if open.
    if svc.flags & SERVICE_F_OVERFLOW != 0 {
        if let Some((id, backend)) = spill(hash, svc, now_ns) {
            stats::count_event(Event::SpilledToOverflow);
            return Some(Assignment::new(svc, id, backend));
        }
    }
    let (id, backend) = first?;
    stats::count_event(Event::EveryChoiceFull);
    Some(Assignment::new(svc, id, backend))
}

/// Where a new flow of the service would go by its table alone (the slot's backend, else the
/// second choice), without asking its quota: for packets that only follow a flow (an ICMP
/// error about it), never opening one, so they take no quota token.
#[inline(always)]
pub fn table_choice(flow: &Flow, svc: &ServiceInfo) -> Option<Assignment> {
    let (id, backend) = choose_backend(table_hash(flow, svc), svc)?;
    Some(Assignment { new: false, ..Assignment::new(svc, id, backend) })
}

/// The hash that picks the flow's table slot: over the fields the service hashes.
#[inline(always)]
fn table_hash(flow: &Flow, svc: &ServiceInfo) -> u32 {
    // The session hash's low half is the five-tuple flow hash: a service hashing the five-tuple
    // reuses it.
    let fields = svc.flags & HASH_FIELDS_MASK;
    if fields == HASH_FIVE_TUPLE { flow.hash as u32 } else { flow_hash(flow.key, fields) }
}

/// The service's table choice for `hash`, or its second choice if that backend is down.
#[inline(always)]
fn choose_backend(hash: u32, svc: &ServiceInfo) -> Option<(u32, Backend)> {
    if svc.table_size != 0 {
        let slot = table_slot(hash, svc.table_size);
        let id = *LOOKUP.get(lookup_index(svc.id, svc.lookup_bank, slot))?;
        if let Some(backend) = usable_backend(id) {
            return Some((id, backend));
        }
    }
    if svc.in_service_count == 0 {
        return None;
    }
    stats::count_event(Event::SecondChoice);
    let i = second_choice(hash, svc.in_service_count);
    in_service(svc, i)
}

/// Entry `i` of the service's live in-service list, if it is up.
#[inline(always)]
fn in_service(svc: &ServiceInfo, i: u32) -> Option<(u32, Backend)> {
    let id = *IN_SERVICE.get(in_service_index(svc.id, svc.in_service_bank, i))?;
    // The list holds only up backends, but a health change may race with this packet.
    usable_backend(id).map(|b| (id, b))
}

/// An overflow backend with room for a new flow: the pool table's choice, else the next ones
/// of the pool's in-service list.
#[inline(always)]
fn spill(hash: u32, svc: &ServiceInfo, now_ns: u64) -> Option<(u32, Backend)> {
    let entry = ServiceEntry { id: svc.overflow_id, flags: svc.flags, overflow_id: 0 };
    let pool = ServiceInfo::new(entry, service::banks(svc.overflow_id)?);
    // A closed pool has an empty in-service list.
    if pool.in_service_count == 0 {
        return None;
    }
    let (id, backend) = choose_backend(hash, &pool)?;
    if quota::admit(id, &backend, now_ns) {
        return Some((id, backend));
    }
    let start = second_choice(hash, pool.in_service_count);
    for k in 1..=MAX_SPILL_PROBES {
        if k >= pool.in_service_count {
            break;
        }
        let i = (start + k) % pool.in_service_count;
        if let Some((id, backend)) = in_service(&pool, i) {
            if quota::admit(id, &backend, now_ns) {
                return Some((id, backend));
            }
        }
    }
    None
}
