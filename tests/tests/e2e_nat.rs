//! Real traffic through the real `lb run` in NAT mode on a two-arm topology (client | lb |
//! switch with 3 backends), native XDP on veth, over IPv4 and over IPv6: spread, stickiness,
//! failover, recovery, UDP, replies rewritten to come from the VIP, clean detach.

use std::net::IpAddr;

use lb_tests::{
    balancing::{self, Dial},
    daemon::{LbDaemon, idle_backends, outcome},
    lb_config::{ServiceConfig, render},
    servers::BackendServer,
    topology::TwoArm,
};

const BACKEND_PORT: u16 = 8080;

fn config(topo: &TwoArm, vip: IpAddr) -> String {
    let service = |name: &str, protocol, port| ServiceConfig {
        name: name.into(),
        vip,
        port,
        protocol,
        forwarding: "nat",
        backends: topo.backends().iter().map(|b| b.addr(vip.is_ipv6())).collect(),
        backend_port: BACKEND_PORT,
    };
    render(&[service("web", "tcp", 80), service("dns", "udp", 53)])
}

/// The whole story for one address family. The client's TCP handshakes and connected UDP
/// sockets only complete if replies come back FROM the VIP, which proves the reply path
/// rewrote them.
fn nat_two_arm(vip: &str) {
    let vip: IpAddr = vip.parse().unwrap();
    let topo = TwoArm::new(3).expect("topology");
    let mut servers = BackendServer::start_all(topo.backends(), BACKEND_PORT).expect("servers");
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start(topo.lb().ns(), &config(&topo, vip), &arms).expect("lb run");
    let client = topo.client().ns();

    let web = Dial { client, vip, port: 80, service: "web" };
    balancing::tcp_failover_and_recovery(&mut lb, web, &mut servers);
    let dns = Dial { client, vip, port: 53, service: "dns" };
    balancing::udp_spread(&mut lb, dns, &servers);

    // The XDP program forwarded both ways, to every backend. Nothing else could have: the
    // lb's kernel has no route to the VIP.
    let status = lb.status().unwrap();
    assert!(outcome(&status, "redirect_to_backend") > 0, "{status}");
    assert!(outcome(&status, "redirect_reply") > 0, "{status}");
    for service in ["web", "dns"] {
        let idle = idle_backends(&status, service);
        assert!(idle.is_empty(), "{service}: XDP sent nothing to {idle:?}: {status}");
    }
    lb.stop().expect("clean exit on SIGTERM");
}

#[test]
fn nat_two_arm_ipv4_balances_sticks_fails_over_and_recovers() {
    nat_two_arm("10.200.100.1");
}

#[test]
fn nat_two_arm_ipv6_balances_sticks_fails_over_and_recovers() {
    nat_two_arm("fd00:200:100::1");
}
