//! Restarts and crashes of the control plane lose nothing: the real `lb run` (NAT, two-arm,
//! native XDP on veth) restarted with SIGTERM again and again, then killed with SIGKILL and
//! left dead for a few seconds, then started again, all under steady traffic (30 long-lived
//! connections echoing every 100 ms, new connections, UDP flows): no connection fails or
//! breaks, every datagram is answered, backends stay in service across each start, counters
//! keep counting. A drain in progress before a restart ends on its original deadline. A layout
//! change is refused with nothing touched, `--fresh` starts over, a
//! half-written pin directory is repaired, and `lb detach` leaves nothing (no XDP, pin or
//! state files; other instances' state files stay).
//!
//! lb runs in a `MountNs`, whose bpffs outlives each lb as a host's does; the MountNs's end
//! takes whatever is left with it, also when a test fails.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use aya::maps::MapInfo;
use lb_tests::{
    balancing::HEALTH_WAIT,
    daemon::{LbDaemon, in_service, lb_host, service_packets as packets},
    lb_config::{ServiceConfig, render},
    mount_ns::MountNs,
    servers::BackendServer,
    steady_traffic::{self, BACKEND_PORT, SteadyTraffic},
    topology::TwoArm,
};

const T: Duration = Duration::from_secs(20);
const RESTARTS: usize = 5;
const LONG_LIVED: usize = 30;


/// A started lb that adopted the data plane: at its first answer every backend is still in
/// service (no "all down until the first check"), and the counters went on from `before`.
fn adopted(lb: &mut LbDaemon, before: u64) -> Result<u64> {
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let status = lb.status()?;
    let log = lb.process.stderr_tail();
    ensure!(log.contains("adopted the running data plane"), "lb did not adopt: {log}");
    // The same binary: the running program is kept, not loaded and put on the links again.
    ensure!(
        log.contains("kept the running XDP program (identical)") && !log.contains("replaced the program on the pinned XDP link"),
        "lb loaded its program again instead of keeping the running one: {log}"
    );
    // As adopted, before any health check: every backend kept in service.
    for service in ["web", "dns"] {
        let line = format!("service {service}: adopted, 3 backend(s) kept (3 in service, 0 draining), 0 added, 0 removed");
        ensure!(log.contains(&line), "{service} was not adopted with its backends in service: {log}");
    }
    for service in ["web", "dns"] {
        ensure!(in_service(&status, service) == Some(3), "{service} lost backends at the restart: {status}");
    }
    let now = packets(&status, "web");
    ensure!(now >= before, "the web counters went back from {before} to {now} at the restart");
    Ok(now)
}

#[test]
fn restarts_and_a_kill_lose_no_connection_and_no_datagram() -> Result<()> {
    let vip: IpAddr = "10.200.100.1".parse()?;
    let topo = TwoArm::new(3)?;
    let _servers = BackendServer::start_all(topo.backends(), BACKEND_PORT)?;
    let lb_ns = topo.lb().ns();
    let mounts = MountNs::new(lb_ns)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start_in(&mounts, lb_ns, &steady_traffic::config(&topo, vip), &arms, &[])?;
    lb.wait_in_service("web", 3, HEALTH_WAIT)?;
    lb.wait_in_service("dns", 3, HEALTH_WAIT)?;

    let traffic = SteadyTraffic::start(topo.client().ns(), vip, 80, 53, LONG_LIVED)?;
    traffic.wait_rounds(5, T)?;
    let mut counted = packets(&lb.status()?, "web");
    let programs = |lb_ns: &lb_tests::Netns| -> Result<Vec<Option<u64>>> { arms.iter().map(|a| lb_ns.xdp_prog_id(a)).collect() };
    let running = programs(lb_ns)?;
    for i in 0..RESTARTS {
        lb.stop().with_context(|| format!("restart {i}"))?;
        // Forwarding on its own: the echo rounds go on while no lb runs.
        traffic.wait_rounds(2, T).with_context(|| format!("without lb, restart {i}"))?;
        lb = lb.start_again(&mounts, lb_ns, &[])?;
        counted = adopted(&mut lb, counted).with_context(|| format!("restart {i}"))?;
        ensure!(programs(lb_ns)? == running, "restart {i}: the interfaces' programs changed: {running:?} -> {:?}", programs(lb_ns)?);
        traffic.wait_rounds(2, T)?;
    }

    // Killed: nothing cleans up, the data plane goes on for a few seconds without lb.
    lb.process.kill()?;
    for arm in arms {
        ensure!(lb_ns.xdp_attached(arm)?, "{arm} lost XDP when lb was killed");
    }
    traffic.wait_rounds(30, T).context("while lb was dead")?;
    lb = lb.start_again(&mounts, lb_ns, &[])?;
    counted = adopted(&mut lb, counted).context("after the kill")?;
    ensure!(programs(lb_ns)? == running, "after the kill: the interfaces' programs changed");
    traffic.wait_rounds(5, T)?;

    let report = traffic.finish();
    report.ensure_nothing_lost(&format!("{RESTARTS} restarts and a kill"))?;
    let status = lb.status()?;
    ensure!(packets(&status, "web") > counted, "the counters stopped: {status}");
    ensure!(lb_tests::daemon::outcome(&status, "drop_no_backend") == 0, "packets found no backend: {status}");

    lb.stop()?;
    // lb detach removes this instance's state files and nothing else: another instance's
    // drains (a name this one's is a prefix of) and the shared contribution accounts stay.
    let drains = lb.drains_file().context("no state dir")?;
    ensure!(drains.exists(), "lb did not save its drains at exit: no {}", drains.display());
    let state = lb.state_dir().context("no state dir")?;
    let others = [state.join(format!("drains-{}-2.json", lb.instance)), state.join("contributions.json")];
    for other in &others {
        if !other.exists() {
            std::fs::write(other, "{}")?;
        }
    }
    let out = lb.detach(&mounts)?;
    ensure!(out.contains("detached") && out.contains(&format!("removed {}", drains.display())), "{out}");
    for other in &others {
        ensure!(other.exists(), "lb detach removed {}, not its instance's: {out}", other.display());
    }
    Ok(())
}

/// One NAT TCP service (nothing is sent) with a session table of `capacity` records.
fn small_config(capacity: u32) -> String {
    format!("[sessions]\ncapacity = {capacity}\n{}", ServiceConfig::nat_placeholder("web").to_toml())
}

#[test]
fn a_layout_change_is_refused_untouched_fresh_starts_over_and_a_half_written_directory_is_repaired() -> Result<()> {
    let ns = lb_host("restart-layout", &["eth0"])?;
    let mounts = MountNs::new(&ns)?;
    let mut lb = LbDaemon::start_in(&mounts, &ns, &small_config(4096), &["eth0"], &[])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    lb.stop()?;
    let pins = lb.pin_dir(&mounts);
    let program = ns.xdp_prog_id("eth0")?.context("no XDP after lb exited")?;
    let buckets = |pins: &std::path::Path| -> Result<u32> { Ok(MapInfo::from_pin(pins.join("SESSIONS"))?.max_entries()) };
    let before = buckets(&pins)?;

    // Another session table size is another layout: refused, nothing touched.
    let instance = ["--instance", lb.instance.as_str()];
    let mut bigger = LbDaemon::start_in(&mounts, &ns, &small_config(8192), &["eth0"], &instance)?;
    let log = bigger.wait_exit(T)?;
    let versions: Vec<&str> = log.split(|c: char| c.is_whitespace() || c == ':' || c == ',').filter(|w| w.starts_with("r1-")).collect();
    ensure!(
        log.contains("cannot adopt them") && log.contains("--fresh") && log.contains("lb detach")
            && log.contains("SESSIONS: entries 1024 pinned, 2048 wanted"),
        "the refusal does not say what differs and what to do: {log}"
    );
    ensure!(versions.len() >= 2 && versions[0] != versions[1], "the refusal does not name both layouts: {log}");
    ensure!(!log.contains("pinned the maps"), "the refused lb loaded anyway: {log}");
    ensure!(ns.xdp_prog_id("eth0")? == Some(program), "the refused start changed the program on eth0");
    ensure!(buckets(&pins)? == before && pins.join("LB_LAYOUT").exists(), "the refused start touched the pins");

    // --fresh: the old pins go (their program leaves eth0), a new data plane of the new layout.
    let mut fresh = bigger.start_again(&mounts, &ns, &["--fresh"])?;
    fresh.wait_for("lb status to answer", T, |s| s["session_capacity"] == 8192)?;
    let log = fresh.process.stderr_tail();
    ensure!(log.contains("--fresh: removed the pins found") && log.contains("pinned the maps"), "{log}");
    ensure!(buckets(&pins)? == 2048, "SESSIONS was not made anew");
    let fresh_program = ns.xdp_prog_id("eth0")?;
    ensure!(fresh_program.is_some() && fresh_program != Some(program), "eth0 still runs the old program");
    fresh.stop()?;

    // A start that crashed before its stamp: the directory is repaired (cleared), not adopted.
    mounts.exec(&["rm", &format!("/sys/fs/bpf/lb/{}/LB_LAYOUT", fresh.instance)])?;
    let mut repaired = fresh.start_again(&mounts, &ns, &[])?;
    repaired.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = repaired.process.stderr_tail();
    ensure!(log.contains("removed a half-written pin directory") && !log.contains("adopted"), "{log}");
    repaired.stop()?;
    repaired.detach(&mounts)?;
    ensure!(!ns.xdp_attached("eth0")?, "lb detach left XDP on eth0");
    Ok(())
}

/// Ids and generations of `service`'s backends in a status, by address.
fn backend_ids(status: &serde_json::Value, service: &str) -> Vec<(String, u64, u64)> {
    let svc = status["services"].as_array().into_iter().flatten().find(|s| s["name"] == service);
    let backends = svc.and_then(|s| s["backends"].as_array()).cloned().unwrap_or_default();
    backends
        .iter()
        .map(|b| (b["address"].as_str().unwrap_or("").to_string(), b["id"].as_u64().unwrap_or(0), b["generation"].as_u64().unwrap_or(0)))
        .collect()
}

#[test]
fn a_config_changed_while_lb_was_down_is_applied_as_a_reload_keeping_what_did_not_change() -> Result<()> {
    let vip: IpAddr = "10.200.100.1".parse()?;
    let topo = TwoArm::new(3)?;
    let _servers = BackendServer::start_all(topo.backends(), BACKEND_PORT)?;
    let lb_ns = topo.lb().ns();
    let mounts = MountNs::new(lb_ns)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start_in(&mounts, lb_ns, &steady_traffic::config(&topo, vip), &arms, &[])?;
    lb.wait_in_service("web", 3, HEALTH_WAIT)?;
    let client = topo.client().ns();
    // Connections until every backend holds two (bounded: a starved backend fails the test).
    let mut sessions: Vec<lb_tests::client::TcpSession> = Vec::new();
    let on = |sessions: &[lb_tests::client::TcpSession], i: usize| sessions.iter().filter(|s| s.name() == topo.backend(i).label()).count();
    while (0..3).any(|i| on(&sessions, i) < 2) {
        ensure!(sessions.len() < 60, "60 connections did not reach every backend twice");
        sessions.push(lb_tests::client::TcpSession::connect(client, vip, 80, Duration::from_secs(3))?);
    }
    let before = lb.status()?;
    lb.stop()?;

    // While lb is down: backend 2 leaves web, dns goes, api comes.
    let service = |name: &str, protocol, port, backends: &[usize]| ServiceConfig {
        name: name.into(),
        vip,
        port,
        protocol,
        forwarding: "nat",
        backends: backends.iter().map(|&i| topo.backend(i).addr(false)).collect(),
        backend_port: BACKEND_PORT,
    };
    let changed = format!("[sessions]\ncapacity = 65536\n{}", render(&[service("web", "tcp", 80, &[0, 1]), service("api", "tcp", 8081, &[0, 1, 2])]));
    let instance = ["--instance", lb.instance.as_str()];
    let mut lb = LbDaemon::start_in(&mounts, lb_ns, &changed, &arms, &instance)?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let after = lb.status()?;
    let log = lb.process.stderr_tail();
    ensure!(log.contains("service web: adopted, 2 backend(s) kept (2 in service, 0 draining), 0 added, 1 removed"), "{log}");
    ensure!(log.contains("not in the config any more: removed") && log.contains("service api: added"), "{log}");
    // The two kept backends: same ids, generations, health; counters went on.
    let kept: Vec<_> = backend_ids(&before, "web").into_iter().filter(|(a, _, _)| !a.starts_with(&topo.backend(2).addr(false).to_string())).collect();
    ensure!(backend_ids(&after, "web") == kept, "web's backends changed ids: {kept:?} -> {:?}", backend_ids(&after, "web"));
    ensure!(in_service(&after, "web") == Some(2), "{after}");
    ensure!(packets(&after, "web") >= packets(&before, "web"), "web's counters went back");
    ensure!(in_service(&after, "dns").is_none(), "dns is still served: {after}");
    lb.wait_in_service("api", 3, HEALTH_WAIT)?;
    let services: aya::maps::HashMap<aya::maps::MapData, lb_common::ServiceKey, lb_common::ServiceEntry> =
        aya::maps::HashMap::try_from(aya::maps::Map::from_map_data(aya::maps::MapData::from_pin(lb.pin_dir(&mounts).join("SERVICES"))?)?)?;
    ensure!(services.keys().count() == 2, "SERVICES should hold web and api only");
    drop(services);

    // Connections to kept backends go on; those to the removed one are re-chosen, as a reload does.
    let removed = topo.backend(2).label().to_string();
    for (i, s) in sessions.iter_mut().enumerate() {
        let line = format!("after the restart {i}");
        let echoed = s.echo(&line);
        match s.name() == removed {
            false => ensure!(echoed.as_deref().ok() == Some(line.as_str()), "connection to {} broke: {echoed:?}", s.name()),
            true => ensure!(echoed.is_err(), "a connection to the removed backend {removed} still works"),
        }
    }
    lb.stop()?;
    lb.detach(&mounts)?;
    Ok(())
}

/// Whether `service` still has a backend at `address` in a status.
fn has_backend(status: &serde_json::Value, service: &str, address: &str) -> bool {
    backend_ids(status, service).iter().any(|(a, _, _)| a == address)
}

#[test]
fn a_drain_in_progress_before_a_restart_ends_on_its_original_deadline_after_it() -> Result<()> {
    const DRAIN: Duration = Duration::from_secs(8);
    // How long lb stays down: longer than the removal may lag the deadline (a tick, a poll),
    // so a drain that restarted its clock at the restart would end too late to pass.
    const DOWN: Duration = Duration::from_secs(4);
    const LAG: Duration = Duration::from_millis(2500);
    let vip: IpAddr = "10.200.100.1".parse()?;
    let topo = TwoArm::new(3)?;
    let _servers = BackendServer::start_all(topo.backends(), BACKEND_PORT)?;
    let lb_ns = topo.lb().ns();
    let mounts = MountNs::new(lb_ns)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start_in(&mounts, lb_ns, &steady_traffic::config(&topo, vip), &arms, &[])?;
    lb.wait_in_service("web", 3, HEALTH_WAIT)?;
    // A connection to backend 0 keeps it draining until the timeout (bounded: a starved
    // backend fails the test).
    let drained = topo.backend(0);
    let address = format!("{}:{BACKEND_PORT}", drained.addr(false));
    let mut sessions = Vec::new();
    while !sessions.iter().any(|s: &lb_tests::client::TcpSession| s.name() == drained.label()) {
        ensure!(sessions.len() < 30, "30 connections did not reach {}", drained.label());
        sessions.push(lb_tests::client::TcpSession::connect(topo.client().ns(), vip, 80, Duration::from_secs(3))?);
    }

    let asked = std::time::Instant::now();
    let out = lb.cli(&["backend", "drain", "web", &address, "--timeout", &DRAIN.as_secs().to_string()])?;
    let answered = std::time::Instant::now();
    ensure!(out.contains("draining"), "{out}");
    lb.stop()?;
    let saved = std::fs::read_to_string(lb.state_dir().context("no state dir")?.join(format!("drains-{}.json", lb.instance)))?;
    ensure!(saved.contains(&address) && saved.contains("\"timeout_secs\": 8"), "the drain was not saved: {saved}");
    // The scenario, not a synchronisation: lb is down for a while, the data plane forwards.
    std::thread::sleep(DOWN);

    let mut lb = lb.start_again(&mounts, lb_ns, &[])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = lb.process.stderr_tail();
    ensure!(log.contains("service web: adopted, 3 backend(s) kept (2 in service, 1 draining)"), "{log}");
    ensure!(log.contains(&format!("service web: backend {address} goes on draining: its 8 s timeout ends in")), "the drain was not restored: {log}");
    ensure!(has_backend(&lb.status()?, "web", &address), "the drained backend left at the restart");

    // It leaves on the original deadline: not before (a session holds it), and not a drain
    // timeout after the restart.
    let deadline = answered + DRAIN;
    lb.wait_for("the drained backend to leave", deadline.saturating_duration_since(std::time::Instant::now()) + LAG, |s| {
        !has_backend(s, "web", &address)
    })?;
    let left = std::time::Instant::now();
    ensure!(left >= asked + DRAIN, "the drained backend left {:?} after the drain, before its {DRAIN:?} timeout", left - asked);
    let log = lb.process.stderr_tail();
    let removal = format!("service web: drained backend {address} removed: drain timeout of 8 s passed");
    ensure!(log.contains(&removal), "the backend did not leave by its timeout: {log}");
    eprintln!("drained at +0, lb down for {DOWN:?}, backend left at +{:?} (timeout {DRAIN:?})", left - asked);

    drop(sessions);
    lb.stop()?;
    lb.detach(&mounts)?;
    Ok(())
}
