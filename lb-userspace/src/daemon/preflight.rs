//! Checks that need no kernel changes, so a bad start leaves nothing behind.

use std::net::IpAddr;

use anyhow::bail;

use crate::{config::Config, dataplane::ifindex};

pub fn check(interfaces: &[String], config: &Config) -> anyhow::Result<()> {
    if interfaces.is_empty() {
        bail!("no interface given: name the NIC(s) to attach to with --iface (repeat it for two-arm set-ups)");
    }
    for (i, iface) in interfaces.iter().enumerate() {
        if interfaces[..i].contains(iface) {
            bail!("interface {iface} is given twice in --iface");
        }
        ifindex(iface)?;
    }
    let v4 = config.services.iter().any(|s| matches!(s.vip, IpAddr::V4(_)));
    let v6 = config.services.iter().any(|s| matches!(s.vip, IpAddr::V6(_)));
    for iface in interfaces {
        // bpf_fib_lookup answers only for interfaces that forward, like the kernel's router.
        if v4 && !forwarding_on("ipv4", iface) {
            bail!(
                "IPv4 forwarding is off on {iface}, so the kernel's FIB will not route for the XDP program: \
                 run `sysctl -w net.ipv4.conf.{iface}.forwarding=1` (or net.ipv4.ip_forward=1) and retry"
            );
        }
        if v6 && !forwarding_on("ipv6", iface) {
            bail!(
                "IPv6 forwarding is off on {iface}, so the kernel's FIB will not route for the XDP program: \
                 run `sysctl -w net.ipv6.conf.{iface}.forwarding=1` and retry"
            );
        }
    }
    Ok(())
}

fn forwarding_on(family: &str, iface: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/{family}/conf/{iface}/forwarding"))
        .map(|v| v.trim() == "1")
        .unwrap_or(false)
}
