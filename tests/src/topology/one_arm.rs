//! One-arm (DSR) topology: client, lb and backends on one switched segment.
//!
//! ```text
//!   client 10.200.1.2 ─┐
//!   lb     10.200.1.1 ─┼─ br0 (switch ns)     v6: fd00:200:1::<same host number>/64
//!   backend i  .11+i  ─┘
//! ```
//! The lb answers nothing itself: its XDP program rewrites the destination MAC to a backend's
//! and sends the frame back out the same interface (XDP_TX); the backend, holding the VIP on
//! `lo`, replies straight to the client.

use super::common::Topology;
use super::host::Host;
use super::setup::{configure, fill_neighbours, prepare_host, prepare_router, subnet_addr};
use super::switch::{Switch, port_name};
use crate::netns::Netns;
use anyhow::{Result, bail};
use std::net::IpAddr;
use std::ops::Deref;

/// Third octet of the one-arm subnet (10.200.1.0/24, fd00:200:1::/64).
pub const ONE_ARM_NET: u8 = 1;
/// The host device name in every one-arm host.
const DEV: &str = "eth0";

/// The hosts (client, lb, backends: `Topology`'s accessors) on one segment.
#[derive(Debug)]
pub struct OneArm {
    topology: Topology,
}

impl Deref for OneArm {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.topology
    }
}

impl OneArm {
    /// Builds the topology with `backends` backend hosts (1..=200).
    pub fn new(backends: usize) -> Result<OneArm> {
        if !(1..=200).contains(&backends) {
            bail!("OneArm needs 1..=200 backends, got {backends}");
        }
        let switch = Switch::new()?;
        let lb = host(&switch, "lb", 1, true)?;
        let client = host(&switch, "client", 2, false)?;
        let backends = (0..backends)
            .map(|i| host(&switch, &format!("backend{i}"), 11 + i as u16, false))
            .collect::<Result<Vec<_>>>()?;
        let topology = Topology {
            switch,
            client,
            lb,
            backends,
        };
        let segment: Vec<_> = topology.hosts().map(|h| (&h.ns, h.iface())).collect();
        fill_neighbours(&segment)?;
        Ok(OneArm { topology })
    }

    /// The switch-side peer of the lb's `eth0`. Native XDP_TX on a veth is dropped unless this
    /// peer has an XDP program of its own: attach an XDP_PASS program here.
    pub fn lb_peer(&self) -> (&Netns, &str) {
        (self.switch(), "p-lb")
    }

    /// Makes `vip` a DSR service address: on every backend's `lo` (/32 or /128) with
    /// arp_ignore=1 / arp_announce=2 so backends neither answer ARP for it nor use it as ARP
    /// source, and routed by the client via the lb. Idempotent.
    pub fn add_vip(&self, vip: IpAddr) -> Result<()> {
        let (prefix, family, via) = match vip {
            IpAddr::V4(_) => (32, "-4", self.lb.addr(false)),
            IpAddr::V6(_) => (128, "-6", self.lb.addr(true)),
        };
        for b in &self.backends {
            b.ns.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
            b.ns.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
            b.ns.ip(&[
                family,
                "addr",
                "replace",
                &format!("{vip}/{prefix}"),
                "dev",
                "lo",
            ])?;
        }
        self.client.ns.ip(&[
            family,
            "route",
            "replace",
            &vip.to_string(),
            "via",
            &via.to_string(),
            "dev",
            DEV,
        ])?;
        Ok(())
    }
}

/// Creates host `label` with host number `n` on the one-arm segment.
fn host(switch: &Switch, label: &str, n: u16, router: bool) -> Result<Host> {
    let ns = Netns::new(label)?;
    prepare_host(&ns)?;
    if router {
        prepare_router(&ns)?;
    }
    switch.plug(&ns, DEV, &port_name(label))?;
    let (v4, v6) = subnet_addr(ONE_ARM_NET, n)?;
    let iface = configure(&ns, DEV, v4, v6)?;
    Ok(Host {
        label: label.to_owned(),
        ns,
        ifaces: vec![iface],
    })
}
