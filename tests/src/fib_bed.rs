//! The namespace in which the XDP program is run with BPF_PROG_TEST_RUN and gets real answers
//! from bpf_fib_lookup: three veth pairs with addresses and routes, forwarding on, and
//! permanent neighbour entries with made-up MACs for every host the fixtures, the live-map
//! tests and the bench address. Nothing is attached to the interfaces: a frame only "arrives"
//! on one through the ingress ifindex of the test run (see `xdp_test_run`).

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};

use crate::netns::{Netns, format_mac};

/// One interface of the bed, as the program sees it.
#[derive(Clone, Debug)]
pub struct Device {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// One namespace: a0<->a1 (one-arm side, where every test frame "arrives"), b0<->b1 (the
/// second arm, for tests to put in the EGRESS devmap) and c0<->c1 (routed; the fixtures leave
/// it out of the devmap on purpose).
pub struct FibBed {
    pub a0: Device,
    pub b0: Device,
    pub c0: Device,
    neighbours: HashMap<IpAddr, [u8; 6]>,
    // Last, so the namespace goes after everything that refers to it.
    pub ns: Netns,
}

/// Neighbours with permanent entries: (address, device). 10.200.10.99 is missing on purpose
/// (DropNoNeighbour), and nothing routes 10.200.77.0/24 (DropFibFailed).
const NEIGHBOURS: &[(&str, &str)] = &[
    // clients
    ("10.200.10.2", "a0"),
    ("fd00:200:10::2", "a0"),
    ("10.200.20.2", "b0"),
    ("fd00:200:20::2", "b0"),
    // backends on a0's subnet
    ("10.200.10.11", "a0"),
    ("10.200.10.12", "a0"),
    ("10.200.10.13", "a0"),
    ("10.200.10.21", "a0"),
    ("fd00:200:10::11", "a0"),
    ("fd00:200:10::12", "a0"),
    ("fd00:200:10::13", "a0"),
    ("fd00:200:10::21", "a0"),
    // backends on b0's subnet
    ("10.200.20.11", "b0"),
    ("10.200.20.12", "b0"),
    ("10.200.20.21", "b0"),
    ("fd00:200:20::11", "b0"),
    // backend behind c0
    ("10.200.30.11", "c0"),
];

/// A made-up, locally administered MAC for a neighbour: 02:5e:<dev>:<family>:<last two bytes>.
pub fn made_up_mac(ip: IpAddr, dev: &str) -> [u8; 6] {
    let dev_code = dev.as_bytes()[0];
    let (family, last) = match ip {
        IpAddr::V4(a) => (4, [a.octets()[2], a.octets()[3]]),
        IpAddr::V6(a) => (6, [a.octets()[14], a.octets()[15]]),
    };
    [0x02, 0x5e, dev_code, family, last[0], last[1]]
}

/// The `ip` command (batch syntax) that gives neighbour `ip` on `dev` a permanent entry.
fn neighbour_command(ip: IpAddr, dev: &str, mac: &[u8; 6]) -> String {
    format!("neigh replace {ip} lladdr {} nud permanent dev {dev}", format_mac(mac))
}

impl FibBed {
    pub fn new(tag: &str) -> Result<FibBed> {
        let ns = Netns::new(tag)?;
        // Before any address exists: forwarding (bpf_fib_lookup answers FWD_DISABLED without
        // it) and no duplicate address detection (tentative v6 addresses have no routes yet).
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.forwarding", "1"),
            ("net.ipv4.conf.default.forwarding", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ] {
            ns.sysctl(k, v)?;
        }
        let mut lines = Vec::new();
        for (dev, peer) in [("a0", "a1"), ("b0", "b1"), ("c0", "c1")] {
            lines.push(format!("link add {dev} type veth peer name {peer}"));
            lines.push(format!("link set {dev} up"));
            lines.push(format!("link set {peer} up"));
        }
        for (dev, v4, v6) in [
            ("a0", "10.200.10.1/24", "fd00:200:10::1/64"),
            ("b0", "10.200.20.1/24", "fd00:200:20::1/64"),
            ("c0", "10.200.30.1/24", "fd00:200:30::1/64"),
        ] {
            lines.push(format!("addr add {v4} dev {dev}"));
            lines.push(format!("addr add {v6} dev {dev} nodad"));
        }
        let mut neighbours = HashMap::new();
        for &(addr, dev) in NEIGHBOURS {
            let ip: IpAddr = addr.parse()?;
            let mac = made_up_mac(ip, dev);
            lines.push(neighbour_command(ip, dev, &mac));
            neighbours.insert(ip, mac);
        }
        ns.ip_batch(&lines)?;
        let device = |name: &'static str| -> Result<Device> {
            Ok(Device { ifindex: ns.ifindex(name)?, mac: ns.mac(name)? })
        };
        Ok(FibBed { a0: device("a0")?, b0: device("b0")?, c0: device("c0")?, neighbours, ns })
    }

    /// The MAC configured for neighbour `ip`.
    pub fn neighbour_mac(&self, ip: IpAddr) -> Result<[u8; 6]> {
        self.neighbours.get(&ip).copied().with_context(|| format!("no neighbour entry for {ip}"))
    }

    /// Every neighbour entry: (address, MAC).
    pub fn neighbours(&self) -> Vec<(IpAddr, [u8; 6])> {
        self.neighbours.iter().map(|(ip, mac)| (*ip, *mac)).collect()
    }

    /// The neighbour with this MAC, if any (to tell from a DSR frame where it went).
    pub fn neighbour_by_mac(&self, mac: [u8; 6]) -> Option<IpAddr> {
        self.neighbours.iter().find(|(_, m)| **m == mac).map(|(ip, _)| *ip)
    }

    /// Adds a permanent neighbour entry while the test runs.
    pub fn add_neighbour(&mut self, ip: IpAddr, dev: &str) -> Result<()> {
        self.change_neighbour_mac(ip, dev, made_up_mac(ip, dev))
    }

    /// Gives neighbour `ip` another MAC (a replaced host, a failover), as the kernel learns it.
    pub fn change_neighbour_mac(&mut self, ip: IpAddr, dev: &str, mac: [u8; 6]) -> Result<()> {
        self.ns.ip_batch(&[neighbour_command(ip, dev, &mac)])?;
        self.neighbours.insert(ip, mac);
        Ok(())
    }

    /// The interface the kernel's routes send `ip` out of (the subnets this bed configures).
    pub fn egress_for(&self, ip: IpAddr) -> Result<&Device> {
        // 10.200.<N>.0/24 and fd00:200:<N>::/64 (N written as decimal digits in hex) share N.
        let subnet = match ip {
            IpAddr::V4(a) if a.octets()[..2] == [10, 200] => Some(u16::from(a.octets()[2])),
            IpAddr::V6(a) if a.segments()[..2] == [0xfd00, 0x200] => {
                let s = a.segments()[2];
                Some(s / 16 * 10 + s % 16)
            }
            _ => None,
        };
        match subnet {
            Some(10) => Ok(&self.a0),
            Some(20) => Ok(&self.b0),
            Some(30) => Ok(&self.c0),
            _ => bail!("no route in the test bed for {ip}"),
        }
    }
}
