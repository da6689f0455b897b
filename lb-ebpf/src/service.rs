//! Step 2: is the packet addressed to a configured service (VIP, port, protocol)?

use lb_common::{FlowKey, ServiceBanks, ServiceInfo, ServiceKey};

use crate::{
    filter,
    maps::{SERVICE_BANKS, SERVICE_FILTER, SERVICES},
};

/// The bitmap test: false proves the flow is addressed to no service.
#[inline(always)]
pub fn may_be_service(flow: &FlowKey) -> bool {
    filter::marked(&SERVICE_FILTER, &flow.dst_addr, flow.dst_port, flow.proto)
}

/// The service the flow is addressed to (call after `may_be_service`): its SERVICES entry and
/// its live banks, copied so the rest of the packet's path sees one consistent version even if
/// userspace flips banks meanwhile.
#[inline(always)]
pub fn lookup(flow: &FlowKey) -> Option<ServiceInfo> {
    let key = ServiceKey {
        addr: flow.dst_addr,
        port: flow.dst_port,
        proto: flow.proto,
        family: flow.family,
    };
    let entry = *unsafe { SERVICES.get(&key) }?;
    Some(ServiceInfo::new(entry, banks(entry.id)?))
}

/// The live banks of table id `id` (a service's, or an overflow pool's).
#[inline(always)]
pub fn banks(id: u32) -> Option<ServiceBanks> {
    let word = SERVICE_BANKS.get_ptr(id)?;
    // One 8-byte load: userspace replaces the word with one store.
    Some(ServiceBanks::from_word(unsafe { core::ptr::read_volatile(word) }))
}
