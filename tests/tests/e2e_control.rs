//! The control endpoint (`--control-listen`) end to end with the real `lb run`: an external
//! system opens the overflow pool over HTTP with a TTL and it closes by itself when the TTL
//! lapses, a renewal keeps it open, overflow servers report closing / ready; wrong tokens,
//! malformed JSON, unknown services and backends are refused and change nothing; a token file
//! that is world-readable or empty refuses the start. The endpoint listens on the lb's own
//! client-side address inside the test's namespaces. Every wait has a deadline.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use lb_tests::{
    client::{HttpResponse, http_exchange},
    daemon::LbDaemon,
    names,
    servers::BackendServer,
    topology::TwoArm,
};
use serde_json::Value;

const VIP: &str = "10.200.100.1";
const CONTROL_PORT: u16 = 9200;
const TOKEN: &str = "e2e-control-token-0123456789";
/// Per HTTP request (an accepted one is answered after the daemon's next tick).
const T: Duration = Duration::from_secs(5);
/// For the daemon to reach a state (ticks come once a second).
const WAIT: Duration = Duration::from_secs(20);
const OVERFLOW: [usize; 2] = [2, 3];
const WEB: [&str; 3] = ["shunt", "status", "web"];

/// A directory of the test's own (the token files), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(names::unique("control"));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    fn file(&self, name: &str, text: &str, mode: u32) -> Result<String> {
        let path = self.0.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        Ok(path.display().to_string())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// web: backends 0 and 1 primary, 2 and 3 overflow, no rules (only commands open the pool),
/// min_open_secs 0 (a lapsed claim closes at once); `plain`: no overflow backends.
fn config(topo: &TwoArm) -> String {
    let mut c = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [service.health]\nkind = \"tcp\"\ninterval_ms = 300\ntimeout_ms = 250\nrise = 1\nfall = 5\n\
         [service.shunt]\nmin_open_secs = 0\ndrain_timeout = 5\n"
    );
    for i in 0..4 {
        let pool = if OVERFLOW.contains(&i) { "pool = \"overflow\"\n" } else { "" };
        c += &format!("[[service.backend]]\naddress = \"{}\"\nport = 8080\n{pool}", topo.backend(i).v4());
    }
    c += &format!(
        "[[service]]\nname = \"plain\"\nvip = \"{VIP}\"\nport = 81\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [[service.backend]]\naddress = \"{}\"\nport = 8080\n",
        topo.backend(0).v4()
    );
    c
}

fn addr(topo: &TwoArm, i: usize) -> String {
    format!("{}:8080", topo.backend(i).v4())
}

struct Control<'a> {
    topo: &'a TwoArm,
    at: SocketAddr,
}

impl Control<'_> {
    fn post(&self, path: &str, token: Option<&str>, body: &str) -> Result<(u16, Value)> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        let r: HttpResponse = http_exchange(self.topo.client().ns(), self.at, "POST", path, &headers, body, T)?;
        ensure!(r.header("content-type") == Some("application/json"), "{path}: {r:?}");
        if r.status == 401 {
            ensure!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "401 without WWW-Authenticate: {r:?}");
        }
        let json = serde_json::from_str(&r.body).with_context(|| format!("{path}: body {:?}", r.body))?;
        Ok((r.status, json))
    }

    fn shunt(&self, service: &str, body: &str) -> Result<(u16, Value)> {
        self.post(&format!("/v1/services/{service}/shunt"), Some(TOKEN), body)
    }

    fn report(&self, service: &str, backend: &str, state: &str) -> Result<(u16, Value)> {
        self.post(&format!("/v1/services/{service}/backends/{backend}"), Some(TOKEN), &format!(r#"{{"state":"{state}"}}"#))
    }
}

/// A refusal: its status and that its error says `says`.
fn refused(answer: (u16, Value), status: u16, says: &str) -> Result<()> {
    let (got, body) = answer;
    ensure!(got == status, "expected {status}, got {got}: {body}");
    let error = body["error"].as_str().with_context(|| format!("no error in {body}"))?;
    ensure!(error.contains(says), "the {status} error {error:?} does not say {says:?}");
    Ok(())
}

fn backend<'a>(s: &'a Value, addr: &str) -> Option<&'a Value> {
    s[0]["backends"].as_array()?.iter().find(|b| b["address"] == addr)
}

/// What a refused request must not change: the pool's state, since and trigger, and the events.
fn untouched(v: &Value) -> Value {
    serde_json::json!([v[0]["state"], v[0]["since"], v[0]["trigger"], v[0]["events"]])
}

/// Polls the status until `until`, failing as soon as the pool is not open.
fn stays_open(lb: &mut LbDaemon, until: Instant, what: &str) -> Result<()> {
    while Instant::now() < until {
        let v = lb.cli_json(&WEB)?;
        ensure!(v[0]["state"] == "open", "{what}: the pool is not open: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[test]
fn an_external_system_opens_the_pool_with_a_ttl_and_overflow_servers_report_their_state() -> Result<()> {
    let topo = TwoArm::new(4)?;
    let _servers = BackendServer::start_all(topo.backends(), 8080)?;
    let dir = TempDir::new()?;
    let token_file = dir.file("token", &format!("{TOKEN}\n"), 0o600)?;
    let at = SocketAddr::new(IpAddr::V4(topo.lb_arm0().v4()), CONTROL_PORT);
    let listen = at.to_string();
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let config = config(&topo);

    // A token file anyone may read, an empty one, or none: the start is refused, saying why.
    let open_file = dir.file("open-token", TOKEN, 0o644)?;
    let empty_file = dir.file("empty-token", "\n", 0o600)?;
    for (options, says) in [
        (vec!["--control-listen", &listen, "--control-token-file", &open_file], "world-readable"),
        (vec!["--control-listen", &listen, "--control-token-file", &empty_file], "is empty"),
        (vec!["--control-listen", &listen], "needs --control-token-file"),
    ] {
        let mut lb = LbDaemon::start_with(topo.lb().ns(), &config, &arms, &options)?;
        let log = lb.wait_exit(T)?;
        ensure!(log.contains(says), "a start with {options:?} was not refused with {says:?}: {log}");
    }

    let mut lb = LbDaemon::start_with(topo.lb().ns(), &config, &arms, &["--control-listen", &listen, "--control-token-file", &token_file])?;
    let control = Control { topo: &topo, at };
    lb.wait_for_json(&WEB, "overflow backends healthy while closed", WAIT, |v| {
        v[0]["state"] == "closed" && v[0]["backends"].as_array().is_some_and(|b| b.len() == 2 && b.iter().all(|b| b["healthy"] == true))
    })?;
    lb.wait_in_service("web", 2, WAIT)?;

    // Refused requests: each says what was wrong, and the pool is as it was.
    let before = untouched(&lb.cli_json(&WEB)?);
    let open = r#"{"action":"open","reason":"partner","ttl_secs":2}"#;
    refused(control.post("/v1/services/web/shunt", Some("wrong-token"), open)?, 401, "bearer token")?;
    refused(control.post("/v1/services/web/shunt", None, open)?, 401, "bearer token")?;
    refused(control.shunt("web", r#"{"action":"open","ttl_secs":"2"}"#)?, 400, "invalid type")?;
    refused(control.shunt("web", r#"{"reason":"x"}"#)?, 400, "missing field `action`")?;
    refused(control.shunt("web", "{\"action\":")?, 400, "malformed JSON")?;
    refused(control.shunt("web", r#"{"action":"close","ttl_secs":2}"#)?, 400, "ttl_secs")?;
    refused(control.shunt("nosuch", open)?, 404, "\"nosuch\"")?;
    refused(control.shunt("plain", open)?, 409, "no overflow backends")?;
    refused(control.report("web", "10.9.9.9:8080", "closing")?, 404, "has no backend 10.9.9.9:8080")?;
    refused(control.report("web", &addr(&topo, 0), "closing")?, 409, "primary backend")?;
    refused(control.report("web", &addr(&topo, 2), "gone")?, 400, "unknown variant `gone`")?;
    refused(control.post("/v1/services/web/stop", Some(TOKEN), open)?, 404, "no such endpoint")?;
    let r = http_exchange(topo.client().ns(), at, "GET", "/v1/services/web/shunt", &[("Authorization", &format!("Bearer {TOKEN}"))], "", T)?;
    ensure!(r.status == 405 && r.header("allow") == Some("POST"), "{r:?}");
    let huge = format!(r#"{{"action":"open","reason":"{}"}}"#, "x".repeat(70 * 1024));
    refused(control.shunt("web", &huge)?, 413, "over 65536 bytes")?;
    let after = untouched(&lb.cli_json(&WEB)?);
    ensure!(before == after, "a refused request changed the pool: before {before}, after {after}");

    // An external open with a TTL: answered after the tick that opened the pool. The TTL
    // counts from the request (in whole seconds of the daemon's clock): by `sent` + TTL + a
    // tick the claim has lapsed unless renewed.
    let sent = Instant::now();
    let (status, done) = control.shunt("web", open)?;
    ensure!(status == 200 && done["service"] == "web" && done["shunt"]["state"] == "open", "{status}: {done}");
    ensure!(done["done"].as_str().is_some_and(|d| d.contains("external open") && d.contains("partner")), "{done}");
    let v = lb.cli_json(&WEB)?;
    ensure!(v[0]["state"] == "open" && v[0]["trigger"]["trigger"] == "external" && v[0]["trigger"]["reason"] == "partner", "{v}");
    ensure!(v[0]["trigger"]["expires_at"].is_i64(), "an open with a TTL has an expiry: {v}");

    // Renewed before it lapses (for 5 s), it stays open well past the first TTL...
    let (status, done) = control.shunt("web", r#"{"action":"open","reason":"partner","ttl_secs":5}"#)?;
    ensure!(sent.elapsed() < Duration::from_secs(2), "the renewal came too late to test: {:?}", sent.elapsed());
    ensure!(status == 200 && done["shunt"]["state"] == "open", "renewal: {status}: {done}");
    let renewed = Instant::now();
    stays_open(&mut lb, sent + Duration::from_millis(3500), "after the renewal, past the first TTL")?;
    // ...and closes by itself once the renewed TTL lapses.
    lb.wait_for_json(&WEB, "the pool closed after the TTL", WAIT, |v| v[0]["state"] == "closed")?;
    ensure!(renewed.elapsed() >= Duration::from_secs(3), "closed only {:?} after a 5 s renewal", renewed.elapsed());
    // The events say so: the renewed claim lapsed (not the first one), and nothing else closed it.
    let v = lb.cli_json(&WEB)?;
    let events = v[0]["events"].as_array().context("events")?;
    let renewal = events.iter().rev().find(|e| e["detail"]["event"] == "command" && e["detail"]["source"] == "external");
    let expires = renewal.and_then(|e| e["detail"]["why"]["expires_at"].as_i64()).context("the renewal's expiry")?;
    let closed_by = events.iter().rev().find(|e| e["detail"]["event"] == "pool" && e["detail"]["to"] == "closing").context("a close")?;
    ensure!(
        closed_by["detail"]["why"]["trigger"] == "external_expired"
            && closed_by["detail"]["why"]["reason"] == "partner"
            && closed_by["at"].as_i64() >= Some(expires),
        "not closed by the lapse of the renewed claim (expiring at {expires}): {closed_by}"
    );

    // Overflow servers' own reports, while the pool is open (no TTL: until the close).
    let (status, _) = control.shunt("web", r#"{"action":"open","reason":"campaign"}"#)?;
    ensure!(status == 200, "{status}");
    lb.wait_for_json(&WEB, "both overflow backends taking flows", WAIT, |v| {
        OVERFLOW.iter().all(|&i| backend(v, &addr(&topo, i)).is_some_and(|b| b["state"] == "open" && b["taking_new_flows"] == true))
    })?;
    let (a, b) = (addr(&topo, 2), addr(&topo, 3));
    let (status, done) = control.report("web", &a, "closing")?;
    ensure!(status == 200 && done["done"].as_str().is_some_and(|d| d.contains("reports closing")), "{status}: {done}");
    let v = lb.cli_json(&WEB)?;
    let (ba, bb) = (backend(&v, &a).context("a")?, backend(&v, &b).context("b")?);
    ensure!(ba["report"] == "closing" && ba["taking_new_flows"] == false && ba["state"] != "open", "closing: {ba}");
    ensure!(bb["taking_new_flows"] == true && v[0]["state"] == "open", "the other one and the pool go on: {v}");
    let (status, _) = control.report("web", &a, "ready")?;
    ensure!(status == 200, "{status}");
    lb.wait_for_json(&WEB, "the backend that reported ready takes flows again", WAIT, |v| {
        backend(v, &a).is_some_and(|b| b["report"] == "ready" && b["state"] == "open" && b["taking_new_flows"] == true)
    })?;

    // An external close.
    let (status, done) = control.shunt("web", r#"{"action":"close","reason":"campaign over"}"#)?;
    ensure!(status == 200 && done["shunt"]["state"] != "open", "{status}: {done}");
    lb.wait_for_json(&WEB, "the pool closed", WAIT, |v| v[0]["state"] == "closed")?;
    lb.stop()?;
    Ok(())
}
