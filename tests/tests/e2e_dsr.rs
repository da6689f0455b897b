//! Real traffic through the real `lb run` in DSR mode on a one-arm topology (client, lb and 3
//! backends on one switch), native XDP on veth, over IPv4 and over IPv6: the lb only
//! re-addresses each frame to a backend and sends it back out its one interface (XDP_TX); the
//! backend, holding the VIP on `lo`, answers the client directly.

use std::net::IpAddr;

use lb_tests::{
    balancing::{self, Dial},
    daemon::{LbDaemon, idle_backends, outcome},
    lb_config::{ServiceConfig, render},
    servers::BackendServer,
    topology::OneArm,
    xdp_pass::PassProgram,
};

/// DSR cannot change the destination port: the service port is the backends' port.
const PORT: u16 = 8080;

fn config(topo: &OneArm, vip: IpAddr) -> String {
    let service = |name: &str, protocol| ServiceConfig {
        name: name.into(),
        vip,
        port: PORT,
        protocol,
        forwarding: "dsr",
        backends: topo.backends().iter().map(|b| b.addr(vip.is_ipv6())).collect(),
        backend_port: PORT,
    };
    render(&[service("web", "tcp"), service("dns", "udp")])
}

fn dsr_one_arm(vip: &str) {
    let vip: IpAddr = vip.parse().unwrap();
    let topo = OneArm::new(3).expect("topology");
    // Backends hold the VIP on lo (and do not answer ARP for it); the client routes it via the lb.
    topo.add_vip(vip).expect("VIP on backends");
    let mut servers = BackendServer::start_all(topo.backends(), PORT).expect("servers");
    let (switch, lb_peer) = topo.lb_peer();
    let pass = PassProgram::attach(switch, lb_peer).expect("XDP_PASS on the lb's switch port");
    let lb_dev = topo.lb().dev();
    let mut lb = LbDaemon::start(topo.lb().ns(), &config(&topo, vip), &[lb_dev]).expect("lb run");
    let client = topo.client().ns();

    let web = Dial { client, vip, port: PORT, service: "web" };
    balancing::tcp_failover_and_recovery(&mut lb, web, &mut servers);
    let dns = Dial { client, vip, port: PORT, service: "dns" };
    balancing::udp_spread(&mut lb, dns, &servers);

    // The XDP program sent the packets back out by XDP_TX, to every backend. Nothing else could
    // have: the lb's kernel has no route to the VIP.
    let status = lb.status().unwrap();
    assert!(outcome(&status, "tx_to_backend") > 0, "{status}");
    assert_eq!(outcome(&status, "redirect_to_backend"), 0, "one arm, no redirect: {status}");
    for service in ["web", "dns"] {
        let idle = idle_backends(&status, service);
        assert!(idle.is_empty(), "{service}: XDP sent nothing to {idle:?}: {status}");
    }

    lb.stop().expect("clean exit on SIGTERM");
    drop(pass);
    assert!(
        !switch.xdp_attached(lb_peer).unwrap(),
        "lb_pass still attached after its guard dropped"
    );
}

#[test]
fn dsr_one_arm_ipv4_balances_sticks_fails_over_and_recovers() {
    dsr_one_arm("10.200.100.1");
}

#[test]
fn dsr_one_arm_ipv6_balances_sticks_fails_over_and_recovers() {
    dsr_one_arm("fd00:200:100::1");
}

/// The test bed's XDP_PASS guard leaves nothing behind when a test panics while it is attached.
#[test]
fn lb_pass_detaches_when_a_test_panics() {
    let topo = OneArm::new(1).expect("topology");
    let (switch, lb_peer) = topo.lb_peer();
    let attached = || switch.xdp_attached(lb_peer).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _pass = PassProgram::attach(switch, lb_peer).expect("attach");
        assert!(attached(), "lb_pass not attached to {lb_peer}");
        panic!("test failure with lb_pass attached");
    }));
    assert!(result.is_err());
    assert!(!attached(), "lb_pass still attached to {lb_peer} after the panic");
}
