//! The round's services and seed frames: every kind the fixtures use (SYN, later packets, FIN,
//! UDP, both families, a VLAN tag, IPv4 options, Ethernet padding, fragments, other
//! protocols, other addresses) and NAT replies of flows recorded first.

#[allow(dead_code)]
#[path = "../../tests/fixtures/frames.rs"]
mod frames;

use std::net::SocketAddr;

use anyhow::{Context, Result};
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
        let backend = backend_addr(lb, session.backend_id).context("a recorded backend")?;
        let reply = match r.l4 {
            L4::Udp => Frame::udp(&backend.to_string(), &r.src.to_string()),
            _ => Frame::ack(&backend.to_string(), &r.src.to_string()),
        };
        seeds.push(reply.clone().bytes());
        if let L4::Tcp { .. } = reply.l4 {
            seeds.push(reply.fin().bytes());
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

fn backend_addr(lb: &Balancer, id: u32) -> Option<SocketAddr> {
    lb.services().iter().flat_map(|s| &s.backends).find(|b| b.id == id).map(|b| b.addr)
}
