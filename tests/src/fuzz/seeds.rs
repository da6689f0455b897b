//! The round's services and seed frames: every kind the fixtures use (SYN, later packets, FIN,
//! UDP, both families, a VLAN tag, IPv4 options, Ethernet padding, fragments, other
//! protocols, other addresses) and NAT replies of flows recorded first.

#[allow(dead_code)]
#[path = "../../tests/fixtures/frames.rs"]
mod frames;

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use etherparse::{IpHeaders, IpNumber, Icmpv4Type, Icmpv6Type, Ipv4Header, Ipv6Header, PacketBuilder, icmpv4};
use lb::balancer::Balancer;

use crate::{fib_bed::FibBed, xdp_test_run::test_run};
use frames::{Frame, L4};

/// Services whose backends are all up and reachable from the bed (see `fib_bed`), so the
/// program has no reason to drop a request.
pub const CONFIG: &str = r#"
[[service]]
name = "dsr4"
vip = "10.200.99.1"
port = 80
protocol = "tcp"
table_size = 251
backend = [{ address = "10.200.10.11" }, { address = "10.200.10.12" }, { address = "10.200.10.13" }]

[[service]]
name = "nat4"
vip = "10.200.99.2"
port = 80
protocol = "tcp"
forwarding = "nat"
table_size = 251
backend = [{ address = "10.200.20.11", port = 8080 }, { address = "10.200.20.12", port = 8080 }]

[[service]]
name = "udp4"
vip = "10.200.99.3"
port = 53
protocol = "udp"
forwarding = "nat"
table_size = 251
backend = [{ address = "10.200.10.21", port = 5353 }]

[[service]]
name = "aff4"
vip = "10.200.99.4"
port = 80
protocol = "tcp"
hash_key = "source-ip"
table_size = 251
backend = [{ address = "10.200.10.11" }, { address = "10.200.10.12" }]

[[service]]
name = "dsr6"
vip = "fd00:200:99::1"
port = 80
protocol = "tcp"
table_size = 251
backend = [{ address = "fd00:200:10::11" }, { address = "fd00:200:10::12" }]

[[service]]
name = "nat6"
vip = "fd00:200:99::2"
port = 443
protocol = "tcp"
forwarding = "nat"
table_size = 251
backend = [{ address = "fd00:200:20::11", port = 8443 }]

[[service]]
name = "udp6"
vip = "fd00:200:99::3"
port = 53
protocol = "udp"
table_size = 251
backend = [{ address = "fd00:200:10::21" }]
"#;

const CLIENTS: [&str; 2] = ["10.200.10.2", "10.200.20.2"];
const CLIENT6: &str = "fd00:200:10::2";

/// The seed frames. Records NAT flows first (through the program) so their replies are seeds.
pub fn frames(lb: &mut Balancer, bed: &FibBed) -> Result<Vec<Vec<u8>>> {
    let mut requests: Vec<Frame> = Vec::new();
    let tcp = [("10.200.99.1", 80), ("10.200.99.2", 80), ("10.200.99.4", 80)];
    for (i, client) in CLIENTS.iter().enumerate() {
        for (vip, port) in tcp {
            let syn = Frame::syn(&format!("{client}:{}", 40000 + i), &format!("{vip}:{port}"));
            requests.extend([syn.clone(), syn.clone().later(b"GET / HTTP/1.1\r\n\r\n"), syn.fin()]);
        }
        requests.push(Frame::udp(&format!("{client}:{}", 41000 + i), "10.200.99.3:53"));
    }
    for (vip, port) in [("fd00:200:99::1", 80), ("fd00:200:99::2", 443)] {
        let syn = Frame::syn(&format!("[{CLIENT6}]:40100"), &format!("[{vip}]:{port}"));
        requests.extend([syn.clone(), syn.clone().later(b"hello"), syn.fin()]);
    }
    requests.push(Frame::udp(&format!("[{CLIENT6}]:41100"), "[fd00:200:99::3]:53"));
    let base = Frame::syn("10.200.10.2:40200", "10.200.99.2:80");
    requests.extend([
        base.clone().with_vlan(100),
        base.clone().with_ipv4_options(&[1, 1, 1, 0]),
        base.clone().padded(60, 0),
        base.clone().later(b"x").with_more_fragments(),
        base.clone().later(b"x").with_fragment_offset(3),
        Frame::syn(&format!("[{CLIENT6}]:40201"), "[fd00:200:99::1]:80").with_ipv6_fragment_header(),
        Frame::udp("10.200.10.2:40202", "10.200.99.3:53").without_udp_checksum(),
    ]);
    let mut seeds: Vec<Vec<u8>> = requests.iter().map(Frame::bytes).collect();

    // Replies: the program records each request's flow; a reply comes from the backend the
    // record names.
    for r in &requests {
        let _ = test_run(lb, bed.a0.ifindex, &r.bytes())?;
    }
    for r in &requests {
        let Some(session) = lb.dataplane().session(&r.flow_key()).filter(|s| s.is_nat()) else { continue };
        let backend = backend_addr(lb, session.backend_id.into()).context("a recorded backend")?;
        let reply = match r.l4 {
            L4::Udp => Frame::udp(&backend.to_string(), &r.src.to_string()),
            _ => Frame::ack(&backend.to_string(), &r.src.to_string()),
        };
        seeds.push(reply.clone().bytes());
        if let L4::Tcp { .. } = reply.l4 {
            seeds.push(reply.fin().bytes());
        }
    }

    // ICMP errors about the flows recorded above, from a router on the client's side (about a
    // reply: it quotes VIP -> client) and, for NAT, from the backend's side (quotes client ->
    // backend); whole quotes and quotes of 8 transport bytes.
    let router = |v6: bool| if v6 { "fd00:200:10::1" } else { "10.200.10.1" };
    for r in requests.iter().filter(|r| matches!(r.l4, L4::Tcp { syn: true, .. } | L4::Udp) && r.vlan.is_none()) {
        let v6 = r.src.is_ipv6();
        for cut in [None, Some(8)] {
            seeds.push(icmp_error(router(v6), r.dst.ip(), r.dst, r.src, r.proto(), cut)?);
        }
        if let Some(session) = lb.dataplane().session(&r.flow_key()).filter(|s| s.is_nat()) {
            let backend = backend_addr(lb, session.backend_id.into()).context("a recorded backend")?;
            seeds.push(icmp_error(router(v6), r.src.ip(), r.src, backend, r.proto(), Some(8))?);
        }
    }

    // Not for any service: other addresses, other protocols, other EtherTypes.
    seeds.extend([
        Frame::ack("10.200.10.2:40300", "10.200.10.1:22").bytes(),
        Frame::udp("10.200.10.2:40301", "10.200.10.1:53").bytes(),
        Frame::echo("10.200.10.2:0", "10.200.99.1:0").bytes(),
        Frame::echo(&format!("[{CLIENT6}]:0"), "[fd00:200:99::1]:0").bytes(),
        Frame::raw("10.200.10.2:0", "10.200.99.1:0", 47).bytes(),
        Frame::ack("10.200.20.11:8080", "10.200.10.2:49999").bytes(),
        frames::arp_request([2, 0, 0, 0, 0, 2], [10, 200, 10, 2], [10, 200, 10, 1]),
    ]);
    Ok(seeds)
}

/// An ICMP destination unreachable (fragmentation needed) / ICMPv6 packet too big from `router`
/// to `to`, quoting a packet `from` -> `quoted_to` of protocol `proto`, cut to `cut` transport
/// bytes if given.
fn icmp_error(router: &str, to: IpAddr, from: SocketAddr, quoted_to: SocketAddr, proto: u8, cut: Option<usize>) -> Result<Vec<u8>> {
    let quoted = PacketBuilder::ip(ip_headers(from.ip(), quoted_to.ip(), proto)?);
    let mut quote = Vec::new();
    let header_len = if from.is_ipv4() { 20 } else { 40 };
    if proto == 6 {
        quoted.tcp(from.port(), quoted_to.port(), 7, 64240).ack(1).write(&mut quote, b"quoted payload")?;
    } else {
        quoted.udp(from.port(), quoted_to.port()).write(&mut quote, b"quoted payload")?;
    }
    if let Some(n) = cut {
        quote.truncate(header_len + n);
    }
    let router: IpAddr = router.parse()?;
    let outer = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1]);
    let mut out = Vec::new();
    match (router, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => outer
            .ipv4(s.octets(), d.octets(), 62)
            .icmpv4(Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }))
            .write(&mut out, &quote)?,
        (IpAddr::V6(s), IpAddr::V6(d)) => outer
            .ipv6(s.octets(), d.octets(), 62)
            .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1400 })
            .write(&mut out, &quote)?,
        _ => anyhow::bail!("mixed families"),
    }
    Ok(out)
}

fn ip_headers(src: IpAddr, dst: IpAddr, proto: u8) -> Result<IpHeaders> {
    Ok(match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(Ipv4Header::new(0, 64, IpNumber(proto), s.octets(), d.octets())?, Default::default()),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header { traffic_class: 0, flow_label: Default::default(), payload_length: 0, next_header: IpNumber(proto), hop_limit: 64, source: s.octets(), destination: d.octets() },
            Default::default(),
        ),
        _ => anyhow::bail!("mixed families"),
    })
}

fn backend_addr(lb: &Balancer, id: u32) -> Option<SocketAddr> {
    lb.services().iter().flat_map(|s| &s.backends).find(|b| b.id == id).map(|b| b.addr)
}
