//! How late the daemon handles a health event while it counts sessions in a 16M-record
//! SESSIONS (256 MiB). The real `lb run`, timed by its own log lines: each round waits for a walk
//! to start ("walking SESSIONS"), then kills a backend's server, so its checker (20 ms interval)
//! sends the down event while the walk runs; the daemon logs how long that event waited
//! (`queued_us`) and how long the walk took (`walk_us`). `lb-bench` prints the result.

use std::{
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    daemon::{LbDaemon, lb_host},
    servers::TcpServer,
};

/// The largest table `[sessions] capacity` allows.
pub const RECORDS: u32 = lb_common::MAX_SESSION_CAPACITY;
/// What the issue asks for: a health event handled within this of its sending.
pub const GOAL: Duration = Duration::from_millis(10);
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// One round: the walk, and the health event sent while it ran.
#[derive(Debug, Clone)]
pub struct CensusRound {
    pub walk: Duration,
    /// From the checker sending the event to the daemon's loop handling it.
    pub queued: Duration,
    /// False if the event was sent after the walk had ended (a walk too short to catch).
    pub during_walk: bool,
}

fn config() -> String {
    format!(
        "[sessions]\ncapacity = {RECORDS}\n\
         [[service]]\nname = \"web\"\nvip = \"10.200.77.100\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [service.health]\nkind = \"tcp\"\ninterval_ms = 20\ntimeout_ms = 10\nrise = 1\nfall = 1\n\
         [[service.backend]]\naddress = \"10.200.77.1\"\nport = 8081\n\
         [[service.backend]]\naddress = \"10.200.77.1\"\nport = 8082\n"
    )
}

/// Runs `rounds` rounds against one `lb run`.
pub fn run(rounds: usize) -> Result<Vec<CensusRound>> {
    let ns = lb_host("census", &["lb0"])?;
    ns.ip(&["addr", "add", "10.200.77.1/24", "dev", "lb0"])?;
    let _steady = TcpServer::start(&ns, "a", 8081)?;
    let mut flapping = TcpServer::start(&ns, "b", 8082)?;
    let mut lb = LbDaemon::start_by(&ns, &config(), &["lb0"], &[], |args| {
        // The walk's own lines are debug; the checkers' are not wanted.
        ns.spawn(&[&["env", "NO_COLOR=1", "RUST_LOG=info,lb::daemon=debug"], args].concat())
    })?;
    let lines = lb.process.stderr_lines();
    lb.wait_in_service("web", 2, Duration::from_secs(30))?;
    let mut out = Vec::new();
    for _ in 0..rounds {
        // Whatever was logged before this walk started belongs to earlier rounds.
        next_line(&lines, |l| l.contains("walking SESSIONS").then_some(()))?;
        flapping.kill()?;
        let mut walk_end = None;
        let mut event = None;
        while walk_end.is_none() || event.is_none() {
            let (line, at) = next_line(&lines, |l| Some(crate::child::plain(l)))?;
            if line.contains("counted SESSIONS") && walk_end.is_none() {
                walk_end = Some((field(&line, "walk_us")?, at));
            } else if line.contains("backend health changed") && line.contains("state=\"down\"") {
                event = Some((field(&line, "queued_us")?, at));
            }
        }
        let ((walk, walk_ended), (queued, handled)) = (walk_end.expect("set"), event.expect("set"));
        let sent = handled.checked_sub(queued).unwrap_or(handled);
        out.push(CensusRound { walk, queued, during_walk: sent < walk_ended });
        flapping.restart()?;
        next_line(&lines, |l| (l.contains("backend health changed") && l.contains("state=\"up\"")).then_some(()))?;
    }
    lb.stop()?;
    Ok(out)
}

/// The first line (and when it came) for which `pick` says something.
fn next_line<T>(lines: &Receiver<String>, pick: impl Fn(&str) -> Option<T>) -> Result<(T, Instant)> {
    let deadline = Instant::now() + LINE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).context("no awaited line in lb's log")?;
        if let Some(t) = pick(&line) {
            return Ok((t, Instant::now()));
        }
    }
}

/// `name=<microseconds>` from a log line.
fn field(line: &str, name: &str) -> Result<Duration> {
    let Some(rest) = line.split_once(&format!("{name}=")).map(|(_, r)| r) else {
        bail!("no {name} in {line:?}");
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Ok(Duration::from_micros(digits.parse().with_context(|| format!("{name} in {line:?}"))?))
}

/// Prints the rounds, their medians and the worst event.
pub fn print(rounds: &[CensusRound]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut walks: Vec<f64> = rounds.iter().map(|r| ms(r.walk)).collect();
    let mut queued: Vec<f64> = rounds.iter().filter(|r| r.during_walk).map(|r| ms(r.queued)).collect();
    let median = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let worst = queued.iter().copied().fold(f64::NAN, f64::max);
    let caught = queued.len();
    println!(
        "health event during a session census ({RECORDS} records, {} MiB, `lb run`): walk median {:.0} ms; \
         event handled {:.2} ms after it was sent (median), {worst:.2} ms at worst, over {} of {} rounds that \
         caught a walk (goal < {} ms: {})",
        (u64::from(RECORDS) * size_of::<lb_common::SessionSlot>() as u64) >> 20,
        median(&mut walks),
        median(&mut queued),
        caught,
        rounds.len(),
        GOAL.as_millis(),
        if worst < ms(GOAL) { "met" } else { "MISSED" },
    );
}
