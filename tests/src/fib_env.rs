//! A namespace in which the XDP program can be run with BPF_PROG_TEST_RUN and get real answers
//! from bpf_fib_lookup: two veth pairs (a0 = one-arm side, b0 = the second arm), addresses,
//! forwarding on, and permanent neighbour entries with made-up MACs for every host the
//! benchmark and fixtures address.

use anyhow::Result;

use crate::netns::Netns;

pub const A_NET4: &str = "10.200.10";
pub const B_NET4: &str = "10.200.20";

/// Hosts on a0's subnet (client .2, backends .11-.13, .21) and b0's subnet (.11, .12, .21).
const A_HOSTS: [u8; 5] = [2, 11, 12, 13, 21];
const B_HOSTS: [u8; 3] = [11, 12, 21];

pub struct FibEnv {
    pub ns: Netns,
    pub a0_ifindex: u32,
    pub b0_ifindex: u32,
    pub a0_mac: [u8; 6],
    pub b0_mac: [u8; 6],
}

/// MAC the environment gives the neighbour `host` on arm `arm` (0xa or 0xb).
pub fn neighbour_mac(arm: u8, host: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, arm, host]
}

impl FibEnv {
    pub fn new(tag: &str) -> Result<FibEnv> {
        let ns = Netns::new(tag)?;
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ] {
            ns.sysctl(k, v)?;
        }
        let mut lines = vec![
            "link add a0 type veth peer name a1".to_string(),
            "link add b0 type veth peer name b1".to_string(),
        ];
        for dev in ["a0", "a1", "b0", "b1"] {
            lines.push(format!("link set {dev} up"));
        }
        lines.push(format!("addr add {A_NET4}.1/24 dev a0"));
        lines.push("addr add fd00:200:10::1/64 dev a0 nodad".into());
        lines.push(format!("addr add {B_NET4}.1/24 dev b0"));
        lines.push("addr add fd00:200:20::1/64 dev b0 nodad".into());
        for (arm, dev, net4, net6, hosts) in [
            (0xa, "a0", A_NET4, "fd00:200:10", &A_HOSTS[..]),
            (0xb, "b0", B_NET4, "fd00:200:20", &B_HOSTS[..]),
        ] {
            for &h in hosts {
                let mac = crate::netns::format_mac(&neighbour_mac(arm, h));
                lines.push(format!(
                    "neigh replace {net4}.{h} lladdr {mac} nud permanent dev {dev}"
                ));
                lines.push(format!(
                    "neigh replace {net6}::{h} lladdr {mac} nud permanent dev {dev}"
                ));
            }
        }
        ns.ip_batch(&lines)?;
        Ok(FibEnv {
            a0_ifindex: ns.ifindex("a0")?,
            b0_ifindex: ns.ifindex("b0")?,
            a0_mac: ns.mac("a0")?,
            b0_mac: ns.mac("b0")?,
            ns,
        })
    }

    /// The xdp_md context that makes a test run of a `frame_len`-byte frame look as if the
    /// frame arrived on a0. The kernel insists that data_end equals the frame's length; with
    /// zero it runs the program on an empty frame.
    pub fn ctx_from_a0(&self, frame_len: usize) -> [u8; 24] {
        xdp_md(frame_len, self.a0_ifindex)
    }
}

/// An xdp_md (data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex) for
/// BPF_PROG_TEST_RUN's ctx_in: a `frame_len`-byte frame received on `ingress_ifindex`.
pub fn xdp_md(frame_len: usize, ingress_ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame_len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}
