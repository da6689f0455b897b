//! Live changes survive a restart of the real `lb run` (NAT, two-arm, native XDP on veth):
//! a backend added and a weight changed with the CLI are there again after SIGTERM and a start
//! with the same config file (same id, in service at once: no new health check needed); after
//! a start with a config file edited while lb was down, the file wins and the log names every
//! live change it dropped. `lb detach` then removes the instance's state files.
//!
//! lb runs in a `MountNs`, whose bpffs outlives each lb as a host's does; the MountNs's end
//! takes whatever is left with it, also when a test fails.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use lb_tests::{
    balancing::HEALTH_WAIT,
    daemon::{LbDaemon, in_service},
    lb_config::{ServiceConfig, render},
    mount_ns::MountNs,
    servers::BackendServer,
    steady_traffic::BACKEND_PORT,
    topology::TwoArm,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// The backend of `service` at `address` in a status: (id, generation, weight, health).
fn backend(status: &Value, service: &str, address: &str) -> Option<(u64, u64, u64, String)> {
    let svc = status["services"].as_array()?.iter().find(|s| s["name"] == service)?;
    let b = svc["backends"].as_array()?.iter().find(|b| b["address"] == address)?;
    Some((b["id"].as_u64()?, b["generation"].as_u64()?, b["weight"].as_u64()?, b["health"].as_str()?.to_string()))
}

#[test]
fn live_changes_survive_a_restart_unless_the_config_file_changed_meanwhile() -> Result<()> {
    let vip: IpAddr = "10.200.100.1".parse()?;
    let topo = TwoArm::new(4)?;
    let _servers = BackendServer::start_all(topo.backends(), BACKEND_PORT)?;
    let lb_ns = topo.lb().ns();
    let mounts = MountNs::new(lb_ns)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    // web over backends 0..3; backend 3 is added live.
    let web = ServiceConfig {
        name: "web".into(),
        vip,
        port: 80,
        protocol: "tcp",
        forwarding: "nat",
        backends: (0..3).map(|i| topo.backend(i).addr(false)).collect(),
        backend_port: BACKEND_PORT,
    };
    let config = format!("[sessions]\ncapacity = 65536\n{}", render(&[web]));
    let addr = |i: usize| format!("{}:{BACKEND_PORT}", topo.backend(i).addr(false));
    let (added, reweighted, edited) = (addr(3), addr(0), addr(1));

    let mut lb = LbDaemon::start_in(&mounts, lb_ns, &config, &arms, &[])?;
    lb.wait_in_service("web", 3, HEALTH_WAIT)?;
    lb.cli(&["backend", "add", "web", &added, "--weight", "2"])?;
    lb.cli(&["backend", "weight", "web", &reweighted, "5"])?;
    lb.wait_in_service("web", 4, HEALTH_WAIT)?;
    let before = lb.status()?;
    let (id, generation, _, _) = backend(&before, "web", &added).context("the added backend is not in the status")?;
    lb.stop()?;
    let [_, running, health, _] = lb.state_files().context("no state dir")?;
    let saved = std::fs::read_to_string(&running).with_context(|| format!("lb did not save {}", running.display()))?;
    ensure!(saved.contains(&topo.backend(3).addr(false).to_string()), "the added backend was not saved: {saved}");
    ensure!(health.exists(), "lb did not save its health checks' history: no {}", health.display());

    // Same file: the live changes are back, the added backend with its id and in service
    // as adopted (the log line is written before any health check runs).
    let mut lb = lb.start_again(&mounts, lb_ns, &[])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = lb.process.stderr_tail();
    ensure!(log.contains("service web: adopted, 4 backend(s) kept (4 in service, 0 draining), 0 added, 0 removed"), "{log}");
    ensure!(
        log.contains("are restored, with 2 live change(s)") && log.contains(&format!("backend {added} added to web (weight 2)")),
        "the restored live changes are not named: {log}"
    );
    let after = lb.status()?;
    ensure!(in_service(&after, "web") == Some(4), "web lost a backend at the restart: {after}");
    let kept = backend(&after, "web", &added).context("the added backend is gone after the restart")?;
    ensure!(kept == (id, generation, 2, "up".to_string()), "the added backend changed: {kept:?}, was id {id} generation {generation}");
    ensure!(backend(&after, "web", &reweighted).map(|b| b.2) == Some(5), "the weight was not kept: {after}");
    lb.stop()?;

    // The file changed while lb was down (backend 1's weight): the file wins, the live
    // changes are undone and each is named.
    let changed = std::fs::read_to_string(lb.config_path())?.replace(
        &format!("address = \"{}\"\nport = {BACKEND_PORT}\n", topo.backend(1).addr(false)),
        &format!("address = \"{}\"\nport = {BACKEND_PORT}\nweight = 3\n", topo.backend(1).addr(false)),
    );
    ensure!(changed.contains("weight = 3"), "the test could not edit the config: {changed}");
    std::fs::write(lb.config_path(), changed)?;
    let mut lb = lb.start_again(&mounts, lb_ns, &[])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = lb.process.stderr_tail();
    for change in [format!("backend {reweighted} of web: weight 1 -> 5"), format!("backend {added} added to web (weight 2)")] {
        let line = format!("live change dropped (the config file changed while lb was down): {change}");
        ensure!(log.contains(&line), "not logged: {line}\n{log}");
    }
    let status = lb.status()?;
    ensure!(backend(&status, "web", &added).is_none(), "the added backend is still there: {status}");
    ensure!(backend(&status, "web", &reweighted).map(|b| b.2) == Some(1), "the live weight was kept: {status}");
    ensure!(backend(&status, "web", &edited).map(|b| b.2) == Some(3), "the file's weight was not applied: {status}");
    ensure!(in_service(&status, "web") == Some(3), "{status}");

    // The next restart has nothing to drop: the saved state is the file's now.
    lb.stop()?;
    let mut lb = lb.start_again(&mounts, lb_ns, &[])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = lb.process.stderr_tail();
    ensure!(!log.contains("live change"), "{log}");
    lb.stop()?;
    lb.detach(&mounts)?;
    Ok(())
}
