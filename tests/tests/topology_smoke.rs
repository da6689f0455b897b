//! Smoke tests of the test bed itself, with no XDP program anywhere: the topologies carry real
//! TCP and UDP through plain kernel forwarding/switching, servers answer with their label, and
//! everything is gone after Drop, panics included. If these fail, no XDP test can be trusted.

use lb_tests::client::{TcpSession, tcp_ask, udp_ask};
use lb_tests::servers::{BackendServer, TcpServer};
use lb_tests::topology::{OneArm, TwoArm};
use lb_tests::{Netns, list_netns};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

const PORT: u16 = 7000;
const TIMEOUT: Duration = Duration::from_secs(3);

fn assert_all_gone(names: &[String]) {
    let now = list_netns().unwrap();
    for name in names {
        assert!(
            !now.contains(name),
            "namespace {name} still exists: {now:?}"
        );
    }
}

/// Asks every backend directly, over both families and both protocols.
fn ask_every_backend(client: &Netns, backends: &[lb_tests::topology::Host]) {
    for b in backends {
        for v6 in [false, true] {
            let addr = b.addr(v6);
            assert_eq!(
                tcp_ask(client, addr, PORT, TIMEOUT).unwrap(),
                b.label(),
                "TCP {addr}"
            );
            assert_eq!(
                udp_ask(client, addr, PORT, 0, TIMEOUT).unwrap(),
                b.label(),
                "UDP {addr}"
            );
        }
    }
}

#[test]
fn two_arm_client_reaches_every_backend_through_lb_routing() {
    let topo = TwoArm::new(3).unwrap();
    let _servers = BackendServer::start_all(topo.backends(), PORT).unwrap();
    ask_every_backend(topo.client().ns(), topo.backends());

    // The path really crosses the lb: the client's route to a backend goes via arm0.
    let route = topo
        .client()
        .ns()
        .ip(&["route", "get", &topo.backend(0).v4().to_string()])
        .unwrap();
    assert!(
        route.contains(&format!("via {}", topo.lb_arm0().v4())),
        "{route}"
    );
    assert_eq!(topo.lb().ifaces().len(), 2);
    assert_eq!(topo.arm1_peer().1, "p-lb");
}

#[test]
fn one_arm_client_reaches_backends_directly_and_vip_is_configured() {
    let topo = OneArm::new(3).unwrap();
    let _servers = BackendServer::start_all(topo.backends(), PORT).unwrap();
    ask_every_backend(topo.client().ns(), topo.backends());

    let vip4: IpAddr = "10.200.100.1".parse().unwrap();
    let vip6: IpAddr = "fd00:200:100::1".parse().unwrap();
    for vip in [vip4, vip6] {
        topo.add_vip(vip).unwrap();
        topo.add_vip(vip).unwrap(); // idempotent
        let route = topo
            .client()
            .ns()
            .ip(&["route", "get", &vip.to_string()])
            .unwrap();
        assert!(
            route.contains(&format!("via {}", topo.lb().addr(vip.is_ipv6()))),
            "{route}"
        );
        for b in topo.backends() {
            let lo = b.ns().ip(&["addr", "show", "dev", "lo"]).unwrap();
            assert!(lo.contains(&vip.to_string()), "{} lo: {lo}", b.label());
        }
    }
    // Backends answer for the VIP on their own loopback (what DSR relies on).
    let b1 = topo.backend(1);
    assert_eq!(tcp_ask(b1.ns(), vip4, PORT, TIMEOUT).unwrap(), b1.label());
    assert_eq!(
        udp_ask(b1.ns(), vip6, PORT, 0, TIMEOUT).unwrap(),
        b1.label()
    );
    // The lb's switch-side peer is a real interface in the switch namespace, and both ends
    // carry the offload settings native XDP on veth needs.
    let (switch, port) = topo.lb_peer();
    assert!(switch.ifindex(port).unwrap() > 0);
    for (ns, dev) in [(switch, port), (topo.lb().ns(), topo.lb().dev())] {
        let features = ns.exec(&["ethtool", "-k", dev]).unwrap();
        assert!(
            features.contains("generic-receive-offload: on"),
            "{dev}: {features}"
        );
        assert!(
            features.contains("tx-checksumming: off"),
            "{dev}: {features}"
        );
    }
}

/// DSR with the kernel as a perfect balancer: the client routes the VIP straight to one
/// backend, which answers from the VIP (TCP by nature, UDP thanks to pktinfo). The client's
/// connected UDP socket would drop a reply from the backend's own address.
#[test]
fn one_arm_backends_answer_from_the_vip() {
    let topo = OneArm::new(3).unwrap();
    let _servers = BackendServer::start_all(topo.backends(), PORT).unwrap();
    let client = topo.client().ns();
    for (vip, v6) in [("10.200.100.2", false), ("fd00:200:100::2", true)] {
        let vip: IpAddr = vip.parse().unwrap();
        topo.add_vip(vip).unwrap();
        let b2 = topo.backend(2);
        let via = b2.addr(v6).to_string();
        client
            .ip(&[
                "route",
                "replace",
                &vip.to_string(),
                "via",
                &via,
                "dev",
                "eth0",
            ])
            .unwrap();
        assert_eq!(tcp_ask(client, vip, PORT, TIMEOUT).unwrap(), b2.label());
        assert_eq!(udp_ask(client, vip, PORT, 0, TIMEOUT).unwrap(), b2.label());
    }
}

#[test]
fn sessions_survive_another_backends_death_and_restart() {
    let topo = TwoArm::new(3).unwrap();
    let mut servers = BackendServer::start_all(topo.backends(), PORT).unwrap();
    let client = topo.client().ns();
    let mut sessions: Vec<TcpSession> = topo
        .backends()
        .iter()
        .map(|b| TcpSession::connect(client, b.addr(true), PORT, TIMEOUT).unwrap())
        .collect();
    for (s, b) in sessions.iter_mut().zip(topo.backends()) {
        assert_eq!(s.name(), b.label());
        assert_eq!(s.echo("hello").unwrap(), "hello");
    }

    servers[1].kill().unwrap();
    assert!(
        sessions[1].echo("are you there").is_err(),
        "killed backend still echoes"
    );
    assert!(tcp_ask(client, topo.backend(1).addr(false), PORT, TIMEOUT).is_err());
    assert!(udp_ask(client, topo.backend(1).addr(false), PORT, 0, TIMEOUT).is_err());
    assert_eq!(sessions[0].echo("still here").unwrap(), "still here");
    assert_eq!(sessions[2].echo("still here").unwrap(), "still here");

    servers[1].restart().unwrap();
    assert_eq!(
        tcp_ask(client, topo.backend(1).addr(false), PORT, TIMEOUT).unwrap(),
        "backend1"
    );
    assert_eq!(
        udp_ask(client, topo.backend(1).addr(true), PORT, 0, TIMEOUT).unwrap(),
        "backend1"
    );
}

#[test]
fn stop_listening_keeps_established_connections() {
    let topo = TwoArm::new(1).unwrap();
    let b = topo.backend(0);
    let mut server = TcpServer::start(b.ns(), b.label(), PORT).unwrap();
    let client = topo.client().ns();
    let mut session = TcpSession::connect(client, b.addr(false), PORT, TIMEOUT).unwrap();
    server.stop_listening().unwrap();
    assert!(!server.is_listening().unwrap());
    assert!(tcp_ask(client, b.addr(false), PORT, TIMEOUT).is_err());
    assert_eq!(session.echo("draining").unwrap(), "draining");
}

#[test]
fn udp_answers_use_a_fixed_source_port() {
    let topo = TwoArm::new(1).unwrap();
    let _servers = BackendServer::start_all(topo.backends(), PORT).unwrap();
    let b = topo.backend(0);
    for _ in 0..2 {
        // Same source port twice in a row: the first socket is closed before the second binds.
        assert_eq!(
            udp_ask(topo.client().ns(), b.addr(false), PORT, 40001, TIMEOUT).unwrap(),
            "backend0"
        );
    }
}

#[test]
fn dropping_a_topology_removes_all_its_namespaces() {
    let one = OneArm::new(3).unwrap();
    let two = TwoArm::new(3).unwrap();
    let names: Vec<String> = one
        .namespace_names()
        .into_iter()
        .chain(two.namespace_names())
        .collect();
    assert_eq!(names.len(), 2 * 6);
    let before = list_netns().unwrap();
    for name in &names {
        assert!(
            before.contains(name),
            "{name} missing while the topology lives"
        );
    }
    drop(one);
    drop(two);
    assert_all_gone(&names);
}

#[test]
fn a_panicking_test_still_cleans_up() {
    let seen = Mutex::new(Vec::new());
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let topo = TwoArm::new(3).unwrap();
        let _servers = BackendServer::start_all(topo.backends(), PORT).unwrap();
        *seen.lock().unwrap() = topo.namespace_names();
        // Also panic while the thread is inside a namespace: the guard must restore it.
        let _inside = topo.client().ns().enter().unwrap();
        panic!("test failure inside a topology");
    }));
    assert!(result.is_err());
    let names = seen.into_inner().unwrap();
    assert_eq!(names.len(), 6);
    assert_all_gone(&names);
    let after = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_eq!(
        after, before,
        "thread left in a test namespace after the panic"
    );
}

/// Pins down a trap for test authors: a thread spawned while inside `enter()` starts in the
/// entered namespace too (clone copies the caller's namespaces), so never start a runtime or
/// helper thread inside the guard unless that is what you want. Other threads are unaffected.
#[test]
fn enter_moves_this_thread_and_threads_it_spawns_then_restores() {
    let ns = Netns::new("enter").unwrap();
    let outside = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    {
        let _inside = ns.enter().unwrap();
        let inside = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_ne!(inside, outside);
        let child = std::thread::spawn(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
            .join()
            .unwrap();
        assert_eq!(
            child, inside,
            "a thread spawned inside inherits the namespace"
        );
    }
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        outside
    );
}

#[test]
fn command_errors_name_the_command_and_its_stderr() {
    let ns = Netns::new("errors").unwrap();
    let err = format!(
        "{:#}",
        ns.exec(&["ip", "link", "show", "dev", "nope0"])
            .unwrap_err()
    );
    assert!(err.contains("ip link show dev nope0"), "{err}");
    assert!(err.contains("nope0\" does not exist"), "{err}");
    assert!(ns.ifindex("lo").unwrap() == 1);
}
