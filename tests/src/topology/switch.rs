//! A namespace holding one Linux bridge: the L2 segment hosts plug into.
//!
//! A bridge in its own namespace (instead of veth pairs straight into the lb) lets the one-arm
//! lb, backends and client share a segment exactly like hosts on a real switch, and gives each
//! host a switch-side port a test can put an XDP program on.

use super::setup::veth_pair;
use crate::netns::Netns;
use anyhow::Result;

/// Name of the bridge inside the switch namespace.
pub const BRIDGE: &str = "br0";

#[derive(Debug)]
pub struct Switch {
    pub(crate) ns: Netns,
}

impl Switch {
    /// Creates the namespace and a bridge without STP (ports forward at once) and without
    /// multicast snooping (IPv6 neighbour discovery must flood, there is no querier). IPv6 is
    /// off in this namespace so its ports add no router solicitations or MLD to test traffic.
    pub(crate) fn new() -> Result<Switch> {
        let ns = Netns::new("switch")?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        ns.ip(&[
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        ns.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(Switch { ns })
    }

    /// Connects `host_dev` in `host` to switch port `port`; the port is up, the host end is
    /// left down for the caller to configure (see `setup::configure`).
    pub(crate) fn plug(&self, host: &Netns, host_dev: &str, port: &str) -> Result<()> {
        veth_pair(&self.ns, port, host, host_dev)?;
        self.ns.ip(&["link", "set", port, "master", BRIDGE, "up"])?;
        Ok(())
    }
}

/// The switch port name for a host label (`p-client`, `p-lb`, `p-backend0`); at most 15 chars.
pub(crate) fn port_name(label: &str) -> String {
    let mut name = format!("p-{label}");
    name.truncate(15);
    name
}
