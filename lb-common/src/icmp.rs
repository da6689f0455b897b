//! ICMP errors about a service's flows: which messages the balancer forwards, and which flow a
//! message concerns. The XDP program (lb-ebpf/src/icmp.rs) applies these; tests predict them.
//!
//! A router that cannot deliver a packet of the reply direction (VIP:port -> client: sent by the
//! backend itself in DSR, rewritten by us in NAT) sends its error to the packet's source, the
//! VIP, and quotes the packet's headers. Reversed, the quote is the client's flow (client ->
//! VIP), whose backend must hear about it: path-MTU discovery happens there.

use crate::layout::{FAMILY_V4, FlowKey};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// ICMP header bytes before the quoted packet (type, code, checksum, 4 bytes of type data).
pub const ICMP_HEADER_LEN: usize = 8;
/// Bytes of the quoted packet's transport header the balancer needs (the ports), and all an
/// ICMPv4 error is sure to quote (RFC 792: IP header + 64 bits).
pub const QUOTED_L4_MIN: usize = 8;

const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMPV6_DEST_UNREACHABLE: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;

/// Whether an ICMP (`family` v4) or ICMPv6 message of this type is an error the backend of the
/// flow it quotes must see: destination unreachable (every code, "fragmentation needed"
/// among them) and ICMPv6 packet too big. Anything else (echo, time exceeded, redirects ...)
/// is the host's business.
#[inline(always)]
pub const fn is_forwarded_error(family: u8, icmp_type: u8) -> bool {
    if family == FAMILY_V4 {
        icmp_type == ICMP_DEST_UNREACHABLE
    } else {
        icmp_type == ICMPV6_DEST_UNREACHABLE || icmp_type == ICMPV6_PACKET_TOO_BIG
    }
}

/// The client's flow (client -> VIP) of a quoted packet (VIP:port -> client).
#[inline(always)]
pub const fn flow_of_quote(quoted: &FlowKey) -> FlowKey {
    FlowKey {
        src_addr: quoted.dst_addr,
        dst_addr: quoted.src_addr,
        src_port: quoted.dst_port,
        dst_port: quoted.src_port,
        proto: quoted.proto,
        family: quoted.family,
        _pad: [0; 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{FAMILY_V6, PROTO_TCP, addr_v4, port_raw};

    #[test]
    fn only_errors_that_concern_the_flow_are_forwarded() {
        // ICMPv4: destination unreachable (fragmentation needed is its code 4).
        assert!(is_forwarded_error(FAMILY_V4, 3));
        for other in [0, 5, 8, 11, 12] {
            assert!(!is_forwarded_error(FAMILY_V4, other), "icmp type {other}");
        }
        // ICMPv6: destination unreachable, packet too big.
        assert!(is_forwarded_error(FAMILY_V6, 1));
        assert!(is_forwarded_error(FAMILY_V6, 2));
        for other in [3, 4, 128, 129, 135] {
            assert!(!is_forwarded_error(FAMILY_V6, other), "icmpv6 type {other}");
        }
    }

    #[test]
    fn the_quote_reversed_is_the_clients_flow() {
        let quoted = FlowKey {
            src_addr: addr_v4([10, 0, 0, 1]),
            dst_addr: addr_v4([192, 0, 2, 7]),
            src_port: port_raw(80),
            dst_port: port_raw(40000),
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let flow = flow_of_quote(&quoted);
        assert_eq!((flow.src_addr, flow.src_port), (addr_v4([192, 0, 2, 7]), port_raw(40000)));
        assert_eq!((flow.dst_addr, flow.dst_port), (addr_v4([10, 0, 0, 1]), port_raw(80)));
        assert_eq!(flow_of_quote(&flow), quoted);
    }
}
