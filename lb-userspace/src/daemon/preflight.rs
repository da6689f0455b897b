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

/// Loading an XDP program takes CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN; without them
/// the first refusal would come from deep in the load, after the pins and the admin socket.
pub fn privileges() -> anyhow::Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| anyhow::anyhow!("no CapEff line in /proc/self/status"))?;
    let has = |cap: u32| effective & (1 << cap) != 0;
    if !has(CAP_NET_ADMIN) || !(has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        bail!("lb run needs CAP_BPF and CAP_NET_ADMIN to load and attach XDP programs: run it as root");
    }
    Ok(())
}

fn forwarding_on(family: &str, iface: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/{family}/conf/{iface}/forwarding"))
        .map(|v| v.trim() == "1")
        .unwrap_or(false)
}
