//! Real traffic through the real `lb run` in NAT mode on a two-arm topology (client | lb |
//! switch with 3 backends), native XDP on veth, over IPv4 and over IPv6: spread, stickiness,
//! failover, recovery, UDP, replies rewritten to come from the VIP, clean detach.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lb_tests::{
    balancing::{self, Dial},
    client::TcpSession,
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

/// Issue 14, part 1: a client connects to the VIP from port P, closes, then connects from the
/// same port straight to the backend that served it (clients behind a shared address reuse
/// ports all the time). The backend's replies to P carry the addresses of the old flow's
/// replies; they must reach the client untouched, not rewritten to come from the VIP.
fn client_port_reused_straight_to_the_backend(v6: bool) {
    let topo = TwoArm::new(2).expect("topology");
    let vip: IpAddr = if v6 { "fd00:200:100::1" } else { "10.200.100.1" }.parse().unwrap();
    let servers = BackendServer::start_all(topo.backends(), BACKEND_PORT).expect("servers");
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start(topo.lb().ns(), &config(&topo, vip), &arms).expect("lb run");
    let client = topo.client();
    let timeout = Duration::from_secs(5);
    let local = SocketAddr::new(client.addr(v6), 47_000 + std::process::id() as u16 % 1000);

    lb.wait_in_service("web", 2, Duration::from_secs(20)).expect("both backends in service");
    // Through the VIP, then closed by the client (FIN both ways, both rewritten).
    let mut via_vip = TcpSession::connect_bound(client.ns(), Some(local), vip, 80, timeout).expect("via the VIP");
    assert_eq!(via_vip.echo("hello").unwrap(), "hello");
    let served_by = via_vip.name().to_string();
    via_vip.close().expect("a clean close through the VIP");
    let backend = topo.backends().iter().find(|b| b.label() == served_by).expect("the serving backend");

    // Straight to that backend, from the same port: its handshake and data come back as sent.
    let mut direct = TcpSession::connect_bound(client.ns(), Some(local), backend.addr(v6), BACKEND_PORT, timeout)
        .unwrap_or_else(|e| panic!("{local} -> {}:{BACKEND_PORT} after a flow through the VIP: {e:#}", backend.addr(v6)));
    assert_eq!(direct.name(), served_by);
    assert_eq!(direct.echo("straight").unwrap(), "straight");
    direct.close().expect("a clean close straight to the backend");
    let status = lb.status().unwrap();
    assert!(status["events"]["reply_of_ended_flow"].as_u64().unwrap_or(0) >= 1, "{status}");

    // And through the VIP again from the same port: a new flow, rewritten as ever.
    let mut again = TcpSession::connect_bound(client.ns(), Some(local), vip, 80, timeout).expect("via the VIP again");
    assert_eq!(again.echo("again").unwrap(), "again");
    again.close().expect("a clean close");
    drop(servers);
    lb.stop().expect("clean exit on SIGTERM");
}

#[test]
fn nat_ipv4_a_closed_flow_does_not_claim_a_direct_connection_from_its_port() {
    client_port_reused_straight_to_the_backend(false);
}

#[test]
fn nat_ipv6_a_closed_flow_does_not_claim_a_direct_connection_from_its_port() {
    client_port_reused_straight_to_the_backend(true);
}
