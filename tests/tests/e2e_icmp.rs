//! ICMP errors about flows with real kernels at both ends (issue 14, part 4): the real `lb run`
//! in NAT mode on a two-arm topology and in DSR mode on a one-arm one, native XDP on veth, IPv4
//! and IPv6. A connected
//! UDP socket learns of an ICMP port unreachable (ECONNREFUSED) only if the error quotes a
//! packet it sent, with its own addresses and ports: so the error must have been rewritten
//! right, on its way to the client (quoting VIP:port, not the backend) and on its way to the
//! backend (quoting the backend, not the VIP); in DSR, to the backend as it came. Without the
//! ICMP path the errors reach their host unchanged (or not at all) and the socket waits in vain.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use lb_tests::{
    daemon::{LbDaemon, outcome},
    lb_config::{ServiceConfig, render},
    servers::BackendServer,
    topology::{OneArm, TwoArm},
    xdp_pass::PassProgram,
};

const BACKEND_PORT: u16 = 8080;
const VIP_PORT: u16 = 53;
/// How long a socket waits for the error: a bound on the wait, not a pause.
const WAIT: Duration = Duration::from_secs(5);

fn udp_socket(ns: &lb_tests::netns::Netns, local: SocketAddr) -> UdpSocket {
    let socket = {
        let _inside = ns.enter().expect("enter the namespace");
        // A killed server's port may be held for a moment by its exiting children.
        lb_tests::client::bind_udp(local).unwrap_or_else(|e| panic!("bind {local} in {}: {e}", ns.name()))
    };
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket
}

/// The receive on `socket` fails with "connection refused": the kernel matched an ICMP port
/// unreachable to it. A kernel may rate-limit the error it answers with (ICMP rate limits are
/// its business, not the lb's): if none came, `resend` sends the datagram once more; if still
/// none comes, the lb's counters are shown.
fn assert_refused(socket: &UdpSocket, what: &str, lb: &LbDaemon, resend: impl Fn()) {
    let mut buf = [0u8; 512];
    for attempt in 1..=2 {
        match socket.recv(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) && attempt == 1 => {
                eprintln!("{what}: no ICMP error within {WAIT:?}; sending again");
                resend();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let status = lb.status().map(|s| s["outcomes"].to_string()).unwrap_or_else(|e| e.to_string());
                panic!("{what}: no ICMP error reached the socket within {WAIT:?}, twice; the lb's outcomes: {status}")
            }
            other => panic!("{what}: expected connection refused, got {other:?}"),
        }
    }
}

fn port_unreachable_both_ways(v6: bool) {
    let topo = TwoArm::new(1).expect("topology");
    let vip: IpAddr = if v6 { "fd00:200:100::1" } else { "10.200.100.1" }.parse().unwrap();
    let mut servers = BackendServer::start_all(topo.backends(), BACKEND_PORT).expect("servers");
    let service = ServiceConfig {
        name: "dns".into(),
        vip,
        port: VIP_PORT,
        protocol: "udp",
        forwarding: "nat",
        backends: vec![topo.backend(0).addr(v6)],
        backend_port: BACKEND_PORT,
    };
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start(topo.lb().ns(), &render(&[service]), &arms).expect("lb run");
    // Health is checked over TCP on the same port: the backend stays in service without its
    // UDP server.
    lb.wait_in_service("dns", 1, Duration::from_secs(20)).expect("the backend in service");
    servers[0].udp.kill().expect("stop the UDP server");
    let client = topo.client();
    let backend = topo.backend(0);
    let vip_end = SocketAddr::new(vip, VIP_PORT);

    // 1. To the client: its datagram reaches a closed port on the backend, whose kernel
    // answers port unreachable quoting client -> backend:8080. The client's socket only
    // takes it quoting client -> VIP:53.
    let asking = udp_socket(client.ns(), SocketAddr::new(client.addr(v6), 0));
    asking.connect(vip_end).unwrap();
    asking.send(b"anyone?").unwrap();
    assert_refused(&asking, "the client's socket", &lb, || {
        asking.send(b"anyone?").unwrap();
    });
    let status = lb.status().unwrap();
    assert!(outcome(&status, "redirect_icmp_to_client") >= 1, "{status}");

    // 2. To the backend: it answers a client that has closed its socket. The client's kernel
    // answers port unreachable to the reply's source, the VIP, quoting VIP:53 -> client; the
    // backend's connected socket only takes it quoting backend:8080 -> client.
    let answering = udp_socket(backend.ns(), SocketAddr::new(backend.addr(v6), BACKEND_PORT));
    let leaving = udp_socket(client.ns(), SocketAddr::new(client.addr(v6), 0));
    leaving.connect(vip_end).unwrap();
    leaving.send(b"ask, then leave").unwrap();
    let mut buf = [0u8; 512];
    let (_, from) = answering.recv_from(&mut buf).expect("the client's datagram at the backend");
    assert_eq!(from, leaving.local_addr().unwrap(), "NAT keeps the client's address and port");
    answering.connect(from).unwrap();
    drop(leaving);
    answering.send(b"too late").unwrap();
    assert_refused(&answering, "the backend's socket", &lb, || {
        answering.send(b"too late").unwrap();
    });
    let status = lb.status().unwrap();
    assert!(outcome(&status, "redirect_icmp_to_backend") >= 1, "{status}");
    assert_eq!(outcome(&status, "pass_icmp_error"), 0, "{status}");

    drop(servers);
    lb.stop().expect("clean exit on SIGTERM");
}

/// DSR: the backend answers a client that has closed its socket, straight from the VIP; the
/// client's kernel answers port unreachable to the VIP, which the client routes via the lb.
/// The lb must send it on to the backend (MACs only), whose socket holds VIP:port.
fn dsr_port_unreachable_reaches_the_backend(v6: bool) {
    const PORT: u16 = 8080;
    let topo = OneArm::new(1).expect("topology");
    let vip: IpAddr = if v6 { "fd00:200:100::1" } else { "10.200.100.1" }.parse().unwrap();
    topo.add_vip(vip).expect("VIP on the backend");
    let mut servers = BackendServer::start_all(topo.backends(), PORT).expect("servers");
    let (switch, lb_peer) = topo.lb_peer();
    let _pass = PassProgram::attach(switch, lb_peer).expect("XDP_PASS on the lb's switch port");
    let service = ServiceConfig {
        name: "dns".into(),
        vip,
        port: PORT,
        protocol: "udp",
        forwarding: "dsr",
        backends: vec![topo.backend(0).addr(v6)],
        backend_port: PORT,
    };
    let mut lb = LbDaemon::start(topo.lb().ns(), &render(&[service]), &[topo.lb().dev()]).expect("lb run");
    lb.wait_in_service("dns", 1, Duration::from_secs(20)).expect("the backend in service");
    servers[0].udp.kill().expect("stop the UDP server");
    let client = topo.client();
    let vip_end = SocketAddr::new(vip, PORT);

    let answering = udp_socket(topo.backend(0).ns(), vip_end);
    let leaving = udp_socket(client.ns(), SocketAddr::new(client.addr(v6), 0));
    leaving.connect(vip_end).unwrap();
    leaving.send(b"ask, then leave").unwrap();
    let mut buf = [0u8; 512];
    let (_, from) = answering.recv_from(&mut buf).expect("the client's datagram at the backend");
    answering.connect(from).unwrap();
    drop(leaving);
    answering.send(b"too late").unwrap();
    assert_refused(&answering, "the backend's socket", &lb, || {
        answering.send(b"too late").unwrap();
    });
    let status = lb.status().unwrap();
    assert!(outcome(&status, "tx_icmp_to_backend") >= 1, "{status}");

    drop(servers);
    lb.stop().expect("clean exit on SIGTERM");
}

#[test]
fn nat_ipv4_port_unreachable_reaches_client_and_backend() {
    port_unreachable_both_ways(false);
}

#[test]
fn nat_ipv6_port_unreachable_reaches_client_and_backend() {
    port_unreachable_both_ways(true);
}

#[test]
fn dsr_ipv4_port_unreachable_reaches_the_backend() {
    dsr_port_unreachable_reaches_the_backend(false);
}

#[test]
fn dsr_ipv6_port_unreachable_reaches_the_backend() {
    dsr_port_unreachable_reaches_the_backend(true);
}
