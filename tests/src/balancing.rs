//! The end-to-end story every forwarding mode and address family must pass through the real
//! `lb run`: flows spread over every backend, a connection stays on its backend, a killed
//! backend leaves service while connections to the others keep working, a restarted one gets
//! new traffic again, and UDP flows spread too. Each step asserts (panics) with what it saw.

use crate::client::{TcpSession, tcp_ask, udp_ask};
use crate::daemon::LbDaemon;
use crate::netns::Netns;
use crate::servers::BackendServer;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

/// Deadline of one connect/read/write.
const IO: Duration = Duration::from_secs(3);
/// Deadline for a health state change (a few check intervals; generous for a loaded machine).
pub const HEALTH_WAIT: Duration = Duration::from_secs(30);
/// New flows per spread check: with 3 backends, missing one by chance has odds 3*(2/3)^60.
const FLOWS: usize = 60;
/// Long-lived connections each backend must hold before the failure.
const SESSIONS_PER_BACKEND: usize = 2;

/// A service as the client dials it, and its name in the lb's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Dial<'a> {
    pub client: &'a Netns,
    pub vip: IpAddr,
    pub port: u16,
    pub service: &'a str,
}

/// Spread, stickiness, failover of `servers[0]` and its recovery, over TCP. Expects every
/// backend of `servers` in service when called and leaves them so.
pub fn tcp_failover_and_recovery(lb: &mut LbDaemon, dial: Dial, servers: &mut [BackendServer]) {
    let labels: Vec<String> = servers.iter().map(|s| s.tcp.label().to_owned()).collect();
    let all = labels.len() as u64;
    lb.wait_in_service(dial.service, all, HEALTH_WAIT).unwrap();
    assert_tcp_reaches_all(dial, &labels, "at start");

    let mut sessions = sessions_on_every_backend(dial, &labels);
    echo_all(&mut sessions, "before the failure");

    let victim = labels[0].clone();
    servers[0].kill().unwrap();
    lb.wait_in_service(dial.service, all - 1, HEALTH_WAIT).unwrap();
    sessions.retain(|s| s.name() != victim);
    echo_all(&mut sessions, &format!("after {victim} died"));
    let after: Vec<String> = (0..FLOWS / 2).map(|_| ask_tcp(dial, "after the kill")).collect();
    assert!(!after.contains(&victim), "{victim} is dead but got new connections: {after:?}");

    servers[0].restart().unwrap();
    lb.wait_in_service(dial.service, all, HEALTH_WAIT).unwrap();
    assert_tcp_reaches_all(dial, &labels, &format!("after {victim} came back"));
    echo_all(&mut sessions, &format!("after {victim} came back"));
}

/// Many UDP flows (fixed, distinct source ports) reach every backend, and each flow's later
/// datagrams reach the backend its first one did; each answer comes from the VIP (the client's
/// connected socket accepts nothing else).
pub fn udp_spread(lb: &mut LbDaemon, dial: Dial, servers: &[BackendServer]) {
    lb.wait_in_service(dial.service, servers.len() as u64, HEALTH_WAIT).unwrap();
    let ask = |i: u16| {
        udp_ask(dial.client, dial.vip, dial.port, 20000 + i, IO)
            .unwrap_or_else(|e| panic!("UDP flow {i} to {}: {e:#}", std::net::SocketAddr::new(dial.vip, dial.port)))
    };
    let first: Vec<String> = (0..FLOWS as u16).map(ask).collect();
    for (i, backend) in first.iter().enumerate() {
        for _ in 0..2 {
            let again = ask(i as u16);
            assert_eq!(&again, backend, "UDP flow {i} moved from {backend} to {again}");
        }
    }
    let seen: HashSet<String> = first.into_iter().collect();
    for s in servers {
        assert!(
            seen.contains(s.udp.label()),
            "{} got none of {FLOWS} UDP flows: {seen:?}",
            s.udp.label()
        );
    }
}

fn ask_tcp(dial: Dial, when: &str) -> String {
    tcp_ask(dial.client, dial.vip, dial.port, IO)
        .unwrap_or_else(|e| panic!("TCP to {} {when}: {e:#}", std::net::SocketAddr::new(dial.vip, dial.port)))
}

fn assert_tcp_reaches_all(dial: Dial, labels: &[String], when: &str) {
    let seen: Vec<String> = (0..FLOWS).map(|_| ask_tcp(dial, when)).collect();
    for l in labels {
        assert!(seen.contains(l), "{l} got none of {FLOWS} connections {when}: {seen:?}");
    }
}

/// Opens connections until every backend serves at least `SESSIONS_PER_BACKEND` of them
/// (bounded, so a balancer that starves a backend fails instead of looping).
fn sessions_on_every_backend(dial: Dial, labels: &[String]) -> Vec<TcpSession> {
    let mut sessions: Vec<TcpSession> = Vec::new();
    let count =
        |sessions: &[TcpSession], l: &str| sessions.iter().filter(|s| s.name() == l).count();
    for _ in 0..FLOWS * 2 {
        if labels.iter().all(|l| count(&sessions, l) >= SESSIONS_PER_BACKEND) {
            return sessions;
        }
        sessions.push(
            TcpSession::connect(dial.client, dial.vip, dial.port, IO).expect("long-lived session"),
        );
    }
    let per: Vec<_> = labels.iter().map(|l| (l, count(&sessions, l))).collect();
    panic!(
        "{} connections did not give every backend {SESSIONS_PER_BACKEND}: {per:?}",
        sessions.len()
    );
}

/// Every session echoes three lines: the connection still reaches the backend that took it
/// (another backend would answer a mid-stream segment with a reset).
fn echo_all(sessions: &mut [TcpSession], when: &str) {
    for (i, s) in sessions.iter_mut().enumerate() {
        for round in 0..3 {
            let line = format!("session {i} round {round}");
            let echoed =
                s.echo(&line).unwrap_or_else(|e| panic!("session to {} {when}: {e:#}", s.name()));
            assert_eq!(echoed, line, "session to {} {when}", s.name());
        }
    }
}
