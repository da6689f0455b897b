//! Step 6: per-CPU counters. No locks, no shared cache lines between CPUs.

use lb_common::{Event, Outcome, TrafficCounters};

use crate::maps::{BACKEND_STATS, PACKET_EVENTS, PACKET_OUTCOMES, SERVICE_STATS};

#[inline(always)]
pub fn count_outcome(outcome: Outcome) {
    if let Some(c) = PACKET_OUTCOMES.get_ptr_mut(outcome as u32) {
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count_event(event: Event) {
    if let Some(c) = PACKET_EVENTS.get_ptr_mut(event as u32) {
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count_traffic(service_id: u32, backend_id: u32, bytes: u64, new_session: bool) {
    if let Some(c) = SERVICE_STATS.get_ptr_mut(service_id) {
        add(unsafe { &mut *c }, bytes, new_session);
    }
    if let Some(c) = BACKEND_STATS.get_ptr_mut(backend_id) {
        add(unsafe { &mut *c }, bytes, new_session);
    }
}

#[inline(always)]
fn add(c: &mut TrafficCounters, bytes: u64, new_session: bool) {
    c.packets += 1;
    c.bytes += bytes;
    c.new_sessions += new_session as u64;
}
