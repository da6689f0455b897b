//! Metrics of the real `lb run` (NAT, two-arm, native XDP on veth) under real traffic: scraped
//! over HTTP from the client namespace (`--metrics-listen` on the lb's own client-side address,
//! inside the test's namespaces) and printed by `lb metrics`. Both must be valid expositions,
//! grow with the traffic, and agree with `lb status --json` once the traffic stops.

use std::{
    collections::BTreeMap,
    io::Read,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use lb::metrics::{self, Scrape};
use lb_tests::{
    balancing::HEALTH_WAIT,
    client::{TcpSession, http_request},
    daemon::LbDaemon,
    lb_config::{ServiceConfig, render},
    servers::BackendServer,
    topology::TwoArm,
};
use serde_json::Value;

const VIP: &str = "10.200.100.1";
const METRICS_PORT: u16 = 9100;
/// Per connect / read / write.
const T: Duration = Duration::from_secs(3);

/// (packets, bytes, new sessions, active sessions) per backend address of service "web".
type PerBackend = BTreeMap<String, [u64; 4]>;

fn from_status(s: &Value) -> PerBackend {
    let web = s["services"].as_array().into_iter().flatten().filter(|x| x["name"] == "web");
    web.flat_map(|x| x["backends"].as_array().into_iter().flatten())
        .map(|b| {
            let c = &b["counters"];
            let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
            let addr = b["address"].as_str().unwrap_or_default().to_string();
            (addr, [n(&c["packets"]), n(&c["bytes"]), n(&c["new_sessions"]), n(&b["active_sessions"])])
        })
        .collect()
}

fn from_metrics(m: &Scrape) -> PerBackend {
    let mut out = PerBackend::new();
    let families =
        ["lb_backend_packets_total", "lb_backend_bytes_total", "lb_backend_new_sessions_total", "lb_backend_active_sessions"];
    for (i, family) in families.into_iter().enumerate() {
        for s in m.family(family).filter(|s| s.labels.get("service").map(String::as_str) == Some("web")) {
            out.entry(s.labels["backend"].clone()).or_insert([u64::MAX; 4])[i] = s.value as u64;
        }
    }
    out
}

fn scrape(topo: &TwoArm, at: SocketAddr) -> Result<(String, Scrape)> {
    let r = http_request(topo.client().ns(), at, "GET", "/metrics", T)?;
    ensure!(r.status == 200, "GET /metrics answered {}: {}", r.status, r.body);
    ensure!(r.header("content-type") == Some(metrics::CONTENT_TYPE), "content type {:?}", r.header("content-type"));
    let parsed = metrics::parse(&r.body).map_err(|e| anyhow!("GET /metrics is not a valid exposition: {e}\n{}", r.body))?;
    Ok((r.body, parsed))
}

fn cli_metrics(lb: &LbDaemon) -> Result<(String, Scrape)> {
    let text = lb.cli(&["metrics"])?;
    let parsed = metrics::parse(&text).map_err(|e| anyhow!("`lb metrics` is not a valid exposition: {e}\n{text}"))?;
    Ok((text, parsed))
}

#[test]
fn metrics_over_http_and_the_cli_follow_real_traffic_and_match_status() -> Result<()> {
    let vip: IpAddr = VIP.parse()?;
    let topo = TwoArm::new(3)?;
    let _servers = BackendServer::start_all(topo.backends(), 8080)?;
    let config = render(&[ServiceConfig {
        name: "web".into(),
        vip,
        port: 80,
        protocol: "tcp",
        forwarding: "nat",
        backends: topo.backends().iter().map(|b| b.addr(false)).collect(),
        backend_port: 8080,
    }]);
    // The lb's own address on the client side: only the test's namespaces can reach it.
    let listen = SocketAddr::new(topo.lb_arm0().v4().into(), METRICS_PORT);
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start_with(topo.lb().ns(), &config, &arms, &["--metrics-listen", &listen.to_string()])?;
    lb.wait_in_service("web", 3, HEALTH_WAIT)?;
    let addr = |label: &str| -> Result<String> {
        let i: usize = label.trim_start_matches("backend").parse().with_context(|| format!("label {label}"))?;
        Ok(format!("{}:8080", topo.backend(i).v4()))
    };

    let (_, before) = scrape(&topo, listen)?;
    let before = from_metrics(&before);
    ensure!(before.len() == 3, "not 3 backends in the first scrape: {before:?}");

    // Long-lived connections until every backend holds two, each echoing: packets both ways.
    let mut sessions: Vec<TcpSession> = Vec::new();
    while topo.backends().iter().any(|b| sessions.iter().filter(|s| s.name() == b.label()).count() < 2) {
        ensure!(sessions.len() < 60, "60 connections and still not two on every backend");
        sessions.push(TcpSession::connect(topo.client().ns(), vip, 80, T)?);
    }
    for (i, s) in sessions.iter_mut().enumerate() {
        ensure!(s.echo(&format!("hello {i}"))? == format!("hello {i}"));
    }
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    for s in &sessions {
        *held.entry(addr(s.name())?).or_default() += 1;
    }

    // The sessions now idle, the counters stand still: two equal `lb status` reads around a
    // scrape and an `lb metrics` pin both to the same values (counters only grow). Active
    // sessions come from the count of the daemon's tick, so wait for one that saw them all.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (text, after) = loop {
        let s1 = from_status(&lb.status()?);
        let (text, http) = scrape(&topo, listen)?;
        let (_, cli) = cli_metrics(&lb)?;
        let s2 = from_status(&lb.status()?);
        let counted = held.iter().all(|(a, n)| s1.get(a).is_some_and(|v| v[3] >= *n));
        if s1 == s2 && counted {
            ensure!(from_metrics(&http) == s1, "GET /metrics {:?} differs from lb status {s1:?}", from_metrics(&http));
            ensure!(from_metrics(&cli) == s1, "lb metrics {:?} differs from lb status {s1:?}", from_metrics(&cli));
            break (text, http);
        }
        if Instant::now() > deadline {
            bail!("status never settled with every held session counted: {s1:?} then {s2:?}, held {held:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    println!("{text}");
    let grown = from_metrics(&after);
    for (a, n) in &held {
        let (b, g) = (before[a], grown[a]);
        ensure!(g[0] > b[0] && g[1] > b[1], "{a}: packets/bytes did not grow: {b:?} -> {g:?}");
        ensure!(g[2] >= b[2] + n, "{a}: {n} connections but new sessions {b:?} -> {g:?}");
    }
    let age = after.value("lb_session_count_age_seconds", &[]).context("no session count age")?;
    ensure!((0.0..5.0).contains(&age), "session count is {age} s old; the daemon counts every second");
    ensure!(after.value("lb_packets_total", &[("verdict", "redirect"), ("reason", "redirect_to_backend")]).unwrap_or(0.0) > 0.0);
    ensure!(after.value("lb_backend_in_service", &[("service", "web"), ("backend", &addr("backend0")?)]) == Some(1.0));
    let capacity = lb_common::DEFAULT_SESSION_CAPACITY;
    ensure!(after.value("lb_session_capacity", &[]) == Some(f64::from(capacity)), "lb_session_capacity is not the default");
    ensure!(after.value("lb_sessions_active", &[]).is_some(), "no lb_sessions_active once sessions were counted");
    let text = lb.cli(&["status"])?;
    ensure!(
        text.contains(&format!("active of {capacity}")) && text.contains("s ago"),
        "lb status does not say how full the session table is and how old its count is:\n{text}"
    );

    // Only /metrics is served, only to GET and HEAD.
    let r = http_request(topo.client().ns(), listen, "GET", "/", T)?;
    ensure!(r.status == 404, "GET / answered {}", r.status);
    let r = http_request(topo.client().ns(), listen, "POST", "/metrics", T)?;
    ensure!(r.status == 405 && r.header("allow") == Some("GET, HEAD"), "POST /metrics answered {r:?}");
    let r = http_request(topo.client().ns(), listen, "HEAD", "/metrics", T)?;
    ensure!(r.status == 200 && r.body.is_empty(), "HEAD /metrics answered {r:?}");

    // A client that connects to the admin socket and says nothing holds up nobody: `lb status`
    // is answered while the silent one still waits (the daemon gives it 2 s to speak, then
    // answers it with an error).
    let silent = std::os::unix::net::UnixStream::connect(&lb.socket)?;
    lb.status().context("lb status behind a silent admin client")?;
    silent.set_nonblocking(true)?;
    match (&silent).read(&mut [0u8; 1]) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => bail!("the silent admin client was answered ({other:?}) before lb status was: the daemon waited for it"),
    }

    for (i, s) in sessions.iter_mut().enumerate() {
        ensure!(s.echo(&format!("bye {i}"))? == format!("bye {i}"), "a connection broke while metrics were scraped");
    }
    lb.stop()?;
    ensure!(
        http_request(topo.client().ns(), listen, "GET", "/metrics", T).is_err(),
        "the metrics port still answers after lb exited"
    );
    Ok(())
}
