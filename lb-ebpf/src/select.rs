//! Step 4-5: pick a backend for a new flow. The flow hash selects a slot of the service's server
//! index table; if that backend is down, a second choice among the in-service list, derived from
//! the same hash, so every CPU and `lb explain` make the same choice.

use lb_common::{
    Backend, Event, HASH_FIELDS_MASK, HASH_FIVE_TUPLE, ServiceInfo, flow_hash, in_service_index,
    lookup_index, second_choice, table_slot,
};

use crate::{
    maps::{IN_SERVICE, LOOKUP},
    session::{Assignment, Flow, usable_backend},
    stats,
};

#[inline(always)]
pub fn choose(flow: &Flow, svc: &ServiceInfo) -> Option<Assignment> {
    let (id, backend) = choose_backend(flow, svc)?;
    Some(Assignment::new(svc, id, backend))
}

#[inline(always)]
fn choose_backend(flow: &Flow, svc: &ServiceInfo) -> Option<(u32, Backend)> {
    // The session hash is the five-tuple flow hash: a service hashing the five-tuple reuses it.
    let fields = svc.flags & HASH_FIELDS_MASK;
    let hash = if fields == HASH_FIVE_TUPLE { flow.hash } else { flow_hash(flow.key, fields) };
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
    let id = *IN_SERVICE.get(in_service_index(svc.id, svc.in_service_bank, i))?;
    // The list holds only up backends, but a health change may race with this packet.
    usable_backend(id).map(|b| (id, b))
}
