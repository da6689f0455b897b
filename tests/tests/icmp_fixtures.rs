//! ICMP fixtures (issue 14, part 4): errors about a service's flows ("fragmentation needed",
//! ICMPv6 "packet too big", destination unreachable) reach the flow's backend, in DSR as they
//! came (MACs only), in NAT rewritten to be about the packet the backend sent (outer
//! destination, quoted source and its checksums, ICMP checksum). Frames are built with
//! etherparse, the expected output too (every checksum computed from scratch by etherparse,
//! never by the program's incremental updates). Run through the real program with
//! BPF_PROG_TEST_RUN, in order: sessions made by earlier fixtures decide later ones.
//!
//! Run as root: `cargo test -p lb-tests --test icmp_fixtures -- --nocapture`.

// Shared with fixtures.rs, which uses the rest of them.
#[allow(dead_code)]
#[path = "fixtures/bed.rs"]
mod bed;
#[allow(dead_code)]
#[path = "fixtures/frames.rs"]
mod frames;

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, ensure};
use etherparse::{
    EtherType, Ethernet2Header, IpHeaders, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel, Ipv6Header,
    PacketBuilder, icmpv4, icmpv6, Icmpv4Type, Icmpv6Type,
};
use lb::balancer::{Balancer, BackendState, InitialHealth};
use lb::config::{Config, Forwarding};
use lb::dataplane::{Counters, Dataplane};
use lb_common::{Event, Outcome};
use lb_tests::fib_bed::FibBed;

use bed::{Check, Expect, Fixture, execute};
use frames::Frame;

/// Service ids follow the order here.
const CONFIG: &str = r#"
[[service]]
name = "dsr4"
vip = "10.200.99.1"
port = 80
protocol = "tcp"
forwarding = "dsr"
table_size = 4099
backend = [{ address = "10.200.10.11" }, { address = "10.200.10.12" }, { address = "10.200.10.13" }]

[[service]]
name = "nat4"
vip = "10.200.99.2"
port = 80
protocol = "tcp"
forwarding = "nat"
table_size = 4099
backend = [{ address = "10.200.20.11", port = 8080 }, { address = "10.200.20.12", port = 8080 }]

[[service]]
name = "udp4"
vip = "10.200.99.3"
port = 53
protocol = "udp"
forwarding = "nat"
table_size = 4099
backend = [{ address = "10.200.10.21", port = 5353 }]

[[service]]
name = "dsr6"
vip = "fd00:200:99::1"
port = 80
protocol = "tcp"
forwarding = "dsr"
table_size = 4099
backend = [{ address = "fd00:200:10::11" }, { address = "fd00:200:10::12" }, { address = "fd00:200:10::13" }]

[[service]]
name = "nat6"
vip = "fd00:200:99::2"
port = 443
protocol = "tcp"
forwarding = "nat"
table_size = 4099
backend = [{ address = "fd00:200:20::11", port = 8443 }]

[[service]]
name = "udp6"
vip = "fd00:200:99::3"
port = 53
protocol = "udp"
forwarding = "nat"
table_size = 4099
backend = [{ address = "fd00:200:10::21", port = 5353 }]

[[service]]
name = "down4"
vip = "10.200.99.5"
port = 80
protocol = "tcp"
forwarding = "dsr"
table_size = 4099
backend = [{ address = "10.200.10.31" }]

[[service]]
name = "paced4"
vip = "10.200.99.4"
port = 80
protocol = "tcp"
forwarding = "dsr"
table_size = 4099

  [[service.backend]]
  address = "10.200.10.12"
  max_new_sessions_per_sec = 1
"#;

const CLIENT: &str = "10.200.10.2";
const CLIENT6: &str = "fd00:200:10::2";
/// Routers on the clients' paths that send the errors (never routed to: no neighbour needed).
const ROUTER: &str = "10.200.10.254";
const ROUTER6: &str = "fd00:200:10::fe";
/// The next-hop MTU the routers report.
const MTU: u16 = 1400;

/// What kind of ICMP message to build.
#[derive(Clone, Copy, Debug)]
enum Kind {
    FragmentationNeeded,
    PortUnreachable,
    TimeExceeded,
    PacketTooBig,
    PortUnreachable6,
}

/// An ICMP message from a router to `to` quoting (the first `quote_len` bytes of) the IP
/// packet of `quoted`.
#[derive(Clone, Debug)]
struct IcmpError {
    kind: Kind,
    router: IpAddr,
    to: IpAddr,
    quoted: Frame,
    /// None: the whole packet.
    quote_len: Option<usize>,
    /// IPv4 options of the outer header.
    outer_options: Vec<u8>,
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
}

impl IcmpError {
    /// An error about `quoted` (a packet VIP -> client) sent to its source, the VIP, arriving
    /// from the client side.
    fn about(kind: Kind, quoted: Frame) -> IcmpError {
        let router: IpAddr = if quoted.is_v4() { ROUTER.parse().unwrap() } else { ROUTER6.parse().unwrap() };
        IcmpError {
            kind,
            router,
            to: quoted.src.ip(),
            quoted,
            quote_len: None,
            outer_options: Vec::new(),
            eth_src: frames::CLIENT_MAC,
            eth_dst: frames::LB_MAC_PLACEHOLDER,
        }
    }

    /// Quotes only the IP header(s) and `l4_bytes` of the transport header.
    fn cut_to(mut self, l4_bytes: usize) -> IcmpError {
        self.quote_len = Some(self.quoted.l4_offset() - self.quoted.l3_offset() + l4_bytes);
        self
    }

    fn quote(&self) -> Vec<u8> {
        let bytes = self.quoted.bytes();
        let ip = &bytes[self.quoted.l3_offset()..];
        ip[..self.quote_len.unwrap_or(ip.len()).min(ip.len())].to_vec()
    }

    fn bytes(&self) -> Vec<u8> {
        let v4 = self.router.is_ipv4();
        let eth = Ethernet2Header {
            source: self.eth_src,
            destination: self.eth_dst,
            ether_type: if v4 { EtherType::IPV4 } else { EtherType::IPV6 },
        };
        let mut out = eth.to_bytes().to_vec();
        let ip = match (self.router, self.to) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = Ipv4Header::new(0, 62, IpNumber::ICMP, s.octets(), d.octets()).expect("empty payload fits");
                h.options = Ipv4Options::try_from(&self.outer_options[..]).expect("options: multiple of 4, <= 40");
                IpHeaders::Ipv4(h, Default::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: 0,
                    next_header: IpNumber::IPV6_ICMP,
                    hop_limit: 62,
                    source: s.octets(),
                    destination: d.octets(),
                },
                Default::default(),
            ),
            _ => panic!("mixed families"),
        };
        let b = PacketBuilder::ip(ip);
        let quote = self.quote();
        let written = match self.kind {
            Kind::FragmentationNeeded => b
                .icmpv4(Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: MTU,
                }))
                .write(&mut out, &quote),
            Kind::PortUnreachable => {
                b.icmpv4(Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Port)).write(&mut out, &quote)
            }
            Kind::TimeExceeded => {
                b.icmpv4(Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit)).write(&mut out, &quote)
            }
            Kind::PacketTooBig => b.icmpv6(Icmpv6Type::PacketTooBig { mtu: u32::from(MTU) }).write(&mut out, &quote),
            Kind::PortUnreachable6 => b
                .icmpv6(Icmpv6Type::DestinationUnreachable(icmpv6::DestUnreachableCode::Port))
                .write(&mut out, &quote),
        };
        written.expect("etherparse builds the ICMP error");
        out
    }
}

fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|_| panic!("not a socket address: {text}"))
}

struct Run {
    bed: FibBed,
    lb: Balancer,
    count: usize,
    failures: Vec<String>,
}

impl Run {
    fn fixture(&mut self, fx: Fixture) -> Result<()> {
        self.count += 1;
        let (_, problems) = execute(&mut self.lb, self.bed.a0.ifindex, &fx).with_context(|| format!("running {:?}", fx.name))?;
        println!("{:3} {:4} {}", self.count, if problems.is_empty() { "ok" } else { "FAIL" }, fx.name);
        for p in &problems {
            println!("              {p}");
        }
        if !problems.is_empty() {
            self.failures.push(format!("{}:\n    {}", fx.name, problems.join("\n    ")));
        }
        Ok(())
    }

    fn backend(&self, id: u32) -> Result<BackendState> {
        self.lb
            .services()
            .iter()
            .flat_map(|s| s.backends.iter())
            .find(|b| b.id == id)
            .cloned()
            .with_context(|| format!("no backend {id}"))
    }

    /// Sends a packet of a client's flow (a SYN, or a later packet) and checks it reached the
    /// backend explain predicts; returns that backend.
    fn open(&mut self, name: &str, frame: &Frame) -> Result<BackendState> {
        let ex = self.lb.explain_packet(&frame.flow_key(), frame.is_syn())?.context("explain: no service")?;
        let backend = ex.backend.context("explain: no backend")?;
        let svc = self.lb.service(&ex.service)?;
        let nat = svc.config.forwarding == Forwarding::Nat;
        let egress = self.bed.egress_for(backend.addr.ip())?.clone();
        let mut expected = frame.clone().with_macs(egress.mac, self.bed.neighbour_mac(backend.addr.ip())?);
        if nat {
            expected = expected.with_dst(backend.addr);
        }
        let outcome = if egress.ifindex == self.bed.a0.ifindex { Outcome::TxToBackend } else { Outcome::RedirectToBackend };
        self.fixture(Fixture::new(name, frame.bytes(), outcome, Expect::Frame(expected.bytes())))?;
        Ok(backend)
    }

    /// `error`, about a flow whose backend is `backend`, must reach it: unchanged but for the
    /// MACs in DSR; in NAT addressed to the backend and quoting the packet as the backend sent
    /// it. `session`: the flow's record, which must be left exactly as it was (None: there is
    /// none, and the error must not make one).
    fn forwarded(&mut self, name: &str, error: &IcmpError, backend: &BackendState, session: Option<SessionWas>, events: &[Event]) -> Result<()> {
        let client_flow = flow_of(&error.quoted);
        let ex = self.lb.explain(&client_flow)?.context("explain: the quoted flow is no service's")?;
        let svc = self.lb.service(&ex.service)?;
        let nat = svc.config.forwarding == Forwarding::Nat;
        let service_id = svc.info.id;
        let egress = self.bed.egress_for(backend.addr.ip())?.clone();
        let mut expected = error.clone();
        (expected.eth_src, expected.eth_dst) = (egress.mac, self.bed.neighbour_mac(backend.addr.ip())?);
        if nat {
            expected.to = backend.addr.ip();
            expected.quoted = expected.quoted.with_src(backend.addr);
        }
        let outcome = if egress.ifindex == self.bed.a0.ifindex { Outcome::TxIcmpToBackend } else { Outcome::RedirectIcmpToBackend };
        let input = error.bytes();
        let delta = Counters { packets: 1, bytes: input.len() as u64, new_sessions: 0 };
        let mut fx = Fixture::new(name, input, outcome, Expect::Frame(expected.bytes()));
        fx.events = events.to_vec();
        fx.checks = vec![
            Check::ServiceTraffic { service_id, delta },
            Check::BackendTraffic { backend_id: backend.id, delta },
            match session {
                Some(s) => Check::Session { flow: client_flow, backend_id: s.backend_id, closing: s.closing, unconfirmed: s.unconfirmed },
                None => Check::NoSession(client_flow),
            },
        ];
        self.fixture(fx)
    }

    /// `error`, about a packet we forwarded to a NAT backend for the flow (client -> `vip`),
    /// must reach the client quoting the packet as the client sent it (destination `vip`).
    fn reaches_client(&mut self, name: &str, error: &IcmpError, vip: SocketAddr, session: SessionWas) -> Result<()> {
        let client = error.to;
        let egress = self.bed.egress_for(client)?.clone();
        let mut expected = error.clone();
        (expected.eth_src, expected.eth_dst) = (egress.mac, self.bed.neighbour_mac(client)?);
        expected.quoted = expected.quoted.with_dst(vip);
        let outcome = if egress.ifindex == self.bed.a0.ifindex { Outcome::TxIcmpToClient } else { Outcome::RedirectIcmpToClient };
        let mut fx = Fixture::new(name, error.bytes(), outcome, Expect::Frame(expected.bytes()));
        let flow = lb::balancer::flow_key(error.quoted.src, vip, error.quoted.proto());
        fx.checks.push(Check::Session { flow, backend_id: session.backend_id, closing: session.closing, unconfirmed: session.unconfirmed });
        self.fixture(fx)
    }

    /// `input` must pass untouched with `outcome`, and leave no session for `flow`.
    fn passed(&mut self, name: &str, outcome: Outcome, input: Vec<u8>, no_session_for: Option<&Frame>) -> Result<()> {
        let mut fx = Fixture::new(name, input, outcome, Expect::Unchanged);
        if let Some(f) = no_session_for {
            fx.checks.push(Check::NoSession(flow_of(f)));
        }
        self.fixture(fx)
    }

    /// The record SESSIONS holds for the flow of `quoted`, as it is now.
    fn session_of(&self, quoted: &Frame) -> Result<SessionWas> {
        let s = self.lb.dataplane().session(&flow_of(quoted)).context("no session record")?;
        Ok(SessionWas { backend_id: s.backend_id.into(), closing: s.is_closing(), unconfirmed: s.is_unconfirmed() })
    }
}

#[derive(Clone, Copy)]
struct SessionWas {
    backend_id: u32,
    closing: bool,
    unconfirmed: bool,
}

/// The client's flow (client -> VIP) of a quoted packet (VIP -> client).
fn flow_of(quoted: &Frame) -> lb_common::FlowKey {
    lb::balancer::flow_key(quoted.dst, quoted.src, quoted.proto())
}

/// A packet of the reply direction of the flow `client` -> `vip` (VIP -> client, as the
/// client side sees it), with some payload: what a router quotes when it is too big.
fn reply_of(client: &str, vip: &str) -> Frame {
    Frame::ack(vip, client).with_payload(&[0x5a; 120])
}

#[test]
fn icmp_fixtures() -> Result<()> {
    let bed = FibBed::new("icmp")?;
    let _inside = bed.ns.enter()?;
    let mut dp = Dataplane::load()?;
    dp.allow_egress(bed.a0.ifindex)?;
    dp.allow_egress(bed.b0.ifindex)?;
    let lb = Balancer::new(dp, &Config::parse(CONFIG)?, InitialHealth::Up)?;
    let mut run = Run { bed, lb, count: 0, failures: Vec::new() };
    use Kind::*;
    use Outcome::*;

    // ---- IPv4, DSR ---------------------------------------------------------------------------
    let client = |port: u16| format!("{CLIENT}:{port}");
    let dsr4 = "10.200.99.1:80";
    let syn = Frame::syn(&client(45001), dsr4);
    let b = run.open("dsr4 syn (unconfirmed record)", &syn)?;
    let quoted = reply_of(&client(45001), dsr4);
    let was = run.session_of(&quoted)?;
    ensure!(was.unconfirmed, "a SYN's record starts unconfirmed");
    // The error neither confirms nor refreshes the record: it stays unconfirmed.
    run.forwarded("v4 dsr frag needed, whole quote (record left unconfirmed)", &IcmpError::about(FragmentationNeeded, quoted.clone()), &b, Some(was), &[])?;
    run.open("dsr4 the client's ack confirms", &Frame::ack(&client(45001), dsr4))?;
    let was = run.session_of(&quoted)?;
    run.forwarded("v4 dsr frag needed, ip header + 8 bytes of tcp", &IcmpError::about(FragmentationNeeded, quoted.clone()).cut_to(8), &b, Some(was), &[])?;
    run.forwarded("v4 dsr port unreachable", &IcmpError::about(PortUnreachable, quoted.clone()).cut_to(8), &b, Some(was), &[])?;
    // IPv4 options in both headers: the quote starts after the outer options, the ports after
    // the quoted ones.
    let syn = Frame::syn(&client(45002), dsr4).with_ipv4_options(&[1, 1, 1, 0]);
    let b = run.open("dsr4 syn with ipv4 options", &syn)?;
    let quoted_opts = reply_of(&client(45002), dsr4).with_ipv4_options(&[7, 7, 4, 0, 0, 0, 0, 1]);
    let was = run.session_of(&quoted_opts)?;
    let mut e = IcmpError::about(FragmentationNeeded, quoted_opts.clone()).cut_to(8);
    e.outer_options = vec![1, 1, 1, 0];
    run.forwarded("v4 dsr frag needed, options in the outer (ihl 6) and quoted (ihl 7) headers", &e, &b, Some(was), &[])?;
    // A flow without a record goes where the table sends its next packet, and gets no record.
    let no_record = reply_of(&client(45003), dsr4);
    let predicted = run.lb.explain(&flow_of(&no_record))?.and_then(|e| e.backend).context("explain")?;
    run.forwarded("v4 dsr frag needed, flow without a record: the table's choice", &IcmpError::about(FragmentationNeeded, no_record), &predicted, None, &[])?;

    // ---- IPv4, NAT ---------------------------------------------------------------------------
    let nat4 = "10.200.99.2:80";
    let b = run.open("nat4 syn", &Frame::syn(&client(45101), nat4))?;
    run.open("nat4 ack", &Frame::ack(&client(45101), nat4))?;
    let quoted = reply_of(&client(45101), nat4);
    let was = run.session_of(&quoted)?;
    // Whole quote: the quoted TCP checksum is in it and is rewritten too.
    run.forwarded("v4 nat frag needed, whole quote (quoted tcp checksum rewritten)", &IcmpError::about(FragmentationNeeded, quoted.clone()), &b, Some(was), &[])?;
    run.forwarded("v4 nat frag needed, ip header + 8 bytes of tcp", &IcmpError::about(FragmentationNeeded, quoted.clone()).cut_to(8), &b, Some(was), &[])?;
    // 16 bytes of TCP: the checksum (bytes 16..18) is not in the quote, nothing past it is read.
    run.forwarded("v4 nat frag needed, 16 bytes of tcp (no checksum quoted)", &IcmpError::about(FragmentationNeeded, quoted.clone()).cut_to(16), &b, Some(was), &[])?;
    let mut e = IcmpError::about(FragmentationNeeded, quoted.clone().with_ipv4_options(&[1, 1, 1, 0])).cut_to(8);
    e.outer_options = vec![1, 1, 1, 0, 1, 1, 1, 0];
    run.forwarded("v4 nat frag needed, options in the outer (ihl 7) and quoted (ihl 6) headers", &e, &b, Some(was), &[])?;
    // UDP: the quoted checksum is always in the first 8 bytes.
    let udp4 = "10.200.99.3:53";
    let b = run.open("udp4 nat request", &Frame::udp(&client(45201), udp4))?;
    let quoted = Frame::udp(udp4, &client(45201)).with_payload(b"answer");
    let was = run.session_of(&quoted)?;
    run.forwarded("v4 nat udp port unreachable (quoted udp checksum rewritten)", &IcmpError::about(PortUnreachable, quoted.clone()).cut_to(8), &b, Some(was), &[])?;
    run.forwarded(
        "v4 nat udp, quoted checksum 0 (none) stays 0",
        &IcmpError::about(PortUnreachable, quoted.clone().without_udp_checksum()).cut_to(8),
        &b,
        Some(was),
        &[],
    )?;

    // ---- IPv6 --------------------------------------------------------------------------------
    let client6 = |port: u16| format!("[{CLIENT6}]:{port}");
    let dsr6 = "[fd00:200:99::1]:80";
    let b = run.open("dsr6 syn", &Frame::syn(&client6(45301), dsr6))?;
    run.open("dsr6 ack", &Frame::ack(&client6(45301), dsr6))?;
    let quoted = reply_of(&client6(45301), dsr6);
    let was = run.session_of(&quoted)?;
    run.forwarded("v6 dsr packet too big, whole quote", &IcmpError::about(PacketTooBig, quoted.clone()), &b, Some(was), &[])?;
    run.forwarded("v6 dsr packet too big, ipv6 header + 8 bytes of tcp", &IcmpError::about(PacketTooBig, quoted.clone()).cut_to(8), &b, Some(was), &[])?;
    let nat6 = "[fd00:200:99::2]:443";
    let b = run.open("nat6 syn", &Frame::syn(&client6(45401), nat6))?;
    run.open("nat6 ack", &Frame::ack(&client6(45401), nat6))?;
    let quoted = reply_of(&client6(45401), nat6);
    let was = run.session_of(&quoted)?;
    // ICMPv6 sums a pseudo header with the outer destination, which NAT changes as well.
    run.forwarded("v6 nat packet too big, whole quote (redirect)", &IcmpError::about(PacketTooBig, quoted.clone()), &b, Some(was), &[])?;
    run.forwarded("v6 nat packet too big, ipv6 header + 8 bytes of tcp", &IcmpError::about(PacketTooBig, quoted.clone()).cut_to(8), &b, Some(was), &[])?;
    run.forwarded("v6 nat port unreachable", &IcmpError::about(PortUnreachable6, quoted.clone()).cut_to(8), &b, Some(was), &[])?;
    let udp6 = "[fd00:200:99::3]:53";
    let b = run.open("udp6 nat request", &Frame::udp(&client6(45501), udp6))?;
    let quoted = Frame::udp(udp6, &client6(45501)).with_payload(b"answer");
    let was = run.session_of(&quoted)?;
    run.forwarded("v6 nat udp port unreachable (quoted udp checksum rewritten)", &IcmpError::about(PortUnreachable6, quoted), &b, Some(was), &[])?;

    // ---- NAT: errors towards a client about a packet forwarded to its backend ---------------
    // A router on the backends' side quotes the packet as we forwarded it (destination
    // backend:port); the client must see its own packet (destination VIP:port).
    let from_backend_side = |kind: Kind, quoted: Frame| {
        let mut e = IcmpError::about(kind, quoted);
        e.router = if e.to.is_ipv4() { "10.200.20.254".parse().unwrap() } else { "fd00:200:20::fe".parse().unwrap() };
        e
    };
    let nat4_flow = Frame::ack(&client(45101), nat4);
    let was = run.session_of(&reply_of(&client(45101), nat4))?;
    let nat4_backend = run.backend(was.backend_id)?.addr;
    let forwarded = nat4_flow.clone().with_dst(nat4_backend).with_payload(&[0xa5; 100]);
    run.reaches_client("v4 nat frag needed towards the client, whole quote", &from_backend_side(FragmentationNeeded, forwarded.clone()), sa(nat4), was)?;
    run.reaches_client("v4 nat frag needed towards the client, ip header + 8 bytes", &from_backend_side(FragmentationNeeded, forwarded.clone()).cut_to(8), sa(nat4), was)?;
    let was_udp = run.session_of(&Frame::udp(udp4, &client(45201)))?;
    let udp_backend = run.backend(was_udp.backend_id)?.addr;
    let forwarded_udp = Frame::udp(&client(45201), udp4).with_dst(udp_backend);
    run.reaches_client("v4 nat udp port unreachable towards the client", &from_backend_side(PortUnreachable, forwarded_udp).cut_to(8), sa(udp4), was_udp)?;
    let was6 = run.session_of(&reply_of(&client6(45401), nat6))?;
    let nat6_backend = run.backend(was6.backend_id)?.addr;
    let forwarded6 = Frame::ack(&client6(45401), nat6).with_dst(nat6_backend);
    run.reaches_client("v6 nat packet too big towards the client, whole quote", &from_backend_side(PacketTooBig, forwarded6.clone()), sa(nat6), was6)?;
    run.reaches_client("v6 nat packet too big towards the client, ipv6 header + 8 bytes", &from_backend_side(PacketTooBig, forwarded6).cut_to(8), sa(nat6), was6)?;
    // DSR forwards the client's packet as it came (destination VIP): the error is right as it is.
    run.passed(
        "v4 dsr frag needed towards the client: passed as it is",
        PassIcmpError,
        from_backend_side(FragmentationNeeded, Frame::ack(&client(45001), dsr4)).cut_to(8).bytes(),
        None,
    )?;
    run.passed(
        "v4 nat frag needed towards a client port without a record",
        PassIcmpError,
        from_backend_side(FragmentationNeeded, nat4_flow.clone().with_src_port(45199).with_dst(nat4_backend)).cut_to(8).bytes(),
        None,
    )?;

    // ---- passed untouched --------------------------------------------------------------------
    let dsr_quoted = reply_of(&client(45001), dsr4);
    let nat_quoted = reply_of(&client(45101), nat4);
    // Shorter than the ports: RFC 792 promises 8 bytes of the quoted transport header.
    run.passed("v4 quote with 7 bytes of tcp: malformed", PassMalformed, IcmpError::about(FragmentationNeeded, nat_quoted.clone()).cut_to(7).bytes(), None)?;
    run.passed("v4 quote cut inside the ip header", PassMalformed, {
        let mut e = IcmpError::about(FragmentationNeeded, nat_quoted.clone());
        e.quote_len = Some(12);
        e.bytes()
    }, None)?;
    run.passed("v6 quote with 4 bytes of tcp: malformed", PassMalformed, IcmpError::about(PacketTooBig, reply_of(&client6(45401), nat6)).cut_to(4).bytes(), None)?;
    run.passed("v4 icmp header cut short (4 bytes)", PassMalformed, {
        let e = IcmpError::about(FragmentationNeeded, nat_quoted.clone());
        let mut bytes = e.bytes();
        bytes.truncate(frames::ETH_LEN + 20 + 4);
        frames::edit_ipv4(bytes, frames::ETH_LEN, |h| h.total_len = 24)
    }, None)?;
    // Quoted IHL 4 (byte 0 of the quote: version | IHL).
    run.passed("v4 quoted header with ihl 4", PassMalformed, {
        let mut bytes = IcmpError::about(FragmentationNeeded, nat_quoted.clone()).cut_to(8).bytes();
        bytes[frames::ETH_LEN + 20 + 8] = 0x44;
        bytes
    }, None)?;
    // Errors about packets that belong to no service's flow.
    run.passed(
        "v4 frag needed about a non-vip packet",
        PassIcmpError,
        IcmpError::about(FragmentationNeeded, reply_of(&client(45001), "10.200.10.1:22")).cut_to(8).bytes(),
        None,
    )?;
    run.passed(
        "v4 frag needed about the vip, another port",
        PassIcmpError,
        IcmpError::about(FragmentationNeeded, reply_of(&client(45001), "10.200.99.1:81")).cut_to(8).bytes(),
        None,
    )?;
    run.passed(
        "v6 packet too big about a non-vip packet",
        PassIcmpError,
        IcmpError::about(PacketTooBig, reply_of(&client6(45301), "[fd00:200:10::1]:22")).cut_to(8).bytes(),
        None,
    )?;
    run.passed("v4 frag needed about an icmp echo from the vip", PassIcmpError, {
        IcmpError::about(FragmentationNeeded, Frame::echo("10.200.99.1:0", &client(0))).bytes()
    }, None)?;
    run.passed("v4 frag needed quoting a later fragment (no ports)", PassIcmpError, {
        IcmpError::about(FragmentationNeeded, dsr_quoted.clone().with_fragment_offset(185)).cut_to(8).bytes()
    }, None)?;
    // Sent to someone else than the quoted packet's source: not about a packet we sent.
    run.passed("v4 frag needed about a vip flow, sent to another address", PassIcmpError, {
        let mut e = IcmpError::about(FragmentationNeeded, dsr_quoted.clone()).cut_to(8);
        e.to = "10.200.10.1".parse()?;
        e.bytes()
    }, None)?;
    // Not errors about a flow: the host's.
    run.passed("v4 time exceeded about a vip flow", PassNotTcpUdp, IcmpError::about(TimeExceeded, dsr_quoted.clone()).cut_to(8).bytes(), None)?;
    run.passed("icmpv4 echo request to a vip", PassNotTcpUdp, Frame::echo(&client(0), "10.200.99.1:0").bytes(), None)?;
    run.passed("icmpv6 echo request to a vip", PassNotTcpUdp, Frame::echo(&client6(0), "[fd00:200:99::1]:0").bytes(), None)?;
    run.passed("icmpv4 fragment", PassFragment, Frame::echo(&client(0), "10.200.99.1:0").with_more_fragments().bytes(), None)?;
    // A flow whose service has no backend in service: nowhere to send it.
    run.lb.set_health("down4", sa("10.200.10.31:80"), false)?;
    let down = reply_of(&client(45601), "10.200.99.5:80");
    run.passed("v4 frag needed about a flow of a service with no backend up", PassIcmpError, IcmpError::about(FragmentationNeeded, down.clone()).cut_to(8).bytes(), Some(&down))?;

    // ---- a record whose backend went down: the error follows the flow's next packet ----------
    let dsr4_flow = reply_of(&client(45001), dsr4);
    let was = run.session_of(&dsr4_flow)?;
    let went = run.backend(was.backend_id)?;
    run.lb.set_health("dsr4", went.addr, false)?;
    let ex = run.lb.explain(&flow_of(&dsr4_flow))?.context("explain")?;
    let next = ex.backend.clone().context("explain: no backend")?;
    ensure!(next.id != went.id, "explain still names the down backend");
    // The record is left as it is (re-choosing is for the flow's own next packet).
    let events: &[Event] = if ex.second_choice_index.is_some() { &[Event::SecondChoice] } else { &[] };
    run.forwarded("v4 dsr frag needed, the record's backend is down: the table's choice", &IcmpError::about(FragmentationNeeded, dsr4_flow.clone()).cut_to(8), &next, Some(was), events)?;
    run.lb.set_health("dsr4", went.addr, true)?;

    // ---- quotas: an error follows a flow, it opens none, so it takes no quota token ---------
    // paced4's one backend takes 1 new flow a second (burst 1): had an error taken the token,
    // the SYN after it would find the backend at its quota (EveryChoiceFull).
    let paced4 = "10.200.99.4:80";
    let paced_backend = run.lb.service("paced4")?.backends[0].clone();
    for i in 0..3 {
        let e = IcmpError::about(FragmentationNeeded, reply_of(&client(45701 + i), paced4)).cut_to(8);
        run.forwarded(&format!("paced4 frag needed {i}, flow without a record"), &e, &paced_backend, None, &[])?;
    }
    run.open("paced4 syn after the errors: admitted, no quota event", &Frame::syn(&client(45800), paced4))?;

    println!("{} icmp fixtures", run.count);
    ensure!(run.failures.is_empty(), "{} of {} icmp fixtures failed:\n  {}", run.failures.len(), run.count, run.failures.join("\n  "));
    Ok(())
}
