//! What the program may do with a frame, judged independently of it: frames are read with
//! etherparse and checksums summed here, never with the program's own code.
//!
//! - PASS: the frame leaves unchanged.
//! - DROP: unchanged, and only a NAT backend's packet, or an ICMP error about one on its way to
//!   the client, may be dropped (the way back to the client may not exist); the program drops
//!   nothing else in this bed (every backend is up and reachable).
//! - TX/REDIRECT: the input was a well-formed TCP/UDP packet either to a service (it leaves for
//!   one of that service's backends: NAT rewrites the destination to it, DSR changes only the
//!   MACs) or from a NAT backend (it leaves from the service's VIP:port to the same client);
//!   the output is well-formed, its IPv4 header and transport checksums right whenever the
//!   input's were (a wrong one stays wrong: checksums are updated, not recomputed), and nothing
//!   else in it changed.
//! - An ICMP error (destination unreachable, packet too big) about a service's flow may go to
//!   one of that service's backends (NAT: outer destination and quoted source rewritten to it),
//!   and one about a NAT backend's packet to its client with the quoted backend rewritten back
//!   to the VIP; checksums right whenever they were.
//! - A well-formed TCP/UDP packet to a service (no fragment, no IPv6 extension header, one
//!   802.1Q tag at most) is forwarded, never passed.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice, VlanSlice};

use crate::xdp_test_run::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX};

/// A service of the bed, as configured.
#[derive(Clone, Debug)]
pub struct Service {
    pub vip: SocketAddr,
    pub proto: u8,
    pub nat: bool,
    pub backends: Vec<SocketAddr>,
}

/// What the oracle knows of the bed: its services and every neighbour's MAC.
pub struct Oracle {
    pub services: Vec<Service>,
    pub neighbour_mac: Box<dyn Fn(IpAddr) -> Option<[u8; 6]>>,
}

/// How a frame went, for the round's tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seen {
    Passed,
    Dropped,
    Request,
    Reply,
    IcmpToBackend,
    IcmpToClient,
}

/// A frame as etherparse reads it: only TCP and UDP over IPv4/IPv6 are of interest.
struct Read<'a> {
    eth_dst: [u8; 6],
    /// VLAN tags as the program counts them: 1 for one 802.1Q tag, 2 for anything more.
    vlans: usize,
    /// Offset of the IP header in the frame.
    l3: usize,
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
    /// The IP payload: the transport header and its payload.
    segment: &'a [u8],
    fragmented: bool,
    /// The IP header gave the packet's length (etherparse falls back on the frame's length
    /// for an IPv6 payload length of 0, which without a jumbo option is malformed).
    length_from_header: bool,
    ipv6_extensions: bool,
    ipv4_header: Option<&'a [u8]>,
}

fn read(frame: &[u8]) -> Option<Read<'_>> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let eth = p.link.as_ref()?.to_header()?;
    let eth_dst = match eth {
        etherparse::LinkHeader::Ethernet2(h) => h.destination,
        _ => return None,
    };
    // etherparse also reads 802.1ad (0x88a8) and old QinQ (0x9100, 0x9200) tags; the program
    // reads one 802.1Q (0x8100) tag and passes the rest to the kernel.
    let (tags, vlans) = match &p.vlan {
        None => (0, 0),
        Some(VlanSlice::SingleVlan(_)) if frame[12..14] == [0x81, 0x00] => (1, 1),
        Some(VlanSlice::SingleVlan(_)) => (1, 2),
        Some(VlanSlice::DoubleVlan(_)) => (2, 2),
    };
    let net = p.net?;
    let payload = net.ip_payload_ref()?.clone();
    let l3 = 14 + 4 * tags;
    let (src_ip, dst_ip, ipv6_extensions, ipv4_header): (IpAddr, IpAddr, bool, Option<&[u8]>) = match &net {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            let header = frame.get(l3..l3 + h.slice().len())?;
            (h.source_addr().into(), h.destination_addr().into(), false, Some(header))
        }
        NetSlice::Ipv6(v6) => {
            let h = v6.header();
            (h.source_addr().into(), h.destination_addr().into(), h.next_header() != payload.ip_number, None)
        }
    };
    // etherparse reads an IPv6 UDP length of 0 as "the rest" (jumbograms); that needs a jumbo
    // option we do not have, so it is malformed here.
    let segment = payload.payload;
    let udp_length_ok = segment.len() >= 8 && {
        let len = u16::from_be_bytes([segment[4], segment[5]]) as usize;
        (8..=segment.len()).contains(&len)
    };
    let (sport, dport, proto) = match p.transport.as_ref()? {
        TransportSlice::Tcp(t) => (t.source_port(), t.destination_port(), 6),
        TransportSlice::Udp(u) => (u.source_port(), u.destination_port(), 17),
        _ => return None,
    };
    Some(Read {
        eth_dst,
        vlans,
        l3,
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        proto,
        segment: payload.payload,
        fragmented: payload.fragmented,
        length_from_header: payload.len_source != etherparse::LenSource::Slice && (proto == 6 || udp_length_ok),
        ipv6_extensions,
        ipv4_header,
    })
}

/// The ones' complement sum of `bytes` as big-endian words, added to `sum`.
fn add_words(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    for w in &mut chunks {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn folds_to_ones(mut sum: u64) -> bool {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Whether the transport checksum of `r` is right (an IPv4 UDP checksum of 0: none, right).
fn transport_checksum_ok(r: &Read) -> bool {
    let at = if r.proto == 6 { 16 } else { 6 };
    if r.segment.len() < at + 2 {
        return false;
    }
    if r.proto == 17 && r.src.is_ipv4() && r.segment[at..at + 2] == [0, 0] {
        return true;
    }
    let len = r.segment.len() as u64;
    let mut sum = add_words(0, &ip_octets(r.src.ip()));
    sum = add_words(sum, &ip_octets(r.dst.ip()));
    sum += u64::from(r.proto) + len;
    folds_to_ones(add_words(sum, r.segment))
}

impl Oracle {
    fn service_to(&self, dst: SocketAddr, proto: u8) -> Option<&Service> {
        self.services.iter().find(|s| s.vip == dst && s.proto == proto)
    }

    fn nat_services_of(&self, backend: SocketAddr, proto: u8) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(move |s| s.nat && s.proto == proto && s.backends.contains(&backend))
    }

    /// Checks one run; Err says which rule it broke.
    pub fn judge(&self, input: &[u8], verdict: u32, output: &[u8]) -> Result<Seen, String> {
        let r = read(input);
        match verdict {
            XDP_PASS => {
                if output != input {
                    return Err("passed, but changed".into());
                }
                if let Some(r) = &r {
                    let plain = !r.fragmented && !r.ipv6_extensions && r.vlans <= 1 && r.length_from_header;
                    if plain && self.service_to(r.dst, r.proto).is_some() {
                        return Err(format!("a well-formed packet to service {} was passed", r.dst));
                    }
                }
                Ok(Seen::Passed)
            }
            XDP_DROP => {
                if output != input {
                    return Err("dropped, but changed".into());
                }
                // The way back to a client may not exist: a NAT backend's reply, or an ICMP
                // error about one sent on to its client, is dropped then (unchanged).
                let to_client = read_icmp_error(input).is_some_and(|e| self.nat_services_of(e.quoted_dst, e.quoted_proto).next().is_some());
                match &r {
                    Some(r) if self.nat_services_of(r.src, r.proto).next().is_some() => Ok(Seen::Dropped),
                    _ if to_client => Ok(Seen::Dropped),
                    _ => Err("dropped a frame that is neither a NAT backend's packet nor an ICMP error about one".into()),
                }
            }
            XDP_TX | XDP_REDIRECT => {
                if let Some(error) = read_icmp_error(input) {
                    return self.icmp_forwarded(&error, input, output);
                }
                let r = r.ok_or("forwarded a frame etherparse cannot read as TCP/UDP over IP")?;
                if !r.length_from_header || r.fragmented {
                    return Err("forwarded a fragment or a packet whose IP header gives no length".into());
                }
                let o = read(output).ok_or("the forwarded frame cannot be read as TCP/UDP over IP")?;
                self.forwarded(&r, &o, input, output)
            }
            other => Err(format!("verdict {other}")),
        }
    }

    fn forwarded(&self, r: &Read, o: &Read, input: &[u8], output: &[u8]) -> Result<Seen, String> {
        if output.len() != input.len() || o.l3 != r.l3 || o.segment.len() != r.segment.len() {
            return Err("the forwarded frame's length or layout changed".into());
        }
        let header_ok = |r: &Read| r.ipv4_header.is_none_or(|h| folds_to_ones(add_words(0, h)));
        if header_ok(r) && !header_ok(o) {
            return Err("the IPv4 header checksum was right and is wrong after forwarding".into());
        }
        if transport_checksum_ok(r) && !transport_checksum_ok(o) {
            return Err("the transport checksum was right and is wrong after forwarding".into());
        }
        if let Some(svc) = self.service_to(r.dst, r.proto) {
            let to = if svc.nat { o.dst } else { SocketAddr::new(r.dst.ip(), 0) };
            let backend = svc
                .backends
                .iter()
                .find(|b| if svc.nat { **b == to } else { (self.neighbour_mac)(b.ip()) == Some(o.eth_dst) })
                .ok_or_else(|| format!("a request to {} left for none of its backends", svc.vip))?;
            if (self.neighbour_mac)(backend.ip()) != Some(o.eth_dst) {
                return Err(format!("a request for {backend} left with another MAC"));
            }
            if svc.nat {
                if o.src != r.src {
                    return Err("NAT changed the client's address".into());
                }
                same_except(r.segment, o.segment, r.proto, &[2, 3])?;
            } else if output[r.l3..] != input[r.l3..] {
                return Err("DSR changed more than the MACs".into());
            }
            return Ok(Seen::Request);
        }
        let vips: Vec<SocketAddr> = self.nat_services_of(r.src, r.proto).map(|s| s.vip).collect();
        if vips.is_empty() {
            return Err("forwarded a frame that is neither to a service nor from a NAT backend".into());
        }
        if !vips.contains(&o.src) || o.dst != r.dst {
            return Err(format!("a reply from {} left as {} -> {}, not from one of {vips:?}", r.src, o.src, o.dst));
        }
        if (self.neighbour_mac)(o.dst.ip()) != Some(o.eth_dst) {
            return Err("a reply left with a MAC that is not its client's".into());
        }
        same_except(r.segment, o.segment, r.proto, &[0, 1])?;
        Ok(Seen::Reply)
    }
}

/// An ICMP or ICMPv6 error as etherparse reads it, with the endpoints of the packet it quotes
/// (read here from the quote's IP header and first 4 transport bytes).
struct IcmpError<'a> {
    eth_dst: [u8; 6],
    l3: usize,
    outer_src: IpAddr,
    outer_dst: IpAddr,
    ipv4_header: Option<&'a [u8]>,
    /// The ICMP message: header and quote.
    message: &'a [u8],
    quoted_src: SocketAddr,
    quoted_dst: SocketAddr,
    quoted_proto: u8,
}

fn read_icmp_error(frame: &[u8]) -> Option<IcmpError<'_>> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let etherparse::LinkHeader::Ethernet2(eth) = p.link.as_ref()?.to_header()? else { return None };
    let tags = match &p.vlan {
        None => 0,
        Some(VlanSlice::SingleVlan(_)) if frame[12..14] == [0x81, 0x00] => 1,
        Some(_) => return None,
    };
    let l3 = 14 + 4 * tags;
    let net = p.net?;
    let payload = net.ip_payload_ref()?.clone();
    if payload.fragmented || payload.len_source == etherparse::LenSource::Slice {
        return None;
    }
    let (outer_src, outer_dst, ipv4_header): (IpAddr, IpAddr, Option<&[u8]>) = match &net {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            (h.source_addr().into(), h.destination_addr().into(), Some(frame.get(l3..l3 + h.slice().len())?))
        }
        NetSlice::Ipv6(v6) => (v6.header().source_addr().into(), v6.header().destination_addr().into(), None),
    };
    let message = payload.payload;
    // ICMP destination unreachable; ICMPv6 destination unreachable and packet too big.
    if !matches!((payload.ip_number.0, message.first()?), (1, 3) | (58, 1 | 2)) {
        return None;
    }
    let quote = message.get(8..)?;
    let (quoted_src, quoted_dst, quoted_proto, l4) = match quote.first()? >> 4 {
        4 => {
            let ihl = usize::from(quote[0] & 0x0f) * 4;
            let a = |at: usize| -> Option<IpAddr> { Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(quote.get(at..at + 4)?).ok()?).into()) };
            (a(12)?, a(16)?, *quote.get(9)?, ihl)
        }
        6 => {
            let a = |at: usize| -> Option<IpAddr> { Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(quote.get(at..at + 16)?).ok()?).into()) };
            (a(8)?, a(24)?, *quote.get(6)?, 40)
        }
        _ => return None,
    };
    let ports = quote.get(l4..l4 + 4)?;
    Some(IcmpError {
        eth_dst: eth.destination,
        l3,
        outer_src,
        outer_dst,
        ipv4_header,
        message,
        quoted_src: SocketAddr::new(quoted_src, u16::from_be_bytes([ports[0], ports[1]])),
        quoted_dst: SocketAddr::new(quoted_dst, u16::from_be_bytes([ports[2], ports[3]])),
        quoted_proto,
    })
}

/// Whether the ICMP message's checksum is right (ICMPv6: with its pseudo-header).
fn icmp_checksum_ok(e: &IcmpError) -> bool {
    let mut sum = 0;
    if e.outer_src.is_ipv6() {
        sum = add_words(sum, &ip_octets(e.outer_src));
        sum = add_words(sum, &ip_octets(e.outer_dst));
        sum += e.message.len() as u64 + 58;
    }
    folds_to_ones(add_words(sum, e.message))
}

impl Oracle {
    /// A forwarded ICMP error: about a service's flow, to that service's backend (NAT: the
    /// outer destination and the quoted source rewritten to it), or (NAT) from the backend's
    /// side to the client, the quoted backend rewritten back to the VIP.
    fn icmp_forwarded(&self, e: &IcmpError, input: &[u8], output: &[u8]) -> Result<Seen, String> {
        let o = read_icmp_error(output).ok_or("a forwarded ICMP error is no longer one")?;
        if output.len() != input.len() || o.l3 != e.l3 || o.message.len() != e.message.len() {
            return Err("the forwarded ICMP error's length or layout changed".into());
        }
        let header_ok = |x: &IcmpError| x.ipv4_header.is_none_or(|h| folds_to_ones(add_words(0, h)));
        if header_ok(e) && !header_ok(&o) {
            return Err("the ICMP error's IPv4 header checksum was right and is wrong after forwarding".into());
        }
        if icmp_checksum_ok(e) && !icmp_checksum_ok(&o) {
            return Err("the ICMP checksum was right and is wrong after forwarding".into());
        }
        if o.outer_src != e.outer_src {
            return Err("forwarding changed the error's source".into());
        }
        if let Some(svc) = self.service_to(e.quoted_src, e.quoted_proto) {
            let backend = svc
                .backends
                .iter()
                .find(|b| if svc.nat { o.outer_dst == b.ip() && o.quoted_src == **b } else { (self.neighbour_mac)(b.ip()) == Some(o.eth_dst) })
                .ok_or_else(|| format!("an error about a flow of {} left for none of its backends", svc.vip))?;
            if (self.neighbour_mac)(backend.ip()) != Some(o.eth_dst) {
                return Err(format!("an error for {backend} left with another MAC"));
            }
            if !svc.nat && output[e.l3..] != input[e.l3..] {
                return Err("DSR changed more than the MACs of an ICMP error".into());
            }
            return Ok(Seen::IcmpToBackend);
        }
        let vips: Vec<SocketAddr> = self.nat_services_of(e.quoted_dst, e.quoted_proto).map(|s| s.vip).collect();
        if vips.is_empty() {
            return Err("forwarded an ICMP error about a flow of no service".into());
        }
        if !vips.contains(&o.quoted_dst) || o.outer_dst != e.outer_dst || (self.neighbour_mac)(o.outer_dst) != Some(o.eth_dst) {
            return Err(format!("an error to client {} left as {} quoting {}", e.outer_dst, o.outer_dst, o.quoted_dst));
        }
        Ok(Seen::IcmpToClient)
    }
}

/// The transport segments are equal but for the port bytes `ports` and the checksum.
fn same_except(a: &[u8], b: &[u8], proto: u8, ports: &[usize]) -> Result<(), String> {
    let checksum = if proto == 6 { 16 } else { 6 };
    let may_change = |i: usize| ports.contains(&i) || i == checksum || i == checksum + 1;
    match a.iter().zip(b).enumerate().find(|(i, (x, y))| x != y && !may_change(*i)) {
        Some((i, _)) => Err(format!("forwarding changed byte {i} of the transport segment")),
        None => Ok(()),
    }
}
