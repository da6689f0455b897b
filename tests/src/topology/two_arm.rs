//! Two-arm (NAT) topology: the lb routes between a client side and a backend side.
//!
//! ```text
//!   client eth0 10.200.2.2 ── arm0 10.200.2.1 [lb] arm1 10.200.3.1 ── br0 (switch ns) ─┬─ backend0 .11
//!          fd00:200:2::2         fd00:200:2::1       fd00:200:3::1                      └─ backend i .11+i
//! ```
//! The client's and the backends' default routes point at the lb, so without XDP the kernel
//! forwards between the arms; with XDP the program rewrites and redirects between arm0/arm1.

use super::common::Topology;
use super::host::{Host, Iface};
use super::setup::{
    configure, fill_neighbours, prepare_host, prepare_router, subnet_addr, veth_pair,
};
use super::switch::{Switch, port_name};
use crate::netns::{Netns, format_mac};
use anyhow::{Result, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Deref;

/// Third octet of the client-side subnet (10.200.2.0/24, fd00:200:2::/64).
pub const CLIENT_NET: u8 = 2;
/// Third octet of the backend-side subnet (10.200.3.0/24, fd00:200:3::/64).
pub const BACKEND_NET: u8 = 3;

const ARM0: &str = "arm0";
const ARM1: &str = "arm1";
const DEV: &str = "eth0";

/// The hosts (client, lb, backends: `Topology`'s accessors) with the lb between two
/// segments; the lb's ifaces[0] is arm0 (client side), ifaces[1] arm1 (backend side).
#[derive(Debug)]
pub struct TwoArm {
    topology: Topology,
}

impl Deref for TwoArm {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.topology
    }
}

impl TwoArm {
    /// Builds the topology with `backends` backend hosts (1..=200).
    pub fn new(backends: usize) -> Result<TwoArm> {
        if !(1..=200).contains(&backends) {
            bail!("TwoArm needs 1..=200 backends, got {backends}");
        }
        let switch = Switch::new()?;

        let lb_ns = Netns::new("lb")?;
        prepare_host(&lb_ns)?;
        prepare_router(&lb_ns)?;
        let client_ns = Netns::new("client")?;
        prepare_host(&client_ns)?;

        // Client side: a direct veth pair lb:arm0 <-> client:eth0.
        veth_pair(&lb_ns, ARM0, &client_ns, DEV)?;
        let (lb_v4, lb_v6) = subnet_addr(CLIENT_NET, 1)?;
        let arm0 = configure(&lb_ns, ARM0, lb_v4, lb_v6)?;
        let (c_v4, c_v6) = subnet_addr(CLIENT_NET, 2)?;
        let client_if = configure(&client_ns, DEV, c_v4, c_v6)?;
        default_routes(&client_ns, &arm0)?;

        // Backend side: lb:arm1 and every backend on the switch.
        switch.plug(&lb_ns, ARM1, &port_name("lb"))?;
        let (lb_v4, lb_v6) = subnet_addr(BACKEND_NET, 1)?;
        let arm1 = configure(&lb_ns, ARM1, lb_v4, lb_v6)?;
        let backends = (0..backends)
            .map(|i| backend(&switch, i, &arm1))
            .collect::<Result<Vec<_>>>()?;

        let client = Host {
            label: "client".into(),
            ns: client_ns,
            ifaces: vec![client_if],
        };
        let lb = Host {
            label: "lb".into(),
            ns: lb_ns,
            ifaces: vec![arm0, arm1],
        };
        fill_neighbours(&[(&client.ns, client.iface()), (&lb.ns, &lb.ifaces[0])])?;
        let backend_side: Vec<_> = std::iter::once((&lb.ns, &lb.ifaces[1]))
            .chain(backends.iter().map(|b| (&b.ns, b.iface())))
            .collect();
        fill_neighbours(&backend_side)?;
        Ok(TwoArm {
            topology: Topology {
                switch,
                client,
                lb,
                backends,
            },
        })
    }

    /// The lb's client-side interface.
    pub fn lb_arm0(&self) -> &Iface {
        &self.lb.ifaces[0]
    }
    /// The lb's backend-side interface.
    pub fn lb_arm1(&self) -> &Iface {
        &self.lb.ifaces[1]
    }
    /// The peer of arm0 (the client's eth0): frames redirected out arm0 arrive there.
    /// It has GRO on; attach an XDP program here too if a test needs it.
    pub fn arm0_peer(&self) -> (&Netns, &str) {
        (&self.client.ns, DEV)
    }
    /// The peer of arm1 (its switch port): frames redirected out arm1 arrive there.
    pub fn arm1_peer(&self) -> (&Netns, &str) {
        (self.switch(), "p-lb")
    }

    /// Gives the client another IPv4 address, 10.200.2.`host`, and the lb a neighbour entry for
    /// it (its replies are forwarded by XDP, which needs one). Connect from it with
    /// `client::TcpSession::connect_from`.
    pub fn add_client_address(&self, host: u8) -> Result<Ipv4Addr> {
        let ((addr, len), _) = subnet_addr(CLIENT_NET, u16::from(host))?;
        if addr == self.client.v4() || addr == self.lb_arm0().v4() {
            bail!("{addr} is already the client's or the lb's");
        }
        self.client.ns.ip(&["addr", "add", &format!("{addr}/{len}"), "dev", DEV])?;
        let mac = format_mac(&self.client.mac());
        self.lb.ns.ip(&["neigh", "replace", &addr.to_string(), "lladdr", &mac, "nud", "permanent", "dev", ARM0])?;
        Ok(addr)
    }

    /// Makes `vip` a DSR service address beside the NAT ones: on every backend's `lo` (/32 or
    /// /128) with arp_ignore=1 / arp_announce=2, as in `OneArm::add_vip`. The client needs no
    /// route (its default is the lb); a backend's answer leaves from the VIP by its default
    /// route, the lb's kernel forwards it to the client (not a NAT reply: XDP passes it).
    pub fn add_dsr_vip(&self, vip: IpAddr) -> Result<()> {
        let prefix = if vip.is_ipv6() { 128 } else { 32 };
        for b in &self.backends {
            b.ns.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
            b.ns.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
            b.ns.ip(&["addr", "replace", &format!("{vip}/{prefix}"), "dev", "lo"])?;
        }
        Ok(())
    }
}

/// Backend `i` on the switch, with its default routes via the lb's arm1.
fn backend(switch: &Switch, i: usize, lb_arm1: &Iface) -> Result<Host> {
    let label = format!("backend{i}");
    let ns = Netns::new(&label)?;
    prepare_host(&ns)?;
    switch.plug(&ns, DEV, &port_name(&label))?;
    let (v4, v6) = subnet_addr(BACKEND_NET, 11 + i as u16)?;
    let iface = configure(&ns, DEV, v4, v6)?;
    default_routes(&ns, lb_arm1)?;
    Ok(Host {
        label,
        ns,
        ifaces: vec![iface],
    })
}

/// Default routes (v4 and v6) via `gw`.
fn default_routes(ns: &Netns, gw: &Iface) -> Result<()> {
    ns.ip_batch(&[
        format!("route add default via {} dev {DEV}", gw.v4),
        format!("route add default via {} dev {DEV}", gw.v6),
    ])
}
