//! What a test needs to know about one host of a topology: its namespace, interfaces, addresses.

use crate::netns::Netns;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One configured interface: name, addresses, and the identifiers XDP/neighbour code needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub(crate) name: String,
    pub(crate) v4: Ipv4Addr,
    pub(crate) v6: Ipv6Addr,
    pub(crate) mac: [u8; 6],
    pub(crate) ifindex: u32,
}

impl Iface {
    /// Interface name inside its host's namespace.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn v4(&self) -> Ipv4Addr {
        self.v4
    }
    pub fn v6(&self) -> Ipv6Addr {
        self.v6
    }
    /// The v4 or v6 address.
    pub fn addr(&self, v6: bool) -> IpAddr {
        if v6 { self.v6.into() } else { self.v4.into() }
    }
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// A host: one namespace with one or more configured interfaces. The label ("client", "lb",
/// "backend0", ...) is also what backend servers answer with, so a reply names its server.
#[derive(Debug)]
pub struct Host {
    pub(crate) label: String,
    pub(crate) ns: Netns,
    pub(crate) ifaces: Vec<Iface>,
}

impl Host {
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
    /// All configured interfaces, in the order the topology documents.
    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }
    /// The first (for most hosts: only) interface.
    pub fn iface(&self) -> &Iface {
        &self.ifaces[0]
    }
    /// Shorthands for the first interface.
    pub fn dev(&self) -> &str {
        self.iface().name()
    }
    pub fn v4(&self) -> Ipv4Addr {
        self.iface().v4
    }
    pub fn v6(&self) -> Ipv6Addr {
        self.iface().v6
    }
    pub fn addr(&self, v6: bool) -> IpAddr {
        self.iface().addr(v6)
    }
    pub fn mac(&self) -> [u8; 6] {
        self.iface().mac
    }
}
