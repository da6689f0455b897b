//! The steps every topology repeats: namespace sysctls, veth pairs with the offload settings
//! native XDP needs, addresses, and static neighbour entries.

use super::host::Iface;
use crate::netns::{Netns, format_mac};
use anyhow::{Context, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Sysctls for a host namespace, set BEFORE its interfaces exist so `default` applies to them.
/// - no IPv6 DAD: addresses are usable at once instead of "tentative" for a second;
/// - no reverse-path filter: XDP paths are asymmetric by design (DSR replies bypass the lb);
pub(crate) fn prepare_host(ns: &Netns) -> Result<()> {
    for scope in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
        ns.sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
    }
    Ok(())
}

/// Extra sysctls for the load-balancer host: it forwards (TwoArm routing, fib lookups in XDP)
/// but must not send ICMP redirects when it forwards out the interface a packet came in on.
pub(crate) fn prepare_router(ns: &Netns) -> Result<()> {
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    for scope in ["all", "default"] {
        ns.sysctl(&format!("net.ipv4.conf.{scope}.send_redirects"), "0")?;
    }
    Ok(())
}

/// Creates a veth pair `a_dev` (in `a`) <-> `b_dev` (in `b`), both ends DOWN, with GRO on and
/// TX checksum offload off on both. Both ends are created directly in their namespaces, so
/// nothing ever appears in the root namespace. Why the offloads (toolchain README, measured):
/// native XDP redirect/TX into a veth is dropped unless the receiving end's peer has GRO on
/// (or an XDP program), and GRO only takes if set before the link goes up; without software
/// checksums, redirected frames arrive with bad L4 checksums.
pub(crate) fn veth_pair(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_dev,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ])?;
    for (ns, dev) in [(a, a_dev), (b, b_dev)] {
        ns.exec(&["ethtool", "-K", dev, "gro", "on", "tx", "off"])?;
    }
    Ok(())
}

/// Brings `dev` up, adds the addresses and returns what tests need to know about it.
/// Addresses are added with `nodad` as well, in case the sysctl did not reach this device.
pub(crate) fn configure(
    ns: &Netns,
    dev: &str,
    v4: (Ipv4Addr, u8),
    v6: (Ipv6Addr, u8),
) -> Result<Iface> {
    ns.ip_batch(&[
        format!("link set {dev} up"),
        format!("addr add {}/{} dev {dev}", v4.0, v4.1),
        format!("addr add {}/{} dev {dev} nodad", v6.0, v6.1),
    ])?;
    Ok(Iface {
        name: dev.to_owned(),
        v4: v4.0,
        v6: v6.0,
        mac: ns.mac(dev)?,
        ifindex: ns.ifindex(dev)?,
    })
}

/// Gives every member of one L2 segment a permanent neighbour entry (v4 and v6) for every
/// other member. The XDP program's bpf_fib_lookup returns NO_NEIGH without them, and a
/// `permanent` entry (unlike `reachable`) never ages into a state that needs a probe.
pub(crate) fn fill_neighbours(segment: &[(&Netns, &Iface)]) -> Result<()> {
    for (ns, me) in segment {
        let lines: Vec<String> = segment
            .iter()
            .filter(|(other_ns, other)| other_ns.name() != ns.name() || other.name != me.name)
            .flat_map(|(_, other)| {
                let mac = format_mac(&other.mac);
                [
                    format!(
                        "neigh replace {} lladdr {mac} nud permanent dev {}",
                        other.v4, me.name
                    ),
                    format!(
                        "neigh replace {} lladdr {mac} nud permanent dev {}",
                        other.v6, me.name
                    ),
                ]
            })
            .collect();
        ns.ip_batch(&lines)
            .with_context(|| format!("neighbours of {} in {}", me.name, ns.name()))?;
    }
    Ok(())
}

/// The address of host number `host` in a /24 + /64 pair of subnets: 10.200.<net>.<host> and
/// fd00:200:<net>::<host> (the v6 host part reuses the decimal digits, so .11 pairs with ::11).
pub(crate) fn subnet_addr(net: u8, host: u16) -> Result<((Ipv4Addr, u8), (Ipv6Addr, u8))> {
    let last = u8::try_from(host)
        .ok()
        .filter(|h| (1..=254).contains(h))
        .with_context(|| format!("host number {host} does not fit in a /24"))?;
    let v6: Ipv6Addr = format!("fd00:200:{net}::{host}")
        .parse()
        .with_context(|| format!("host number {host} as IPv6"))?;
    Ok(((Ipv4Addr::new(10, 200, net, last), 24), (v6, 64)))
}
