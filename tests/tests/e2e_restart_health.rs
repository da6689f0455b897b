//! A health checker's history survives a restart of the real `lb run`: a backend that was up,
//! went down and has come back is in the middle of its `rise` when lb gets SIGTERM; the next
//! start (adopting the data plane) resumes its checker from `health-<instance>.json`, says so
//! ("resumes its health checks down: N of 7 successes toward up"), and the backend enters
//! service at the (7 - N)-th check of the new checker, not at its 7th (nor at its 1st, as a
//! backend with no history would). After its health settings changed while lb was down, the
//! checks start from the maps' health instead; so do they when the saved health contradicts
//! the maps.
//!
//! No timing is assumed about when a check runs: the test waits on the saved document, the
//! status and lb's log, and counts checks with the number of the check that brought the backend
//! up (`check=` of "backend health changed", counted from 1 since the checker started). The one
//! window is between the saved document showing 2 successes and lb's exit: the backend must not
//! pass 5 more checks (5 s at the 1 s interval) in it, else the test says so.
//!
//! lb runs in a `MountNs`, whose bpffs outlives each lb as a host's does; the MountNs's end
//! takes whatever is left with it, also when a test fails.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use lb_tests::{
    child::plain,
    daemon::{LbDaemon, in_service, lb_host},
    mount_ns::MountNs,
    servers::TcpServer,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);
const ADDR: &str = "10.200.78.1";
const PORT: u16 = 8081;
/// Successes a backend that has been up needs to come back. Large enough that the rise
/// outlasts the test's reaction (see the module doc); 1 s between checks.
const RISE: u64 = 7;

fn config(rise: u64) -> String {
    format!(
        "[[service]]\nname = \"web\"\nvip = \"10.200.78.100\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [service.health]\nkind = \"tcp\"\ninterval_ms = 1000\ntimeout_ms = 500\nrise = {rise}\nfall = 1\n\
         [[service.backend]]\naddress = \"{ADDR}\"\nport = {PORT}\n"
    )
}

/// The backend's entry in the saved health document, if the document and the entry are there.
fn saved(file: &Path) -> Option<Value> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    let backends = doc["data"]["backends"].as_array()?;
    backends.iter().find(|b| b["service"] == "web" && b["backend"] == format!("{ADDR}:{PORT}")).cloned()
}

/// Waits until the saved entry satisfies `cond` (lb writes it at most once a second, when it
/// changed); returns it.
fn wait_saved(lb: &mut LbDaemon, file: &Path, what: &str, cond: impl Fn(&Value) -> bool) -> Result<Value> {
    let start = Instant::now();
    while start.elapsed() < T {
        ensure!(lb.process.is_running(), "lb exited while waiting for {what}: {}", lb.process.stderr_tail());
        match saved(file) {
            Some(entry) if cond(&entry) => return Ok(entry),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    bail!("timed out waiting for {what} in {}: {:?}; lb stderr: {}", file.display(), saved(file), lb.process.stderr_tail())
}

/// Waits for a line of lb's log (colours removed) that satisfies `cond`; returns it and the
/// whole log so far.
fn wait_log(lb: &mut LbDaemon, what: &str, cond: impl Fn(&str) -> bool) -> Result<(String, String)> {
    let start = Instant::now();
    while start.elapsed() < T {
        let log = plain(&lb.process.stderr_tail());
        if let Some(line) = log.lines().find(|l| cond(l)) {
            return Ok((line.to_string(), log));
        }
        ensure!(lb.process.is_running(), "lb exited while waiting for {what}: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out waiting for {what} in lb's log: {}", plain(&lb.process.stderr_tail()))
}

/// The check that brought the backend up, from its "backend health changed" line.
fn up_at_check(lb: &mut LbDaemon) -> Result<(u64, String)> {
    let (line, log) = wait_log(lb, "the backend to come up", |l| l.contains("backend health changed") && l.contains("state=\"up\""))?;
    let digits: String = line.split_once(" check=").context("no check= in the line")?.1.chars().take_while(char::is_ascii_digit).collect();
    Ok((digits.parse().with_context(|| format!("check= in {line:?}"))?, log))
}

/// Takes the backend down (its server stopped, fall = 1), brings its server back and waits
/// until the saved document shows at least `successes` of the rise; then stops lb and returns
/// the entry lb saved at exit.
fn stop_during_rise(lb: &mut LbDaemon, server: &mut TcpServer, file: &Path, successes: u64) -> Result<Value> {
    server.kill()?;
    lb.wait_in_service("web", 0, T)?;
    server.restart()?;
    let what = format!("{successes} successes toward up");
    wait_saved(lb, file, &what, |e| e["health"] == "down" && e["streak"].as_u64() >= Some(successes))?;
    lb.stop()?;
    let entry = saved(file).context("no saved entry after lb exited")?;
    let streak = entry["streak"].as_u64().context("no streak")?;
    ensure!(entry["health"] == "down", "the backend came up before lb exited (the machine stalled for {RISE} checks?): {entry}");
    ensure!(entry["been_up"] == true, "the backend was up before: {entry}");
    ensure!((successes..RISE).contains(&streak), "saved streak {streak}, expected {successes}..{RISE}: {entry}");
    Ok(entry)
}

#[test]
fn a_rise_in_progress_goes_on_after_a_restart_unless_settings_or_maps_disagree() -> Result<()> {
    let ns = lb_host("hhist", &["lb0"])?;
    ns.ip(&["addr", "add", &format!("{ADDR}/24"), "dev", "lb0"])?;
    let mut server = TcpServer::start(&ns, "b", PORT)?;
    let mounts = MountNs::new(&ns)?;
    let mut lb = LbDaemon::start_in(&mounts, &ns, &config(RISE), &["lb0"], &[])?;
    let file = lb.state_files().context("no state dir")?[2].clone();
    let backend = format!("{ADDR}:{PORT}");

    // A first start: up at the first success (fast start), with nothing to resume.
    lb.wait_in_service("web", 1, T)?;
    let (check, log) = up_at_check(&mut lb)?;
    ensure!(check == 1, "a new backend comes up at its first check, not at check {check}: {log}");
    ensure!(!log.contains("resumes its health checks"), "{log}");

    // Case A: the backend went down and is coming back (it has been up: the full rise applies)
    // when lb stops; the next start goes on with its successes.
    let entry = stop_during_rise(&mut lb, &mut server, &file, 2)?;
    let n = entry["streak"].as_u64().context("no streak")?;
    let mut lb = lb.start_again(&mounts, &ns, &[])?;
    let (check, log) = up_at_check(&mut lb)?;
    ensure!(log.contains("adopted the running data plane"), "lb did not adopt: {log}");
    ensure!(log.contains("service web: adopted, 1 backend(s) kept (0 in service, 0 draining)"), "the backend was not kept down: {log}");
    let line = format!("service web: backend {backend} resumes its health checks down: {n} of {RISE} successes toward up");
    ensure!(log.contains(&line), "not logged: {line}\n{log}");
    // Without its history the checker would start as a new backend's (up at check 1); with the
    // history but not the streak it would need all RISE.
    ensure!(check == RISE - n, "up at check {check} of the new checker, expected {} (the {RISE} - {n} successes left): {log}", RISE - n);
    ensure!(in_service(&lb.status()?, "web") == Some(1), "the backend is not in service after its up event");
    eprintln!("resumed with {n} of {RISE} successes: up at check {check} of the new checker");

    // Case B: the same, but `rise` changes while lb is down: the streak counted toward the old
    // rise does not count; the checks start from the maps' health (down, without history: up
    // at its first success, as at a first start).
    stop_during_rise(&mut lb, &mut server, &file, 1)?;
    let edited = std::fs::read_to_string(lb.config_path())?.replace(&format!("rise = {RISE}\n"), &format!("rise = {}\n", RISE - 1));
    ensure!(edited.contains(&format!("rise = {}\n", RISE - 1)), "the test could not edit the config: {edited}");
    std::fs::write(lb.config_path(), edited)?;
    let mut lb = lb.start_again(&mounts, &ns, &[])?;
    let (check, log) = up_at_check(&mut lb)?;
    let line = format!("service web: backend {backend}: its health settings changed, its checks start from the maps' health (down)");
    ensure!(log.contains(&line), "not logged: {line}\n{log}");
    ensure!(!log.contains("resumes its health checks"), "a history with other settings was resumed: {log}");
    ensure!(check == 1, "up at check {check}, expected 1 (the maps' health, no history): {log}");

    // The maps disagree: the backend is up (in the maps) but the saved document, edited while
    // lb is down, says down with 3 successes toward up: the maps win. Its checker starts up, so
    // its first failure (fall = 1) takes it out of service; a checker resumed down would never
    // send that event.
    lb.stop()?;
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let entry = doc["data"]["backends"].as_array_mut().and_then(|b| b.first_mut()).context("no saved backend")?;
    ensure!(entry["health"] == "up" && entry["streak"] == 0, "saved at exit with the backend up: {entry}");
    entry["health"] = "down".into();
    entry["streak"] = 3.into();
    std::fs::write(&file, serde_json::to_string_pretty(&doc)?)?;
    let mut lb = lb.start_again(&mounts, &ns, &[])?;
    let line = format!("service web: backend {backend}: saved health down, the maps say up: its checks start from the maps' health");
    let (_, log) = wait_log(&mut lb, "the maps to win", |l| l.contains(&line))?;
    ensure!(!log.contains("resumes its health checks"), "{log}");
    ensure!(in_service(&lb.status()?, "web") == Some(1), "the backend is not in service as adopted: {log}");
    server.kill()?;
    lb.wait_in_service("web", 0, T)?;
    wait_log(&mut lb, "the down event", |l| l.contains("backend health changed") && l.contains("state=\"down\""))?;

    lb.stop()?;
    lb.detach(&mounts)?;
    Ok(())
}
