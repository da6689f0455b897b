//! Step 6: send the packet on. The way out (next hop MACs, egress interface) comes from the
//! kernel's FIB (bpf_fib_lookup); the answer is cached per CPU for ROUTE_CACHE_NS, per backend
//! and per client address slot, as the FIB lookup costs more than the rest of the packet's path. Frames leave
//! by XDP_TX (same interface) or the EGRESS devmap (another one). NAT rewrites an endpoint
//! (address + port) with incremental checksum updates.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::generated::bpf_fib_lookup as fib_lookup,
    programs::XdpContext,
};
use lb_common::{
    Backend, CachedRoute, FAMILY_V4, NatVip, Outcome, PROTO_UDP, csum::CsumUpdate,
    reply_route_slot,
};
use network_types::eth::EthHdr;

/// How long this program trusts a cached route: lb_common's ROUTE_CACHE_NS, or, built with the
/// `upgrade-test` feature, half of it: a program that differs from the default build in code
/// alone (no map layout changes), which the upgrade test loads over a running default one.
#[cfg(not(feature = "upgrade-test"))]
const ROUTE_CACHE_NS: u64 = lb_common::ROUTE_CACHE_NS;
#[cfg(feature = "upgrade-test")]
const ROUTE_CACHE_NS: u64 = lb_common::ROUTE_CACHE_NS / 2;

use crate::{
    maps::{EGRESS, REPLY_ROUTES, ROUTES},
    packet::{load16, ptr_at, store16, store32},
    parse::Packet,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Where a frame goes next.
#[derive(Clone, Copy)]
pub struct Hop {
    pub egress: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// The hop towards a backend, from the per-CPU cache while it is fresh. Cached per backend, so
/// it assumes the route to a backend does not depend on the client (no source-based policy
/// routing towards backends).
#[inline(always)]
pub fn backend_hop(ctx: &XdpContext, pkt: &Packet, backend_id: u32, backend: &Backend, now_ns: u64) -> Result<Hop, Outcome> {
    let from = Source { addr: &pkt.flow.src_addr, port: pkt.flow.src_port };
    cached_hop(ctx, pkt, &from, ROUTES.get_ptr_mut(backend_id), &backend.addr, now_ns)
}

/// The hop towards the packet's destination (a client, for NAT replies) once it comes from
/// `vip`, asked before the frame is rewritten; from the per-CPU cache slot of the client's
/// address while it is fresh. Same assumption: the route to a client does not depend on which
/// VIP answers it.
#[inline(always)]
pub fn client_hop(ctx: &XdpContext, pkt: &Packet, vip: &NatVip, now_ns: u64) -> Result<Hop, Outcome> {
    let to = pkt.flow.dst_addr;
    let from = Source { addr: &vip.addr, port: vip.port };
    cached_hop(ctx, pkt, &from, REPLY_ROUTES.get_ptr_mut(reply_route_slot(&to)), &to, now_ns)
}

/// Where the packet comes from as it leaves (the FIB lookup's source address and port).
pub struct Source<'a> {
    pub addr: &'a [u32; 4],
    pub port: u16,
}

/// The hop towards `to`: from `cached` if it is fresh and for the same address, family and
/// ingress; else from the FIB, remembered in `cached` for ROUTE_CACHE_NS.
#[inline(always)]
fn cached_hop(
    ctx: &XdpContext,
    pkt: &Packet,
    from: &Source,
    cached: Option<*mut CachedRoute>,
    to: &[u32; 4],
    now: u64,
) -> Result<Hop, Outcome> {
    let ingress = ingress(ctx);
    if let Some(c) = cached {
        let c = unsafe { &*c };
        if c.expires_ns > now && c.ingress == ingress && c.to == *to && c.family == pkt.flow.family {
            return Ok(Hop { egress: c.egress, dst_mac: c.dst_mac, src_mac: c.src_mac });
        }
    }
    let hop = fib_hop(ctx, pkt, from, to)?;
    if let Some(c) = cached {
        unsafe {
            *c = CachedRoute {
                expires_ns: now + ROUTE_CACHE_NS,
                ingress,
                egress: hop.egress,
                to: *to,
                dst_mac: hop.dst_mac,
                src_mac: hop.src_mac,
                family: pkt.flow.family,
                _pad: [0; 3],
            }
        };
    }
    Ok(hop)
}

/// Asks the FIB for the next hop towards `next_addr` for this packet as it leaves (source,
/// ports and protocol, so policy routing by them is honoured).
#[inline(always)]
fn fib_hop(ctx: &XdpContext, pkt: &Packet, from: &Source, next_addr: &[u32; 4]) -> Result<Hop, Outcome> {
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    p.l4_protocol = pkt.flow.proto;
    p.sport = from.port;
    p.dport = pkt.flow.dst_port;
    p.__bindgen_anon_1.tot_len = (pkt.len as usize - pkt.l3) as u16;
    p.ifindex = ingress(ctx);
    if pkt.flow.family == FAMILY_V4 {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = from.addr[0];
        p.__bindgen_anon_4.ipv4_dst = next_addr[0];
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_3.ipv6_src = *from.addr;
        p.__bindgen_anon_4.ipv6_dst = *next_addr;
    }
    let ret = unsafe {
        fib_lookup(ctx.ctx as *mut _, &mut p, core::mem::size_of::<bpf_fib_lookup>() as i32, 0)
    };
    if ret == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        Ok(Hop { egress: p.ifindex, dst_mac: p.dmac, src_mac: p.smac })
    } else if ret == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        Err(Outcome::DropNoNeighbour)
    } else {
        Err(Outcome::DropFibFailed)
    }
}

/// Picks the way out: `tx` back out of the ingress interface, else `redirect` through EGRESS.
/// Decided before the frame is touched, so an unforwardable packet leaves no trace.
#[inline(always)]
pub fn way_out(ctx: &XdpContext, hop: &Hop, tx: Outcome, redirect: Outcome) -> Outcome {
    if hop.egress == ingress(ctx) {
        return tx;
    }
    match EGRESS.redirect(hop.egress, 0) {
        Ok(_) => redirect,
        Err(_) => Outcome::DropNoEgress,
    }
}

/// Addresses the frame to the hop.
#[inline(always)]
pub fn address_frame(ctx: &XdpContext, hop: &Hop) -> Result<(), ()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(())?;
    unsafe {
        (*eth).dst_addr = hop.dst_mac;
        (*eth).src_addr = hop.src_mac;
    }
    Ok(())
}

/// Replaces one endpoint's address and port, fixing the IPv4 header checksum and the TCP/UDP
/// checksum (whose pseudo header covers both). Keeps `pkt.flow` in step with the frame.
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, pkt: &mut Packet, end: Side, addr: &[u32; 4], port: u16) -> Result<(), ()> {
    let v4 = pkt.flow.family == FAMILY_V4;
    let udp = pkt.flow.proto == PROTO_UDP;
    let (addr_off, port_off) = match (end, v4) {
        (Side::Src, true) => (12, 0),
        (Side::Dst, true) => (16, 2),
        (Side::Src, false) => (8, 0),
        (Side::Dst, false) => (24, 2),
    };
    // One bounds check covers both fields: two separate checks get merged by LLVM into one the
    // verifier cannot apply to the other pointer.
    let l4: *mut u8 = if udp {
        ptr_at::<[u8; 8]>(ctx, pkt.l4).ok_or(())?.cast()
    } else {
        ptr_at::<[u8; 18]>(ctx, pkt.l4).ok_or(())?.cast()
    };
    let l4_check_off = if udp { 6 } else { 16 };
    let old_addr = if end == Side::Src { pkt.flow.src_addr } else { pkt.flow.dst_addr };
    let old_port = unsafe { load16(l4, port_off) };
    let old_check = unsafe { load16(l4, l4_check_off) };
    // The L4 checksum's pseudo header covers the address: for IPv4 one word of it.
    let mut c = CsumUpdate::new(old_check);
    if v4 {
        let ip: *mut u8 = ptr_at::<[u8; 20]>(ctx, pkt.l3).ok_or(())?.cast();
        unsafe {
            let mut ip_check = CsumUpdate::new(load16(ip, 10));
            ip_check.replace_u32(old_addr[0], addr[0]);
            store16(ip, 10, ip_check.finish());
            store32(ip, addr_off, addr[0]);
        }
        c.replace_u32(old_addr[0], addr[0]);
    } else {
        let ip: *mut u8 = ptr_at::<[u8; 40]>(ctx, pkt.l3).ok_or(())?.cast();
        unsafe {
            store32(ip, addr_off, addr[0]);
            store32(ip, addr_off + 4, addr[1]);
            store32(ip, addr_off + 8, addr[2]);
            store32(ip, addr_off + 12, addr[3]);
        }
        c.replace_addr(&old_addr, addr);
    }
    unsafe { store16(l4, port_off, port) };
    // An IPv4 UDP checksum of zero means "none sent": leave it so.
    if !(udp && v4 && old_check == 0) {
        c.replace_u16(old_port, port);
        let check = if udp { c.finish_udp() } else { c.finish() };
        unsafe { store16(l4, l4_check_off, check) };
    }

    if end == Side::Src {
        pkt.flow.src_addr = *addr;
        pkt.flow.src_port = port;
    } else {
        pkt.flow.dst_addr = *addr;
        pkt.flow.dst_port = port;
    }
    Ok(())
}

#[inline(always)]
fn ingress(ctx: &XdpContext) -> u32 {
    unsafe { (*ctx.ctx).ingress_ifindex }
}
