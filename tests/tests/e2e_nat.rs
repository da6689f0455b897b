//! Real traffic through the real `lb run` in NAT mode on a two-arm topology (client | lb |
//! switch with 3 backends), native XDP on veth: spread, stickiness, failover, recovery, UDP.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use lb_tests::{
    client::{TcpSession, tcp_ask, udp_ask},
    daemon::LbDaemon,
    servers::BackendServer,
    topology::TwoArm,
};

const VIP: &str = "10.200.100.1";
const T: Duration = Duration::from_secs(3);

fn config(topo: &TwoArm) -> String {
    let mut c = String::new();
    for (name, proto, port) in [("web", "tcp", 80), ("dns", "udp", 53)] {
        c += &format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{VIP}\"\nport = {port}\nprotocol = \"{proto}\"\nforwarding = \"nat\"\n\
             [service.health]\nkind = \"tcp\"\nport = 8080\ninterval_ms = 300\ntimeout_ms = 200\nrise = 1\nfall = 2\n"
        );
        for b in topo.backends() {
            c += &format!("[[service.backend]]\naddress = \"{}\"\nport = 8080\n", b.v4());
        }
    }
    c
}

fn all_up(s: &serde_json::Value, service: &str, n: u64) -> bool {
    s["services"].as_array().into_iter().flatten().any(|x| x["name"] == service && x["backends_in_service"] == n)
}

#[test]
fn nat_two_arm_balances_sticks_fails_over_and_recovers() {
    let topo = TwoArm::new(3).expect("topology");
    let mut servers = BackendServer::start_all(topo.backends(), 8080).expect("servers");
    let arm0 = topo.lb_arm0().name().to_string();
    let arm1 = topo.lb_arm1().name().to_string();
    let mut lb = LbDaemon::start(topo.lb().ns(), &config(&topo), &[&arm0, &arm1]).expect("lb run");
    lb.wait_for("3 web backends in service", Duration::from_secs(10), |s| all_up(s, "web", 3)).unwrap();
    lb.wait_for("3 dns backends in service", Duration::from_secs(10), |s| all_up(s, "dns", 3)).unwrap();

    let vip: IpAddr = VIP.parse().unwrap();
    let client = topo.client().ns();
    let labels: Vec<String> = topo.backends().iter().map(|b| b.label().to_string()).collect();

    // Many flows spread over all backends.
    let seen: Vec<String> = (0..30).map(|_| tcp_ask(client, vip, 80, T).expect("tcp via lb")).collect();
    for l in &labels {
        assert!(seen.contains(l), "backend {l} got none of 30 connections: {seen:?}");
    }

    // Long-lived connections; each stays on its backend.
    let mut sessions: Vec<TcpSession> =
        (0..12).map(|_| TcpSession::connect(client, vip, 80, T).expect("session")).collect();
    for (i, s) in sessions.iter_mut().enumerate() {
        assert_eq!(s.echo(&format!("hello {i}")).unwrap(), format!("hello {i}"));
    }
    let victim = labels[0].clone();
    assert!(sessions.iter().any(|s| s.name() == victim), "no session landed on {victim}");

    // Kill backend 0: it leaves service; the other connections keep working.
    servers[0].kill().unwrap();
    lb.wait_for("backend 0 out of service", Duration::from_secs(5), |s| all_up(s, "web", 2)).unwrap();
    for s in sessions.iter_mut().filter(|s| s.name() != victim) {
        assert_eq!(s.echo("still there").unwrap(), "still there", "session to {} broke", s.name());
    }
    let after: Vec<String> = (0..20).map(|_| tcp_ask(client, vip, 80, T).expect("tcp after kill")).collect();
    assert!(!after.contains(&victim), "killed backend still got new connections: {after:?}");

    // Bring it back: it returns to service and receives traffic again.
    servers[0].restart().unwrap();
    lb.wait_for("backend 0 back in service", Duration::from_secs(5), |s| all_up(s, "web", 3)).unwrap();
    let back: Vec<String> = (0..30).map(|_| tcp_ask(client, vip, 80, T).expect("tcp after restart")).collect();
    assert!(back.contains(&victim), "restarted backend got no new connection: {back:?}");

    // UDP through the same VIP, many source ports.
    let udp: HashSet<String> =
        (0..30).map(|i| udp_ask(client, vip, 53, 20000 + i, T).expect("udp via lb")).collect();
    assert!(udp.len() >= 2, "UDP flows all went to one backend: {udp:?}");

    // The counters saw it, and SIGTERM detaches cleanly.
    let status = lb.status().unwrap();
    assert!(status["outcomes"]["redirect_to_backend"].as_u64().unwrap_or(0) > 0);
    assert!(status["outcomes"]["redirect_reply"].as_u64().unwrap_or(0) > 0);
    lb.stop().expect("clean exit on SIGTERM");
    let link = topo.lb().ns().exec(&["ip", "link", "show", "dev", &arm0]).unwrap();
    assert!(!link.contains("xdp"), "XDP still attached after lb exited: {link}");
}
