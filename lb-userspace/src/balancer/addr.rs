//! Addresses and ports in the raw form the maps use.

use std::net::{IpAddr, SocketAddr};

use lb_common::{FAMILY_V4, FAMILY_V6, FlowKey, ServiceKey, addr_v4, addr_v6, port_raw};

use crate::config::ServiceConfig;

/// Raw address words and family tag of an IP address.
pub fn ip_raw(ip: IpAddr) -> ([u32; 4], u8) {
    match ip {
        IpAddr::V4(a) => (addr_v4(a.octets()), FAMILY_V4),
        IpAddr::V6(a) => (addr_v6(a.octets()), FAMILY_V6),
    }
}

/// The IP address a key's raw address words and family tag stand for.
pub fn ip_of(key: &ServiceKey) -> IpAddr {
    let bytes: Vec<u8> = key.addr.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match key.family {
        FAMILY_V6 => IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")),
        _ => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]),
    }
}

pub fn service_key(svc: &ServiceConfig) -> ServiceKey {
    let (addr, family) = ip_raw(svc.vip);
    ServiceKey { addr, port: port_raw(svc.port), proto: svc.protocol.number(), family }
}

/// The flow key the XDP program builds for a packet from `client` to `service`.
pub fn flow_key(client: SocketAddr, service: SocketAddr, proto: u8) -> FlowKey {
    let (src_addr, family) = ip_raw(client.ip());
    let (dst_addr, _) = ip_raw(service.ip());
    FlowKey {
        src_addr,
        dst_addr,
        src_port: port_raw(client.port()),
        dst_port: port_raw(service.port()),
        proto,
        family,
        _pad: [0; 2],
    }
}
