//! Step 6: send the packet on. NAT rewrites an endpoint (address + port) with incremental
//! checksum updates; both modes then take next hop MACs and egress interface from the kernel's
//! FIB (bpf_fib_lookup) and leave by XDP_TX (same interface) or the EGRESS devmap (another one).

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::generated::bpf_fib_lookup as fib_lookup,
    programs::XdpContext,
};
use lb_common::{
    Backend, FAMILY_V4, Outcome, PROTO_UDP, SERVICE_F_NAT, ServiceInfo, csum::CsumUpdate,
};
use network_types::eth::EthHdr;

use crate::{
    maps::EGRESS,
    packet::{ptr_at, raw16, raw32},
    parse::Packet,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Src,
    Dst,
}

#[inline(always)]
pub fn to_backend(ctx: &XdpContext, pkt: &mut Packet, svc: &ServiceInfo, backend: &Backend) -> Outcome {
    if svc.flags & SERVICE_F_NAT != 0 {
        if rewrite(ctx, pkt, Endpoint::Dst, &backend.addr, backend.port).is_err() {
            return Outcome::PassMalformed;
        }
        return route(ctx, pkt, &pkt.flow.dst_addr, Outcome::TxToBackend, Outcome::RedirectToBackend);
    }
    // DSR: the IP packet stays as it is; only the frame is addressed to the backend.
    route(ctx, pkt, &backend.addr, Outcome::TxToBackend, Outcome::RedirectToBackend)
}

/// Replaces one endpoint's address and port, fixing the IPv4 header checksum and the TCP/UDP
/// checksum (whose pseudo header covers both). Keeps `pkt.flow` in step with the frame.
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, pkt: &mut Packet, end: Endpoint, addr: &[u32; 4], port: u16) -> Result<(), ()> {
    let v4 = pkt.flow.family == FAMILY_V4;
    let udp = pkt.flow.proto == PROTO_UDP;
    let (addr_off, port_off) = match (end, v4) {
        (Endpoint::Src, true) => (12, 0),
        (Endpoint::Dst, true) => (16, 2),
        (Endpoint::Src, false) => (8, 0),
        (Endpoint::Dst, false) => (24, 2),
    };
    let l4_check: *mut [u8; 2] = ptr_at(ctx, pkt.l4 + if udp { 6 } else { 16 }).ok_or(())?;
    let port_ptr: *mut [u8; 2] = ptr_at(ctx, pkt.l4 + port_off).ok_or(())?;
    let old_addr = if end == Endpoint::Src { pkt.flow.src_addr } else { pkt.flow.dst_addr };
    let old_port = raw16(unsafe { *port_ptr });

    if v4 {
        let ip_check: *mut [u8; 2] = ptr_at(ctx, pkt.l3 + 10).ok_or(())?;
        let a: *mut [u8; 4] = ptr_at(ctx, pkt.l3 + addr_off).ok_or(())?;
        unsafe {
            let mut c = CsumUpdate::new(raw16(*ip_check));
            c.replace_u32(raw32(*a), addr[0]);
            *ip_check = c.finish().to_ne_bytes();
            *a = addr[0].to_ne_bytes();
        }
    } else {
        let a: *mut [[u8; 4]; 4] = ptr_at(ctx, pkt.l3 + addr_off).ok_or(())?;
        unsafe {
            (*a)[0] = addr[0].to_ne_bytes();
            (*a)[1] = addr[1].to_ne_bytes();
            (*a)[2] = addr[2].to_ne_bytes();
            (*a)[3] = addr[3].to_ne_bytes();
        }
    }
    unsafe { *port_ptr = port.to_ne_bytes() };

    let old_check = raw16(unsafe { *l4_check });
    // An IPv4 UDP checksum of zero means "none sent": leave it so.
    if !(udp && v4 && old_check == 0) {
        let mut c = CsumUpdate::new(old_check);
        c.replace_addr(&old_addr, addr);
        c.replace_u16(old_port, port);
        let check = if udp { c.finish_udp() } else { c.finish() };
        unsafe { *l4_check = check.to_ne_bytes() };
    }

    if end == Endpoint::Src {
        pkt.flow.src_addr = *addr;
        pkt.flow.src_port = port;
    } else {
        pkt.flow.dst_addr = *addr;
        pkt.flow.dst_port = port;
    }
    Ok(())
}

/// Addresses the frame to the next hop towards `next_addr` and picks the way out.
#[inline(always)]
pub fn route(ctx: &XdpContext, pkt: &Packet, next_addr: &[u32; 4], tx: Outcome, redirect: Outcome) -> Outcome {
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    p.l4_protocol = pkt.flow.proto;
    p.sport = pkt.flow.src_port;
    p.dport = pkt.flow.dst_port;
    p.__bindgen_anon_1.tot_len = (pkt.len as usize - pkt.l3) as u16;
    p.ifindex = ingress;
    if pkt.flow.family == FAMILY_V4 {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = pkt.flow.src_addr[0];
        p.__bindgen_anon_4.ipv4_dst = next_addr[0];
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_3.ipv6_src = pkt.flow.src_addr;
        p.__bindgen_anon_4.ipv6_dst = *next_addr;
    }
    let ret = unsafe {
        fib_lookup(
            ctx.ctx as *mut _,
            &mut p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if ret != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return if ret == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
            Outcome::DropNoNeighbour
        } else {
            Outcome::DropFibFailed
        };
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Outcome::PassMalformed;
    };
    unsafe {
        (*eth).dst_addr = p.dmac;
        (*eth).src_addr = p.smac;
    }
    if p.ifindex == ingress {
        return tx;
    }
    match EGRESS.redirect(p.ifindex, 0) {
        Ok(_) => redirect,
        Err(_) => Outcome::DropNoEgress,
    }
}
