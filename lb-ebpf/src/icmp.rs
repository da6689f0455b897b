//! ICMP errors about a service's flows (destination unreachable, "fragmentation needed",
//! ICMPv6 packet too big), so path-MTU discovery works through the balancer. An error is sent
//! to the source of the packet it quotes; reversed, the quote names a flow (lb_common::icmp):
//!
//! - to a VIP, about a packet of a flow's reply direction (VIP:port -> client): the reversed
//!   quote is the client's flow, and the error goes to that flow's backend: its session record,
//!   else the service's table. DSR: MACs only (the backend holds the VIP). NAT: the backend
//!   must recognise the quote as a packet it sent, so the outer destination and the quoted
//!   source become the backend's address and port again.
//! - NAT only: to a client, about a packet we forwarded to a backend (client -> backend:port,
//!   from a router on the backends' side): the reversed quote is a reply of the flow, found as
//!   the reply path finds it (reply.rs), and the quoted destination becomes VIP:port again, so
//!   the client recognises its own packet.
//!
//! The quoted IP and transport checksums and the ICMP checksum are updated incrementally (a
//! quote is often cut short, so nothing is summed over it whole). An ICMP error never writes a
//! session record, refreshes or confirms one, or takes a quota token. Echo requests and other
//! ICMP are passed to the host (README: ICMP).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    FAMILY_V4, FlowKey, Outcome, PROTO_TCP, PROTO_UDP, csum::CsumUpdate,
    icmp::{ICMP_HEADER_LEN, QUOTED_L4_MIN, flow_of_quote, is_forwarded_error},
};

use crate::{
    forward::{self, Side},
    packet,
    packet::{load16, load32, ptr_at, store16, store32},
    parse::{Packet, wire16, words},
    reply, select, service,
    session::{self, Assignment, Flow},
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
    /// The quoted packet reversed: a client's flow (client -> VIP), or a NAT reply's (backend
    /// -> client).
    flow: FlowKey,
}

#[inline(always)]
pub fn forward(ctx: &XdpContext, outer: &Packet, ip_end: usize) -> Outcome {
    let quote = match quoted_packet(ctx, outer, ip_end) {
        Ok(quote) => quote,
        Err(outcome) => return outcome,
    };
    // Only an error sent to the quoted packet's source is about a packet we sent or forwarded
    // (and it is rewritten as addressed there).
    if outer.flow.dst_addr != quote.flow.dst_addr {
        return Outcome::PassIcmpError;
    }
    if service::may_be_service(&quote.flow) {
        let flow = Flow::new(&quote.flow);
        if let Some(to) = backend_of(&flow) {
            return to_backend(ctx, outer, &quote, &to);
        }
    }
    to_client(ctx, outer, &quote)
}

/// The backend of a client's flow: its record's, else the table's choice (no quota asked).
#[inline(always)]
fn backend_of(flow: &Flow) -> Option<Assignment> {
    if let Some(to) = session::peek(flow) {
        return Some(to);
    }
    select::table_choice(flow, &service::lookup(flow.key)?)
}

/// Sends an error about a reply of a client's flow to the flow's backend `to`.
#[inline(always)]
fn to_backend(ctx: &XdpContext, outer: &Packet, quote: &Quote, to: &Assignment) -> Outcome {
    let hop = match forward::backend_hop(ctx, outer, to.backend_id, &to.backend, packet::now_ns()) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxIcmpToBackend, Outcome::RedirectIcmpToBackend);
    if !outcome.is_forwarded() {
        return outcome;
    }
    let vip = &quote.flow.dst_addr;
    let backend = &to.backend;
    if to.nat && rewrite(ctx, outer, quote, Side::Src, vip, &backend.addr, backend.port).is_err() {
        return Outcome::PassMalformed;
    }
    if forward::address_frame(ctx, &hop).is_err() {
        return Outcome::PassMalformed;
    }
    stats::count_traffic(to.service_id, to.backend_id, outer.len, false);
    outcome
}

/// Sends an error about a packet we forwarded to a NAT backend on to its client, if the
/// client's record says the packet was one of its flow's.
#[inline(always)]
fn to_client(ctx: &XdpContext, outer: &Packet, quote: &Quote) -> Outcome {
    let Some(recorded) = reply::recorded_flow(&quote.flow) else {
        return Outcome::PassIcmpError;
    };
    let vip = recorded.vip;
    let hop = match forward::client_hop(ctx, outer, &vip, packet::now_ns()) {
        Ok(hop) => hop,
        Err(outcome) => return outcome,
    };
    let outcome = forward::way_out(ctx, &hop, Outcome::TxIcmpToClient, Outcome::RedirectIcmpToClient);
    if !outcome.is_forwarded() {
        return outcome;
    }
    let backend_addr = &quote.flow.src_addr;
    if rewrite(ctx, outer, quote, Side::Dst, backend_addr, &vip.addr, vip.port).is_err()
        || forward::address_frame(ctx, &hop).is_err()
    {
        return Outcome::PassMalformed;
    }
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

/// Rewrites one end (`side`) of the quoted packet from address `old` to `addr`:`port`, with
/// the quoted IPv4 header checksum and the quoted transport checksum; for the quoted source
/// (an error going to a NAT backend) the outer destination too, which was that same address.
/// Every changed field counts in the ICMP checksum (ICMPv6: its pseudo header as well).
#[inline(always)]
fn rewrite(ctx: &XdpContext, outer: &Packet, quote: &Quote, side: Side, old: &[u32; 4], addr: &[u32; 4], port: u16) -> Result<(), ()> {
    let v4 = outer.flow.family == FAMILY_V4;
    let icmp: *mut u8 = ptr_at::<[u8; ICMP_HEADER_LEN]>(ctx, outer.l4).ok_or(())?.cast();
    let mut icmp_check = CsumUpdate::new(unsafe { load16(icmp, 2) });

    // The outer destination, when it is the quoted source (ICMPv4 does not sum it).
    if side == Side::Src {
        if v4 {
            let ip: *mut u8 = ptr_at::<[u8; IPV4_HEADER_LEN]>(ctx, outer.l3).ok_or(())?.cast();
            unsafe {
                let mut ip_check = CsumUpdate::new(load16(ip, 10));
                ip_check.replace_u32(old[0], addr[0]);
                store16(ip, 10, ip_check.finish());
                store32(ip, 16, addr[0]);
            }
        } else {
            let ip: *mut u8 = ptr_at::<[u8; IPV6_HEADER_LEN]>(ctx, outer.l3).ok_or(())?.cast();
            unsafe { store_addr(ip, 24, addr) };
            icmp_check.replace_addr(old, addr);
        }
    }

    // The quoted address (and the quoted IPv4 header's checksum over it).
    if v4 {
        let at = if side == Side::Src { 12 } else { 16 };
        let ip: *mut u8 = ptr_at::<[u8; IPV4_HEADER_LEN]>(ctx, quote.l3).ok_or(())?.cast();
        unsafe {
            let old_check = load16(ip, 10);
            let mut ip_check = CsumUpdate::new(old_check);
            ip_check.replace_u32(old[0], addr[0]);
            let new_check = ip_check.finish();
            store16(ip, 10, new_check);
            store32(ip, at, addr[0]);
            icmp_check.replace_u16(old_check, new_check);
        }
        icmp_check.replace_u32(old[0], addr[0]);
    } else {
        let at = if side == Side::Src { 8 } else { 24 };
        let ip: *mut u8 = ptr_at::<[u8; IPV6_HEADER_LEN]>(ctx, quote.l3).ok_or(())?.cast();
        unsafe { store_addr(ip, at, addr) };
        icmp_check.replace_addr(old, addr);
    }

    // The quoted port.
    let port_at = if side == Side::Src { 0 } else { 2 };
    let ports: *mut u8 = ptr_at::<[u8; QUOTED_L4_MIN]>(ctx, quote.l4).ok_or(())?.cast();
    let old_port = unsafe { load16(ports, port_at) };
    unsafe { store16(ports, port_at, port) };
    icmp_check.replace_u16(old_port, port);

    // The quoted transport checksum, where the quote holds it (UDP: always, in its first 8
    // bytes; TCP: in a quote of 18 bytes or more). Nothing checks it, but the receiver gets
    // back the header that was sent. Its own bounds check: the verifier must see one for the
    // very pointer that is read.
    let udp = quote.flow.proto == PROTO_UDP;
    let check_at = quote.l4 + if udp { UDP_CHECK_OFFSET } else { TCP_CHECK_OFFSET };
    if check_at + 2 <= quote.end {
        let check: *mut u8 = ptr_at::<[u8; 2]>(ctx, check_at).ok_or(())?.cast();
        let old_check = unsafe { load16(check, 0) };
        // An IPv4 UDP checksum of zero means "none sent": it stays so.
        if !(udp && v4 && old_check == 0) {
            let mut c = CsumUpdate::new(old_check);
            if v4 {
                c.replace_u32(old[0], addr[0]);
            } else {
                c.replace_addr(old, addr);
            }
            c.replace_u16(old_port, port);
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
