//! Step 1: parse Ethernet [802.1Q] -> IPv4 (IHL honoured) | IPv6 -> TCP | UDP into a flow key,
//! or ICMP | ICMPv6 for icmp.rs. Anything we do not fully understand is passed to the kernel
//! untouched, with the reason.

use aya_ebpf::programs::XdpContext;
use lb_common::{FAMILY_V4, FAMILY_V6, FlowKey, Outcome, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::packet::{load16, load32, ptr_at, raw16};

const ETH_P_IP: u16 = wire16(0x0800);
const ETH_P_IPV6: u16 = wire16(0x86DD);
const ETH_P_8021Q: u16 = wire16(0x8100);
const VLAN_TAG_LEN: usize = 4;
/// TCP flag bits (byte 13 of the header).
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// More-fragments flag and fragment offset of the IPv4 `frags` field, in wire order.
const IPV4_MF_OR_OFFSET: u16 = wire16(0x3FFF);

pub const fn wire16(host: u16) -> u16 {
    u16::from_ne_bytes(host.to_be_bytes())
}

/// What the frame carries.
pub enum Parsed {
    /// TCP or UDP: a packet of a flow.
    Flow(Packet),
    /// ICMP (in IPv4) or ICMPv6: `outer.flow` has the addresses and protocol, no ports.
    /// `ip_end`: the offset where the IP packet ends (any quoted packet ends there too).
    Icmp { outer: Packet, ip_end: usize },
}

/// A parsed TCP/UDP packet: its flow key and where its headers start (or an ICMP message's).
pub struct Packet {
    pub flow: FlowKey,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP/UDP (or ICMP) header.
    pub l4: usize,
    /// Frame length in bytes, for the traffic counters.
    pub len: u64,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
}

impl Packet {
    /// A TCP SYN without ACK: the first packet of a connection, so no session can be wanted.
    #[inline(always)]
    pub fn opens_connection(&self) -> bool {
        self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// A TCP SYN, with or without ACK: a packet opening a connection (a SYN-ACK from a server).
    #[inline(always)]
    pub fn carries_syn(&self) -> bool {
        self.tcp_flags & TCP_SYN != 0
    }

    /// A TCP FIN or RST: its sender is ending the connection.
    #[inline(always)]
    pub fn ends_connection(&self) -> bool {
        self.tcp_flags & (TCP_FIN | TCP_RST) != 0
    }
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Outcome> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Outcome::PassMalformed)?;
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3 = EthHdr::LEN;
    if ether_type == ETH_P_8021Q {
        // tag: TCI (2 bytes) then the inner EtherType.
        let tag: *const [u8; 4] = ptr_at(ctx, EthHdr::LEN).ok_or(Outcome::PassMalformed)?;
        ether_type = raw16(unsafe { [(*tag)[2], (*tag)[3]] });
        l3 += VLAN_TAG_LEN;
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    let mut flow = FlowKey::default();
    let (l4, ip_end) = if ether_type == ETH_P_IP {
        parse_ipv4(ctx, l3, &mut flow)?
    } else if ether_type == ETH_P_IPV6 {
        parse_ipv6(ctx, l3, &mut flow)?
    } else {
        return Err(Outcome::PassNotIp);
    };
    if flow.proto == PROTO_ICMP || flow.proto == PROTO_ICMPV6 {
        return Ok(Parsed::Icmp { outer: Packet { flow, l3, l4, len, tcp_flags: 0 }, ip_end });
    }
    let tcp_flags = parse_ports(ctx, l4, ip_end, &mut flow)?;
    Ok(Parsed::Flow(Packet { flow, l3, l4, len, tcp_flags }))
}

/// Returns the offsets of the L4 header and of the end of the IP packet (Ethernet padding may
/// follow it; nothing there is ever read as header).
#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3: usize, flow: &mut FlowKey) -> Result<(usize, usize), Outcome> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3).ok_or(Outcome::PassMalformed)?;
    let ip = unsafe { &*ip };
    let ihl_bytes = ((ip.vihl & 0x0F) as usize) * 4;
    if ip.vihl >> 4 != 4 || ihl_bytes < Ipv4Hdr::LEN {
        return Err(Outcome::PassMalformed);
    }
    let base = ip as *const Ipv4Hdr as *const u8;
    let total = u16::from_be(unsafe { load16(base, 2) }) as usize;
    if total < ihl_bytes || l3 + total > ctx.data_end() - ctx.data() {
        return Err(Outcome::PassMalformed);
    }
    if ip.proto != PROTO_TCP && ip.proto != PROTO_UDP && ip.proto != PROTO_ICMP {
        return Err(Outcome::PassNotTcpUdp);
    }
    if unsafe { load16(base, 6) } & IPV4_MF_OR_OFFSET != 0 {
        return Err(Outcome::PassFragment);
    }
    flow.src_addr[0] = unsafe { load32(base, 12) };
    flow.dst_addr[0] = unsafe { load32(base, 16) };
    flow.proto = ip.proto;
    flow.family = FAMILY_V4;
    Ok((l3 + ihl_bytes, l3 + total))
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3: usize, flow: &mut FlowKey) -> Result<(usize, usize), Outcome> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3).ok_or(Outcome::PassMalformed)?;
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(Outcome::PassMalformed);
    }
    let base = ip as *const Ipv6Hdr as *const u8;
    let payload = u16::from_be(unsafe { load16(base, 4) }) as usize;
    if l3 + Ipv6Hdr::LEN + payload > ctx.data_end() - ctx.data() {
        return Err(Outcome::PassMalformed);
    }
    if ip.next_hdr != PROTO_TCP && ip.next_hdr != PROTO_UDP && ip.next_hdr != PROTO_ICMPV6 {
        return Err(Outcome::PassIpv6NextHeader);
    }
    flow.src_addr = unsafe { words(base, 8) };
    flow.dst_addr = unsafe { words(base, 24) };
    flow.proto = ip.next_hdr;
    flow.family = FAMILY_V6;
    Ok((l3 + Ipv6Hdr::LEN, l3 + Ipv6Hdr::LEN + payload))
}

/// The IPv6 address at `offset` past `base`, as four raw words.
///
/// # Safety
/// The 16 bytes must lie inside the checked IPv6 header.
#[inline(always)]
pub unsafe fn words(base: *const u8, offset: usize) -> [u32; 4] {
    unsafe {
        [
            load32(base, offset),
            load32(base, offset + 4),
            load32(base, offset + 8),
            load32(base, offset + 12),
        ]
    }
}

/// Fills the ports; returns the TCP flags (0 for UDP).
#[inline(always)]
fn parse_ports(ctx: &XdpContext, l4: usize, ip_end: usize, flow: &mut FlowKey) -> Result<u8, Outcome> {
    if flow.proto == PROTO_TCP {
        let tcp: *const TcpHdr = ptr_at(ctx, l4).ok_or(Outcome::PassMalformed)?;
        let tcp = unsafe { &*tcp };
        // Data offset (high nibble of byte 12) below 5 words cannot hold the TCP header.
        let bytes = tcp as *const TcpHdr as *const u8;
        let doff = unsafe { *bytes.add(12) } >> 4;
        if doff < 5 || l4 + (doff as usize) * 4 > ip_end {
            return Err(Outcome::PassMalformed);
        }
        flow.src_port = unsafe { load16(bytes, 0) };
        flow.dst_port = unsafe { load16(bytes, 2) };
        return Ok(unsafe { *bytes.add(13) });
    } else {
        let udp: *const UdpHdr = ptr_at(ctx, l4).ok_or(Outcome::PassMalformed)?;
        let bytes = udp as *const u8;
        let udp_len = u16::from_be(unsafe { load16(bytes, 4) }) as usize;
        if udp_len < UdpHdr::LEN || l4 + udp_len > ip_end {
            return Err(Outcome::PassMalformed);
        }
        flow.src_port = unsafe { load16(bytes, 0) };
        flow.dst_port = unsafe { load16(bytes, 2) };
    }
    Ok(0)
}
