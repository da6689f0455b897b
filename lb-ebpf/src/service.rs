//! Step 2: is the packet addressed to a configured service (VIP, port, protocol)?

use lb_common::{FlowKey, ServiceInfo, ServiceKey, filter_slot, service_filter_bit};

use crate::maps::{SERVICE_FILTER, SERVICES};

/// The service the flow is addressed to, copied so the rest of the packet's path sees one
/// consistent version even if userspace flips banks meanwhile.
#[inline(always)]
pub fn lookup(flow: &FlowKey) -> Option<ServiceInfo> {
    if !may_be_service(flow) {
        return None;
    }
    let key = ServiceKey {
        addr: flow.dst_addr,
        port: flow.dst_port,
        proto: flow.proto,
        family: flow.family,
    };
    unsafe { SERVICES.get(&key) }.copied()
}

/// The bitmap test that spares non-service traffic the hash lookup.
#[inline(always)]
fn may_be_service(flow: &FlowKey) -> bool {
    let (word, bit) = service_filter_bit(filter_slot(&flow.dst_addr, flow.dst_port, flow.proto));
    SERVICE_FILTER.get(word).is_some_and(|w| w & bit != 0)
}
