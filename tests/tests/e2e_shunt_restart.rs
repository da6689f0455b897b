//! Shunting survives a restart of the real `lb run` (NAT, two-arm, native XDP on veth): the
//! operator opens service web's overflow pool (`lb shunt open`), an overflow server reports
//! closing, an external system opens service api's pool with a TTL (`--control-listen`); lb is
//! stopped (SIGTERM) and started again, adopting the data plane. Then both pools are still
//! open, since the same time and for the same reasons, the TTL keeps its deadline, the report
//! holds, no hook ran again (on_open appends to a log), no pool event was logged, connections
//! to the overflow backend go on and new ones still reach it, and `lb status` says the data
//! plane was adopted, with its layout version. A `--fresh` start then ignores and replaces
//! the saved state (every pool closed), and `lb detach` removes it.
//!
//! lb runs in a `MountNs`, whose bpffs outlives each lb as a host's does; its end takes
//! whatever is left with it, also when the test fails. Every wait has a deadline.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use lb_tests::{
    client::{TcpSession, http_exchange, tcp_ask},
    daemon::LbDaemon,
    mount_ns::MountNs,
    names,
    servers::BackendServer,
    topology::TwoArm,
};
use serde_json::Value;

const VIP: &str = "10.200.100.1";
const CONTROL_PORT: u16 = 9200;
const TOKEN: &str = "e2e-shunt-restart-token-0123456789";
/// Per connect / read / write / HTTP request.
const T: Duration = Duration::from_secs(5);
/// For the daemon to reach a state (ticks and session counts come once a second).
const WAIT: Duration = Duration::from_secs(20);
/// web: primary 0 (full at one session), overflow 2 and 3; api: primary 1, overflow 2.
const WEB_PRIMARY: usize = 0;
const WEB_OVERFLOW: [usize; 2] = [2, 3];

fn vip() -> IpAddr {
    VIP.parse().expect("vip")
}

/// A directory of the test's own (hook, its log, the token), removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> Result<TempDir> {
    let dir = std::env::temp_dir().join(names::unique("shunt-restart"));
    std::fs::create_dir_all(&dir)?;
    Ok(TempDir(dir))
}

/// A hook that appends "<hook> <service> <argument>" to `log`.
fn hook_script(dir: &Path, log: &Path) -> Result<PathBuf> {
    let script = dir.join("hook.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$LB_SHUNT_HOOK $LB_SERVICE $1\" >> {}\n", log.display()))?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(script)
}

fn addr(topo: &TwoArm, i: usize) -> String {
    format!("{}:8080", topo.backend(i).v4())
}

fn config(topo: &TwoArm, hook: &Path) -> String {
    let hook = hook.display();
    let service = |name: &str, port: u16| {
        format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{VIP}\"\nport = {port}\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
             [service.health]\nkind = \"tcp\"\ninterval_ms = 300\ntimeout_ms = 250\nrise = 1\nfall = 5\n\
             [service.shunt]\nmin_open_secs = 0\ndrain_timeout = 60\n\
             on_open = [\"{hook}\", \"opening\"]\non_close = [\"{hook}\", \"closed\"]\n"
        )
    };
    let backend = |i: usize, extra: &str| format!("[[service.backend]]\naddress = \"{}\"\nport = 8080\n{extra}", topo.backend(i).v4());
    let mut c = service("web", 80);
    c += &backend(WEB_PRIMARY, "max_sessions = 1\n");
    for i in WEB_OVERFLOW {
        c += &backend(i, "pool = \"overflow\"\n");
    }
    c += &service("api", 81);
    c += &backend(1, "");
    c += &backend(2, "pool = \"overflow\"\n");
    c
}

/// POSTs `body` to the control endpoint; its status and JSON answer.
fn post(topo: &TwoArm, at: SocketAddr, path: &str, body: &str) -> Result<(u16, Value)> {
    let bearer = format!("Bearer {TOKEN}");
    let headers = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    let r = http_exchange(topo.client().ns(), at, "POST", path, &headers, body, T)?;
    Ok((r.status, serde_json::from_str(&r.body).with_context(|| format!("{path}: {:?}", r.body))?))
}

/// `lb shunt status SERVICE --json`'s one service.
fn shunt(lb: &LbDaemon, service: &str) -> Result<Value> {
    Ok(lb.cli_json(&["shunt", "status", service])?[0].clone())
}

fn shunt_backend<'a>(s: &'a Value, addr: &str) -> Option<&'a Value> {
    s["backends"].as_array()?.iter().find(|b| b["address"] == addr)
}

fn full(status: &Value, topo: &TwoArm) -> bool {
    let web = status["services"].as_array().and_then(|s| s.iter().find(|x| x["name"] == "web"));
    let primary = web.and_then(|w| w["backends"].as_array()?.iter().find(|b| b["address"] == addr(topo, WEB_PRIMARY)));
    primary.is_some_and(|b| b["full"] == true)
}

/// The pool transitions in a service's event log.
fn pool_events(s: &Value) -> Vec<Value> {
    s["events"].as_array().into_iter().flatten().filter(|e| e["detail"]["event"] == "pool").cloned().collect()
}

/// The hook log's lines, sorted (the two services' hooks run in their own tasks).
fn hook_lines(log: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn echoes(s: &mut TcpSession, line: &str) -> Result<()> {
    let back = s.echo(line).with_context(|| format!("{line}: the connection to {} broke", s.name()))?;
    ensure!(back == line, "{line}: {} echoed {back:?}", s.name());
    Ok(())
}

#[test]
fn open_pools_their_commands_ttl_and_reports_survive_a_restart_without_hooks_or_flips() -> Result<()> {
    let topo = TwoArm::new(4)?;
    let _servers = BackendServer::start_all(topo.backends(), 8080)?;
    let dir = temp_dir()?;
    let log = dir.0.join("hooks.log");
    let hook = hook_script(&dir.0, &log)?;
    let token = dir.0.join("token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let at = SocketAddr::new(IpAddr::V4(topo.lb_arm0().v4()), CONTROL_PORT);
    let (listen, token_s) = (at.to_string(), token.display().to_string());
    let control = ["--control-listen", listen.as_str(), "--control-token-file", token_s.as_str()];
    let lb_ns = topo.lb().ns();
    let mounts = MountNs::new(lb_ns)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start_in(&mounts, lb_ns, &config(&topo, &hook), &arms, &control)?;
    for service in ["web", "api"] {
        lb.wait_for_json(&["shunt", "status", service], "overflow backends healthy while closed", WAIT, |v| {
            v[0]["backends"].as_array().is_some_and(|b| b.iter().all(|b| b["healthy"] == true))
        })?;
        lb.wait_in_service(service, 1, WAIT)?;
    }
    let before = lb.status()?;
    ensure!(before["adopted"] == false && before["layout_version"].as_str().is_some_and(|v| v.starts_with('r')), "{before}");

    // web: opened by the operator; overflow backend 3 reports closing. api: an external open
    // with a TTL well beyond the test.
    let out = lb.cli(&["shunt", "open", "web", "--reason", "test"])?;
    ensure!(out.contains("overflow pool open (manual: test)"), "{out}");
    let (status, answer) = post(&topo, at, &format!("/v1/services/web/backends/{}", addr(&topo, 3)), r#"{"state":"closing"}"#)?;
    ensure!(status == 200, "{status}: {answer}");
    let (status, answer) = post(&topo, at, "/v1/services/api/shunt", r#"{"action":"open","reason":"partner","ttl_secs":600}"#)?;
    ensure!(status == 200 && answer["shunt"]["state"] == "open", "{status}: {answer}");
    let opened = ["on_open api opening", "on_open web opening"];
    lb.wait_for("both on_open hooks to run", WAIT, |_| hook_lines(&log) == opened)?;

    // Primary 0 at its one session is marked full: the next connection spills to overflow 2.
    let mut primary = TcpSession::connect(topo.client().ns(), vip(), 80, T)?;
    ensure!(primary.name() == "backend0", "the first connection went to {}", primary.name());
    lb.wait_for("web's primary marked full", WAIT, |s| full(s, &topo))?;
    let mut spilled = TcpSession::connect(topo.client().ns(), vip(), 80, T)?;
    ensure!(spilled.name() == "backend2", "with the primary full, a new connection went to {}", spilled.name());
    let (web, api) = (shunt(&lb, "web")?, shunt(&lb, "api")?);
    ensure!(web["state"] == "open" && web["opened_total"] == 1, "{web}");
    ensure!(shunt_backend(&web, &addr(&topo, 3)).is_some_and(|b| b["report"] == "closing" && b["taking_new_flows"] == false), "{web}");
    let expires_at = api["trigger"]["expires_at"].as_i64().with_context(|| format!("no TTL deadline: {api}"))?;

    // Restart: SIGTERM, then the same instance adopts the data plane.
    lb.stop()?;
    let saved = lb.state_dir().context("state dir")?.join(format!("shunt-{}.json", lb.instance));
    ensure!(saved.exists(), "lb did not save its shunting state at exit: no {}", saved.display());
    echoes(&mut spilled, "while no lb runs")?;
    lb = lb.start_again(&mounts, lb_ns, &control)?;
    lb.wait_for("lb status to answer", WAIT, |s| s["pin_dir"].is_string())?;
    let after = lb.status()?;
    ensure!(after["adopted"] == true && after["layout_version"] == before["layout_version"], "{after}");
    ensure!(after["started_at"].as_i64() >= before["started_at"].as_i64(), "{after}");
    let text = lb.cli(&["status"])?;
    let layout = after["layout_version"].as_str().unwrap_or_default();
    ensure!(text.contains(&format!("data plane: layout {layout}, adopted from an earlier lb")), "{text}");
    let log_text = lb.process.stderr_tail();
    ensure!(log_text.contains("service web: overflow pool open (manual: test) since"), "no restore line: {log_text}");

    // The pools as they were: same state, since, why, TTL deadline, report, openings.
    let (web2, api2) = (shunt(&lb, "web")?, shunt(&lb, "api")?);
    for key in ["state", "since", "why", "trigger", "opened_total"] {
        ensure!(web2[key] == web[key], "web's {key} changed at the restart: {} -> {}", web[key], web2[key]);
        ensure!(api2[key] == api[key], "api's {key} changed at the restart: {} -> {}", api[key], api2[key]);
    }
    ensure!(api2["trigger"]["expires_at"] == expires_at, "{api2}");
    ensure!(shunt_backend(&web2, &addr(&topo, 3)).is_some_and(|b| b["report"] == "closing" && b["taking_new_flows"] == false), "{web2}");
    ensure!(shunt_backend(&web2, &addr(&topo, 2)).is_some_and(|b| b["state"] == "open" && b["taking_new_flows"] == true), "{web2}");

    // Connections go on; once the new lb has counted the primary's session, new connections
    // spill to the overflow backend again.
    echoes(&mut spilled, "after the restart")?;
    echoes(&mut primary, "after the restart")?;
    lb.wait_for("web's primary marked full after the restart", WAIT, |s| full(s, &topo) && s["session_count_age_secs"].is_number())?;
    let seen = tcp_ask(topo.client().ns(), vip(), 80, T)?;
    ensure!(seen == "backend2", "after the restart, a new connection with the primary full went to {seen}");
    // The mark was kept through the restart, not lifted until the new lb counted sessions.
    let log_after = lb_tests::child::plain(&lb.process.stderr_tail());
    let lifted = log_after.lines().any(|l| l.contains("backend full mark") && l.contains("full=false"));
    ensure!(!lifted, "the primary's full mark was lifted at the restart: {log_after}");

    // Ticks have run since: no hook ran again, no pool went through a transition.
    ensure!(hook_lines(&log) == opened, "hooks ran at the restart: {:?}", hook_lines(&log));
    let (web3, api3) = (shunt(&lb, "web")?, shunt(&lb, "api")?);
    ensure!(pool_events(&web3) == pool_events(&web), "web's pool moved at the restart: {web3}");
    ensure!(pool_events(&api3) == pool_events(&api), "api's pool moved at the restart: {api3}");
    ensure!(web3["state"] == "open" && api3["state"] == "open", "{web3} {api3}");

    // A --fresh start (new maps, every pool closed) ignores the saved state and replaces it.
    drop((primary, spilled));
    lb.stop()?;
    let fresh: Vec<&str> = control.iter().copied().chain(["--fresh"]).collect();
    lb = lb.start_again(&mounts, lb_ns, &fresh)?;
    lb.wait_for("lb status to answer", WAIT, |s| s["pin_dir"].is_string())?;
    ensure!(lb.process.stderr_tail().contains("the saved shunting state is not used"), "{}", lb.process.stderr_tail());
    ensure!(lb.status()?["adopted"] == false, "a --fresh start says it adopted");
    let web4 = shunt(&lb, "web")?;
    ensure!(web4["state"] == "closed" && web4["opened_total"] == 0, "{web4}");
    lb.wait_for("the saved state replaced", WAIT, |_| {
        std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("\"state\": \"closed\"") && !t.contains("\"state\": \"open\""))
    })?;
    ensure!(hook_lines(&log) == opened, "hooks ran at the fresh start: {:?}", hook_lines(&log));

    // lb detach removes the instance's shunting state with the rest.
    lb.stop()?;
    lb.detach(&mounts)?;
    ensure!(!saved.exists(), "{} is still there after lb detach", saved.display());
    Ok(())
}
