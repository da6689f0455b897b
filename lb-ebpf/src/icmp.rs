//! ICMP errors about a service's flows (destination unreachable, "fragmentation needed",
//! ICMPv6 packet too big) go to the backend that serves the flow, so path-MTU discovery works
//! through the balancer. The error is addressed to the VIP and quotes a packet of the flow's
//! reply direction (VIP:port -> client); reversed, the quote names the flow (lb_common::icmp),
//! and the flow its backend: its session record, else the service's table. An ICMP error never
//! writes a session record, refreshes or confirms one, or takes a quota token.
//!
//! DSR: MACs only, like the flow's packets (the backend holds the VIP). NAT: the backend must
//! recognise the quote as a packet it sent, so the outer destination and the quoted source
//! become the backend's address and port again; the quoted IP and transport checksums and the
//! ICMP checksum are updated incrementally (a quote is often cut short, so nothing is summed
//! over it whole). Echo requests and other ICMP are passed to the host (README: ICMP).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Backend, FAMILY_V4, FlowKey, Outcome, PROTO_TCP, PROTO_UDP, csum::CsumUpdate,
    icmp::{ICMP_HEADER_LEN, QUOTED_L4_MIN, flow_of_quote, is_forwarded_error},
};

use crate::{
    forward, packet,
    packet::{load16, load32, ptr_at, store16, store32},
    parse::{Packet, wire16, words},
    select, service,
    session::{self, Flow},
    stats,
};

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
/// Fragment offset of the IPv4 `frags` field, in wire order: a later fragment quotes no ports.
const IPV4_OFFSET: u16 = wire16(0x1FFF);
/// Where the transport checksums lie in their headers.
const UDP_CHECK_OFFSET: usize = 6;
const TCP_CHECK_OFFSET: usize = 16;

/// The packet an ICMP error quotes, and the flow it belongs to.
struct Quote {
    /// Offsets of the quoted IP header and transport header.
    l3: usize,
    l4: usize,
    /// Where the quote ends: the end of the outer IP packet.
    end: usize,
    /// The client's flow (client -> VIP): the quoted packet reversed.
    flow: FlowKey,
}

#[inline(always)]
pub fn forward(ctx: &XdpContext, outer: &Packet, ip_end: usize) -> Outcome {
    let quote = match quoted_packet(ctx, outer, ip_end) {
        Ok(quote) => quote,
        Err(outcome) => return outcome,
    };
    // Only an error sent to the quoted packet's source (the VIP) is about a packet we sent;
    // and it is rewritten as addressed to the VIP.
    if outer.flow.dst_addr != quote.flow.dst_addr || !service::may_be_service(&quote.flow) {
        return Outcome::PassIcmpError;
    }
    let flow = Flow::new(&quote.flow);
    let to = match session::peek(&flow) {
        Some(to) => to,
        None => {
            let Some(svc) = service::lookup(&quote.flow) else {
                return Outcome::PassIcmpError;
            };
            let Some(to) = select::table_choice(&flow, &svc) else {
                return Outcome::PassIcmpError;
            };
            to
        }
    };
    let now = packet::now_ns();
    let hop = match forward::backend_hop(ctx, outer, to.backend_id, &to.backend, now) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxIcmpToBackend, Outcome::RedirectIcmpToBackend);
    if !outcome.is_forwarded() {
        return outcome;
    }
    if to.nat && to_backend(ctx, outer, &quote, &to.backend).is_err() {
        return Outcome::PassMalformed;
    }
    if forward::address_frame(ctx, &hop).is_err() {
        return Outcome::PassMalformed;
    }
    stats::count_traffic(to.service_id, to.backend_id, outer.len, false);
    outcome
}

/// The TCP/UDP packet a forwarded kind of ICMP error quotes, with at least its ports.
#[inline(always)]
fn quoted_packet(ctx: &XdpContext, outer: &Packet, end: usize) -> Result<Quote, Outcome> {
    let v4 = outer.flow.family == FAMILY_V4;
    let icmp: *const [u8; ICMP_HEADER_LEN] = ptr_at(ctx, outer.l4).ok_or(Outcome::PassMalformed)?;
    if outer.l4 + ICMP_HEADER_LEN > end {
        return Err(Outcome::PassMalformed);
    }
    // Echo requests and everything else that is no error about a flow: the host's.
    if !is_forwarded_error(outer.flow.family, unsafe { (*icmp)[0] }) {
        return Err(Outcome::PassNotTcpUdp);
    }
    let l3 = outer.l4 + ICMP_HEADER_LEN;
    let mut quoted = FlowKey { family: outer.flow.family, ..FlowKey::default() };
    let l4 = if v4 {
        let ip: *const [u8; IPV4_HEADER_LEN] = ptr_at(ctx, l3).ok_or(Outcome::PassMalformed)?;
        let ip = ip as *const u8;
        let vihl = unsafe { *ip };
        let ihl_bytes = ((vihl & 0x0F) as usize) * 4;
        if vihl >> 4 != 4 || ihl_bytes < IPV4_HEADER_LEN {
            return Err(Outcome::PassMalformed);
        }
        quoted.proto = unsafe { *ip.add(9) };
        if unsafe { load16(ip, 6) } & IPV4_OFFSET != 0 {
            return Err(Outcome::PassIcmpError);
        }
        quoted.src_addr[0] = unsafe { load32(ip, 12) };
        quoted.dst_addr[0] = unsafe { load32(ip, 16) };
        l3 + ihl_bytes
    } else {
        let ip: *const [u8; IPV6_HEADER_LEN] = ptr_at(ctx, l3).ok_or(Outcome::PassMalformed)?;
        let ip = ip as *const u8;
        if unsafe { *ip } >> 4 != 6 {
            return Err(Outcome::PassMalformed);
        }
        quoted.proto = unsafe { *ip.add(6) };
        quoted.src_addr = unsafe { words(ip, 8) };
        quoted.dst_addr = unsafe { words(ip, 24) };
        l3 + IPV6_HEADER_LEN
    };
    // An error about an ICMP message, or about a packet behind IPv6 extension headers.
    if quoted.proto != PROTO_TCP && quoted.proto != PROTO_UDP {
        return Err(Outcome::PassIcmpError);
    }
    // The ports: all that RFC 792 promises of the quoted transport header, and all we need.
    let ports: *const [u8; QUOTED_L4_MIN] = ptr_at(ctx, l4).ok_or(Outcome::PassMalformed)?;
    if l4 + QUOTED_L4_MIN > end {
        return Err(Outcome::PassMalformed);
    }
    let ports = ports as *const u8;
    quoted.src_port = unsafe { load16(ports, 0) };
    quoted.dst_port = unsafe { load16(ports, 2) };
    Ok(Quote { l3, l4, end, flow: flow_of_quote(&quoted) })
}

/// NAT: makes the error one about the packet as the backend sent it (source `backend`, not the
/// VIP), addressed to the backend.
#[inline(always)]
fn to_backend(ctx: &XdpContext, outer: &Packet, quote: &Quote, backend: &Backend) -> Result<(), ()> {
    let v4 = outer.flow.family == FAMILY_V4;
    let vip = &quote.flow.dst_addr;
    let addr = &backend.addr;
    let icmp: *mut u8 = ptr_at::<[u8; ICMP_HEADER_LEN]>(ctx, outer.l4).ok_or(())?.cast();
    let mut icmp_check = CsumUpdate::new(unsafe { load16(icmp, 2) });

    // The outer destination. ICMPv6 sums a pseudo header with it; ICMPv4 does not.
    if v4 {
        let ip: *mut u8 = ptr_at::<[u8; IPV4_HEADER_LEN]>(ctx, outer.l3).ok_or(())?.cast();
        unsafe {
            let mut ip_check = CsumUpdate::new(load16(ip, 10));
            ip_check.replace_u32(vip[0], addr[0]);
            store16(ip, 10, ip_check.finish());
            store32(ip, 16, addr[0]);
        }
    } else {
        let ip: *mut u8 = ptr_at::<[u8; IPV6_HEADER_LEN]>(ctx, outer.l3).ok_or(())?.cast();
        unsafe { store_addr(ip, 24, addr) };
        icmp_check.replace_addr(vip, addr);
    }

    // The quoted source address (and the quoted IPv4 header's checksum over it). Every field
    // changed in the quote counts in the ICMP checksum.
    if v4 {
        let ip: *mut u8 = ptr_at::<[u8; IPV4_HEADER_LEN]>(ctx, quote.l3).ok_or(())?.cast();
        unsafe {
            let old_check = load16(ip, 10);
            let mut ip_check = CsumUpdate::new(old_check);
            ip_check.replace_u32(vip[0], addr[0]);
            let new_check = ip_check.finish();
            store16(ip, 10, new_check);
            store32(ip, 12, addr[0]);
            icmp_check.replace_u16(old_check, new_check);
        }
        icmp_check.replace_u32(vip[0], addr[0]);
    } else {
        let ip: *mut u8 = ptr_at::<[u8; IPV6_HEADER_LEN]>(ctx, quote.l3).ok_or(())?.cast();
        unsafe { store_addr(ip, 8, addr) };
        icmp_check.replace_addr(vip, addr);
    }

    // The quoted source port.
    let ports: *mut u8 = ptr_at::<[u8; QUOTED_L4_MIN]>(ctx, quote.l4).ok_or(())?.cast();
    let old_port = unsafe { load16(ports, 0) };
    unsafe { store16(ports, 0, backend.port) };
    icmp_check.replace_u16(old_port, backend.port);

    // The quoted transport checksum, where the quote holds it (UDP: always, in its first 8
    // bytes; TCP: in a quote of 18 bytes or more). Nothing checks it, but the backend gets
    // back the header it sent. Its own bounds check: the verifier must see one for the very
    // pointer that is read.
    let udp = quote.flow.proto == PROTO_UDP;
    let check_at = quote.l4 + if udp { UDP_CHECK_OFFSET } else { TCP_CHECK_OFFSET };
    if check_at + 2 <= quote.end {
        let check: *mut u8 = ptr_at::<[u8; 2]>(ctx, check_at).ok_or(())?.cast();
        let old_check = unsafe { load16(check, 0) };
        // An IPv4 UDP checksum of zero means "none sent": it stays so.
        if !(udp && v4 && old_check == 0) {
            let mut c = CsumUpdate::new(old_check);
            if v4 {
                c.replace_u32(vip[0], addr[0]);
            } else {
                c.replace_addr(vip, addr);
            }
            c.replace_u16(old_port, backend.port);
            let new_check = if udp { c.finish_udp() } else { c.finish() };
            unsafe { store16(check, 0, new_check) };
            icmp_check.replace_u16(old_check, new_check);
        }
    }
    unsafe { store16(icmp, 2, icmp_check.finish()) };
    Ok(())
}

/// Stores an IPv6 address (four raw words) at `offset` past `base`.
///
/// # Safety
/// The 16 bytes must lie inside a range already checked against data_end.
#[inline(always)]
unsafe fn store_addr(base: *mut u8, offset: usize, addr: &[u32; 4]) {
    unsafe {
        store32(base, offset, addr[0]);
        store32(base, offset + 4, addr[1]);
        store32(base, offset + 8, addr[2]);
        store32(base, offset + 12, addr[3]);
    }
}
