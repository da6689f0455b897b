//! Traffic shunting operated end to end with the real `lb run` and the real CLI (NAT, two-arm,
//! native XDP on veth): two primary backends with a low `max_sessions`, two overflow backends.
//! The operator opens the pool (`lb shunt open`); once the primaries are measured full, real new
//! connections reach the overflow backends; `lb shunt close` drains them (their connections go
//! on, new ones go to the primaries) and the pool closes once they end. The hooks really run,
//! the pool's state survives a reload, and the contribution accounts equal what the test itself
//! sent to the overflow backends, also after a restart of lb. Every wait has a deadline.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use lb_tests::{
    client::{TcpSession, tcp_ask},
    daemon::LbDaemon,
    names,
    servers::BackendServer,
    topology::TwoArm,
};
use serde_json::Value;

const VIP: &str = "10.200.100.1";
/// Per connect / read / write.
const T: Duration = Duration::from_secs(3);
/// For the daemon to reach a state (ticks and session counts come once a second).
const WAIT: Duration = Duration::from_secs(20);
/// Each primary backend's max_sessions: it is marked full at this many active sessions.
const MAX_SESSIONS: usize = 2;
const PRIMARIES: [usize; 2] = [0, 1];
const OVERFLOW: [usize; 2] = [2, 3];

fn vip() -> IpAddr {
    VIP.parse().expect("vip")
}

/// A directory of the test's own, removed on drop: the hook script, its log, lb's state dir.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(names::unique("shunt"));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A hook that appends "<hook> <service> <argument>" to `log`.
fn hook_script(dir: &Path, log: &Path) -> Result<PathBuf> {
    let script = dir.join("hook.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$LB_SHUNT_HOOK $LB_SERVICE $1\" >> {}\n", log.display()))?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(script)
}

/// web: the primaries at most MAX_SESSIONS sessions each, the overflow pool opened by hand only
/// (no rules), closed at once when asked (min_open_secs 0); `plain`: no overflow backends.
fn config(topo: &TwoArm, hook: &Path, drain_timeout: u32) -> String {
    let hook = hook.display();
    let mut c = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [service.health]\nkind = \"tcp\"\ninterval_ms = 300\ntimeout_ms = 250\nrise = 1\nfall = 5\n\
         [service.shunt]\nmin_open_secs = 0\ndrain_timeout = {drain_timeout}\n\
         on_open = [\"{hook}\", \"opening\"]\non_close = [\"{hook}\", \"closed\"]\n"
    );
    for i in PRIMARIES {
        c += &format!("[[service.backend]]\naddress = \"{}\"\nport = 8080\nmax_sessions = {MAX_SESSIONS}\n", topo.backend(i).v4());
    }
    for i in OVERFLOW {
        c += &format!("[[service.backend]]\naddress = \"{}\"\nport = 8080\npool = \"overflow\"\n", topo.backend(i).v4());
    }
    c += &format!(
        "[[service]]\nname = \"plain\"\nvip = \"{VIP}\"\nport = 81\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [[service.backend]]\naddress = \"{}\"\nport = 8080\n",
        topo.backend(0).v4()
    );
    c
}

fn label(i: usize) -> String {
    format!("backend{i}")
}

fn addr(topo: &TwoArm, i: usize) -> String {
    format!("{}:8080", topo.backend(i).v4())
}

fn is_overflow(label: &str) -> bool {
    OVERFLOW.iter().any(|&i| self::label(i) == label)
}

fn backend<'a>(s: &'a Value, svc: &str, addr: &str) -> Option<&'a Value> {
    s["services"].as_array()?.iter().find(|x| x["name"] == svc)?["backends"].as_array()?.iter().find(|b| b["address"] == addr)
}

/// `lb shunt status web --json`'s one service.
fn shunt_of(v: &Value) -> &Value {
    &v[0]
}

fn tally(labels: impl IntoIterator<Item = String>) -> HashMap<String, u64> {
    let mut t = HashMap::new();
    for l in labels {
        *t.entry(l).or_default() += 1;
    }
    t
}

/// Every session still echoes: the same connection, to the same backend.
fn alive(sessions: &mut [TcpSession], when: &str) -> Result<()> {
    for (i, s) in sessions.iter_mut().enumerate() {
        let line = format!("{when} {i}");
        let back = s.echo(&line).with_context(|| format!("{when}: the connection to {} broke", s.name()))?;
        ensure!(back == line, "{when}: {} echoed {back:?}", s.name());
    }
    Ok(())
}

/// Waits until the hook log holds exactly `lines`.
fn wait_hook_log(log: &Path, lines: &[&str]) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().collect::<Vec<_>>() == lines {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("hook log {} is {text:?}, expected {lines:?}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The contribution account of overflow backend `i` in a `lb shunt report --json`.
fn account<'a>(report: &'a Value, topo: &TwoArm, i: usize) -> Option<&'a Value> {
    report["backends"].as_array()?.iter().find(|r| r["service"] == "web" && r["backend"] == addr(topo, i))
}

/// Every overflow backend's account counts the new sessions the test made to it, and the
/// packets and bytes lb counted for it.
fn accounts_match(report: &Value, status: &Value, topo: &TwoArm, made: &HashMap<String, u64>) -> bool {
    OVERFLOW.iter().all(|&i| {
        let (Some(a), Some(b)) = (account(report, topo, i), backend(status, "web", &addr(topo, i))) else { return false };
        a["new_sessions"].as_u64() == Some(made.get(&label(i)).copied().unwrap_or(0))
            && a["packets"] == b["counters"]["packets"]
            && a["bytes"] == b["counters"]["bytes"]
    })
}

#[test]
fn an_operator_opens_and_closes_the_overflow_pool_and_its_backends_are_accounted() -> Result<()> {
    let topo = TwoArm::new(4)?;
    let _servers = BackendServer::start_all(topo.backends(), 8080)?;
    let dir = TempDir::new()?;
    let (log, state_dir) = (dir.0.join("hooks.log"), dir.0.join("state"));
    let hook = hook_script(&dir.0, &log)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let state_s = state_dir.display().to_string();
    let mut lb = LbDaemon::start_with(topo.lb().ns(), &config(&topo, &hook, 120), &arms, &["--state-dir", &state_s])?;
    let web_status = ["shunt", "status", "web"];

    // Closed: the overflow backends are health-checked (status says they could open) but get
    // no flows; the primaries take every connection.
    lb.wait_for_json(&web_status, "overflow backends healthy while closed", WAIT, |v| {
        let s = shunt_of(v);
        s["state"] == "closed" && s["backends"].as_array().is_some_and(|b| b.len() == 2 && b.iter().all(|b| b["healthy"] == true))
    })?;
    lb.wait_in_service("web", 2, WAIT)?;
    let seen = (0..10).map(|_| tcp_ask(topo.client().ns(), vip(), 80, T)).collect::<Result<Vec<_>>>()?;
    ensure!(!seen.iter().any(|l| is_overflow(l)), "a closed pool took flows: {:?}", tally(seen));

    // Bad input: a service without overflow backends, an unknown service.
    let err = lb.cli(&["shunt", "open", "plain"]).err().context("opening a service without overflow backends")?.to_string();
    ensure!(err.contains("\"plain\"") && err.contains("no overflow backends") && err.contains("lb reload"), "{err}");
    let err = lb.cli(&["shunt", "open", "nosuch"]).err().context("opening an unknown service")?.to_string();
    ensure!(err.contains("\"nosuch\""), "{err}");
    ensure!(lb.cli(&["shunt", "status", "plain"]).is_err(), "plain has no pool to show");

    // Open: the answer comes after the tick that acted on it; the backends, healthy, take flows.
    let out = lb.cli(&["shunt", "open", "web", "--reason", "test"])?;
    ensure!(out.contains("service web: overflow pool open (manual: test)"), "{out}");
    let v = lb.cli_json(&web_status)?;
    let s = shunt_of(&v);
    ensure!(s["state"] == "open" && s["why"] == "manual: test", "{s}");
    ensure!(s["trigger"]["trigger"] == "manual" && s["trigger"]["reason"] == "test", "{s}");
    ensure!(s["backends"].as_array().is_some_and(|b| b.iter().all(|b| b["state"] == "open" && b["taking_new_flows"] == true)), "{s}");
    wait_hook_log(&log, &["on_open web opening"])?;
    let status = lb.status()?;
    let web = status["services"].as_array().and_then(|s| s.iter().find(|x| x["name"] == "web")).context("web")?;
    ensure!(web["shunt"]["state"] == "open", "{web}");
    ensure!(backend(&status, "web", &addr(&topo, 2)).is_some_and(|b| b["pool"] == "overflow" && b["taking_overflow"] == true), "{status}");
    ensure!(backend(&status, "web", &addr(&topo, 0)).is_some_and(|b| b["quota"]["max_sessions"] == MAX_SESSIONS), "{status}");
    let text = lb.cli(&["status"])?;
    ensure!(text.contains("shunt: open") && text.contains("overflow(taking flows)"), "{text}");

    // The pool's state survives a reload that changes its drain timeout.
    let since = s["since"].clone();
    std::fs::write(lb.config_path(), config(&topo, &hook, 60))?;
    let out = lb.cli(&["reload"])?;
    ensure!(out.contains("shunt settings changed"), "{out}");
    let v = lb.cli_json(&web_status)?;
    ensure!(shunt_of(&v)["state"] == "open" && shunt_of(&v)["since"] == since, "after reload: {v}");

    // Fill the primaries to max_sessions with long-lived connections; once they are measured
    // full, every new connection spills to the overflow pool.
    let mut primary_sessions = Vec::new();
    let mut overflow_sessions = Vec::new();
    let count = |v: &[TcpSession], l: &str| v.iter().filter(|s| s.name() == l).count();
    while PRIMARIES.iter().any(|&i| count(&primary_sessions, &label(i)) < MAX_SESSIONS) {
        ensure!(primary_sessions.len() + overflow_sessions.len() < 40, "40 connections and the primaries still not filled");
        let s = TcpSession::connect(topo.client().ns(), vip(), 80, T)?;
        if is_overflow(s.name()) { overflow_sessions.push(s) } else { primary_sessions.push(s) }
    }
    lb.wait_for("both primaries marked full", WAIT, |s| {
        PRIMARIES.iter().all(|&i| backend(s, "web", &addr(&topo, i)).is_some_and(|b| b["full"] == true))
    })?;
    for _ in 0..6 {
        overflow_sessions.push(TcpSession::connect(topo.client().ns(), vip(), 80, T)?);
    }
    let short = (0..6).map(|_| tcp_ask(topo.client().ns(), vip(), 80, T)).collect::<Result<Vec<_>>>()?;
    let spilled: Vec<String> = overflow_sessions.iter().map(|s| s.name().to_string()).chain(short.iter().cloned()).collect();
    ensure!(spilled.iter().all(|l| is_overflow(l)), "with the primaries full, new connections went to {:?}", tally(spilled.clone()));
    let made = tally(spilled.iter().cloned());
    alive(&mut primary_sessions, "primaries full")?;
    alive(&mut overflow_sessions, "overflow open")?;
    let events = lb.status()?["events"].clone();
    ensure!(events["spilled_to_overflow"].as_u64().unwrap_or(0) >= spilled.len() as u64, "{events}");

    // Close: no new flow to the pool, its connections go on (drain), state closing.
    let out = lb.cli(&["shunt", "close", "web", "--reason", "done"])?;
    ensure!(out.contains("service web: overflow pool closing (manual: done)"), "{out}");
    let seen = (0..6).map(|_| tcp_ask(topo.client().ns(), vip(), 80, T)).collect::<Result<Vec<_>>>()?;
    ensure!(!seen.iter().any(|l| is_overflow(l)), "a closing pool took new flows: {:?}", tally(seen));
    alive(&mut overflow_sessions, "draining")?;
    // A count of sessions taken after the close sees the overflow connections: draining.
    lb.wait_for_json(&web_status, "overflow backends draining", WAIT, |v| {
        shunt_of(v)["backends"].as_array().is_some_and(|b| b.iter().any(|b| b["state"] == "draining"))
    })?;
    alive(&mut overflow_sessions, "still draining")?;
    let v = lb.cli_json(&web_status)?;
    ensure!(shunt_of(&v)["state"] == "closing", "closed with connections open: {v}");
    ensure!(std::fs::read_to_string(&log)?.lines().count() == 1, "on_close ran before the pool drained");

    // The overflow connections end: the pool closes and on_close runs.
    for s in overflow_sessions {
        s.close()?;
    }
    lb.wait_for_json(&web_status, "the pool closed once drained", WAIT, |v| shunt_of(v)["state"] == "closed")?;
    wait_hook_log(&log, &["on_open web opening", "on_close web closed"])?;
    let v = lb.cli_json(&web_status)?;
    ensure!(shunt_of(&v)["why"] == "overflow sessions drained" && shunt_of(&v)["opened_total"] == 1, "{v}");
    alive(&mut primary_sessions, "after the close")?;
    // Released to the automatic triggers (none here): it stays closed.
    let out = lb.cli(&["shunt", "release", "web"])?;
    ensure!(out.contains("service web: overflow pool closed"), "{out}");

    // The accounts equal what the test sent to each overflow backend, and lb's own counters.
    let deadline = Instant::now() + WAIT;
    loop {
        let (report, status) = (lb.cli_json(&["shunt", "report"])?, lb.status()?);
        if accounts_match(&report, &status, &topo, &made) {
            for &i in &OVERFLOW {
                let a = account(&report, &topo, i).context("account")?;
                let used = made.contains_key(&label(i));
                ensure!(a["openings"] == u64::from(used) && (a["seconds_open"].as_u64().unwrap_or(0) >= 1), "{a}");
            }
            break;
        }
        ensure!(Instant::now() < deadline, "accounts never matched {made:?}: report {report} status {status}");
    }
    let metrics = lb.cli(&["metrics"])?;
    ensure!(metrics.contains("lb_shunt_state{service=\"web\"} 0") && metrics.contains("lb_shunt_openings_total{service=\"web\"} 1"), "{metrics}");
    drop(primary_sessions);

    // A restart keeps the accounts (saved at shutdown in --state-dir).
    let report = lb.cli_json(&["shunt", "report"])?;
    lb.stop()?;
    ensure!(state_dir.join("contributions.json").exists(), "no accounts file in {}", state_dir.display());
    let mut again = LbDaemon::start_with(topo.lb().ns(), &config(&topo, &hook, 120), &arms, &["--state-dir", &state_s])?;
    again.wait_for_json(&["shunt", "report"], "the accounts loaded after a restart", WAIT, |r| r["backends"] == report["backends"])?;
    again.stop()?;
    Ok(())
}
