//! The overflow pool driven by load, end to end with the real `lb run` (NAT, two-arm, native
//! XDP on veth). Two primary backends (40 new sessions/s each) and two overflow backends (60/s
//! each), every one a `CountingServer` that stamps its own accepts. A client ramps new
//! connections from 12/s up to 120/s (more than the primaries take together, less than all four
//! do) and back down, while a few long-lived connections echo every 100 ms. The enter rule
//! (above 40/s for 2 s) opens the pool before the primaries fill; no backend takes more than its
//! quota plus the documented burst in any one-second window (by its own count), and the
//! primaries take at least 80% of theirs in their busiest second; no connection
//! fails; once the load falls the pool drains (its long-lived connections closed by the client)
//! and closes; `lb shunt report` equals the overflow backends' own counts. Every wait has a
//! deadline; the only sleeps pace the client's traffic.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};
use lb_common::quota::most_admitted_in_a_second;
use lb_tests::{
    client::TcpSession,
    daemon::LbDaemon,
    netns::Netns,
    servers::CountingServer,
    topology::TwoArm,
};
use serde_json::Value;

const VIP: &str = "10.200.100.1";
const PORT: u16 = 8080;
/// Per connect / read / write.
const T: Duration = Duration::from_secs(3);
/// For the daemon to reach a state that needs no load change (ticks come once a second).
const WAIT: Duration = Duration::from_secs(20);
/// For a state the ramp brings about: the whole ramp fits in it.
const RAMP_WAIT: Duration = Duration::from_secs(45);
const PRIMARIES: [usize; 2] = [0, 1];
const OVERFLOW: [usize; 2] = [2, 3];
const PRIMARY_QUOTA: u64 = 40;
const OVERFLOW_QUOTA: u64 = 60;
/// Half of what the primaries take together: a primary's share of the flows is random (the
/// hash of each connection), so at 80/s offered one of them could already be at its quota.
const ENTER_ABOVE: u64 = 40;
const ENTER_FOR_SECS: u64 = 2;
const EXIT_BELOW: u64 = 20;
const EXIT_FOR_SECS: u64 = 3;
const MIN_OPEN_SECS: u64 = 3;
/// Far beyond the test's waits: the pool must close because its sessions ended, not by timeout.
const DRAIN_TIMEOUT: u64 = 120;
/// Allowed beyond for_secs + 1 s between the crossing and the test seeing the pool open: lb's
/// tick may run late on a loaded machine (~0.2 s), and the test sees the state by polling
/// `lb shunt status` every 100 ms, each poll a run of the CLI (~0.1 s under load).
const OPEN_ALLOWANCE_SECS: f64 = 0.5;
/// The offered rate (new connections a second) against seconds into the run, piecewise linear,
/// then RAMP's last rate until the test stops the client. Slow (5/s a second) through the
/// threshold so the pool is open (for_secs + 1 s later, ~55/s) before a primary's share nears its
/// quota; quick above it; 120/s held for 4 s (~20/s spilled to each overflow backend).
const RAMP: [(f64, f64); 7] = [(0.0, 12.0), (3.0, 12.0), (5.0, 30.0), (11.0, 60.0), (14.0, 120.0), (18.0, 120.0), (22.0, 12.0)];
/// How far behind its schedule the client may fall and still catch up (back-to-back connects).
const CATCH_UP_SECS: f64 = 0.02;
/// The client stops by itself after this long whatever happens (a failed test stops it sooner).
const MAX_RUN_SECS: f64 = 90.0;
/// Connections made at the peak that are kept open once they land on an overflow backend.
const LONG_LIVED_ON_OVERFLOW: usize = 2;
/// Connections opened before the ramp (the pool closed: on primaries) and kept to the end.
const LONG_LIVED_FROM_THE_START: usize = 2;

fn vip() -> IpAddr {
    VIP.parse().expect("vip")
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// The most new sessions a backend with quota `q` may take in one second (lb-common's quota.rs).
fn quota_with_burst(q: u64) -> u64 {
    most_admitted_in_a_second(q as u32)
}

fn quota_of(i: usize) -> u64 {
    if OVERFLOW.contains(&i) { OVERFLOW_QUOTA } else { PRIMARY_QUOTA }
}

fn config(topo: &TwoArm) -> String {
    let mut c = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [service.health]\nkind = \"tcp\"\ninterval_ms = 500\ntimeout_ms = 450\nrise = 1\nfall = 5\n\
         [service.shunt]\n\
         enter = [{{ metric = \"new_sessions_per_sec\", above = {ENTER_ABOVE}, for_secs = {ENTER_FOR_SECS} }}]\n\
         exit = [{{ metric = \"new_sessions_per_sec\", below = {EXIT_BELOW}, for_secs = {EXIT_FOR_SECS} }}]\n\
         min_open_secs = {MIN_OPEN_SECS}\ndrain_timeout = {DRAIN_TIMEOUT}\n"
    );
    for i in PRIMARIES.into_iter().chain(OVERFLOW) {
        let pool = if OVERFLOW.contains(&i) { "overflow" } else { "primary" };
        c += &format!(
            "[[service.backend]]\naddress = \"{}\"\nport = {PORT}\npool = \"{pool}\"\nmax_new_sessions_per_sec = {}\n",
            topo.backend(i).v4(),
            quota_of(i)
        );
    }
    c
}

/// The offered rate at `t` seconds into the run.
fn offered_rate(t: f64) -> f64 {
    let (mut before, last) = (RAMP[0], RAMP[RAMP.len() - 1]);
    for &(at, rate) in &RAMP {
        if t < at {
            return before.1 + (rate - before.1) * (t - before.0) / (at - before.0);
        }
        before = (at, rate);
    }
    last.1
}

fn is_overflow(label: &str) -> bool {
    OVERFLOW.iter().any(|&i| label == format!("backend{i}"))
}

/// What the client did.
struct Load {
    dialled: Vec<Dialled>,
    /// Connections kept open (long-lived) that landed on an overflow backend at the peak.
    kept_on_overflow: usize,
}

/// One connection the client made: when it sent the SYN (unix seconds), who served it, or
/// what went wrong.
struct Dialled {
    at: f64,
    outcome: Result<String, String>,
}

/// The ramp: paced new connections (connect, read the greeting, close: FIN both ways) until
/// `stop`. At the peak, connections that land on an overflow backend are kept open and handed
/// to `keep` (the echoing thread) until LONG_LIVED_ON_OVERFLOW are.
fn offer_load(client: &Netns, stop: &AtomicBool, keep: mpsc::Sender<TcpSession>) -> Load {
    let start = Instant::now();
    let peak = (RAMP[4].0, RAMP[5].0);
    let (mut due, mut kept, mut dialled) = (0.0f64, 0, Vec::new());
    while !stop.load(Ordering::Relaxed) && due < MAX_RUN_SECS {
        let now = start.elapsed().as_secs_f64();
        if due > now {
            // Pacing: this is the traffic's shape.
            std::thread::sleep(Duration::from_secs_f64(due - now));
        } else if now - due > CATCH_UP_SECS {
            // A client that fell behind does not make up for it in a burst: bursts make every
            // choice full for an instant, and such a flow goes to its primary over its quota.
            due = now;
        }
        let at = unix_now();
        let outcome = match TcpSession::connect(client, vip(), 80, T) {
            Ok(s) => {
                let label = s.name().to_string();
                if kept < LONG_LIVED_ON_OVERFLOW && is_overflow(&label) && (peak.0..peak.1).contains(&due) {
                    kept += 1;
                    let _ = keep.send(s);
                    Ok(label)
                } else {
                    s.close().map(|()| label).map_err(|e| format!("{e:#}"))
                }
            }
            Err(e) => Err(format!("{e:#}")),
        };
        dialled.push(Dialled { at, outcome });
        due += 1.0 / offered_rate(due);
    }
    Load { dialled, kept_on_overflow: kept }
}

/// What the echoing thread saw.
struct Echoed {
    sessions: Vec<TcpSession>,
    echoes: u64,
    broken: Vec<String>,
}

/// Every long-lived connection echoes a line every 100 ms until `stop`; new ones come through
/// `new`. A connection that fails to echo is recorded and dropped.
fn keep_echoing(new: mpsc::Receiver<TcpSession>, stop: &AtomicBool) -> Echoed {
    let mut e = Echoed { sessions: Vec::new(), echoes: 0, broken: Vec::new() };
    loop {
        e.sessions.extend(new.try_iter());
        let mut alive = Vec::new();
        for mut s in e.sessions.drain(..) {
            let line = format!("echo {}", e.echoes);
            match s.echo(&line) {
                Ok(back) if back == line => {
                    e.echoes += 1;
                    alive.push(s);
                }
                Ok(back) => e.broken.push(format!("{} echoed {back:?} to {line:?}", s.name())),
                Err(err) => e.broken.push(format!("{}: {err:#}", s.name())),
            }
        }
        e.sessions = alive;
        if stop.load(Ordering::Relaxed) {
            return e;
        }
        // The long-lived connections' pace: traffic, not synchronisation.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The most of `times` (sorted) in any window [t, t + 1 s).
fn most_in_any_second(times: &[f64]) -> u64 {
    let (mut most, mut first) = (0, 0);
    for (last, &t) in times.iter().enumerate() {
        while times[first] <= t - 1.0 {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most as u64
}

/// Counts per wall-clock second of `times`.
fn per_wall_second(times: &[f64]) -> BTreeMap<u64, u64> {
    let mut per = BTreeMap::new();
    for t in times {
        *per.entry(*t as u64).or_default() += 1;
    }
    per
}

/// When the pool was seen in each state, unix seconds (an upper bound: seen by polling).
struct Seen {
    open: f64,
    closing: f64,
}

/// The states the ramp drives the pool through, waited for while the client and the echoes
/// run; returns once the pool has closed, its long-lived connections closed by the client.
fn follow_the_pool(lb: &mut LbDaemon, stop_echo: &AtomicBool, echo: std::thread::ScopedJoinHandle<'_, Echoed>) -> Result<(Seen, Echoed)> {
    let web = ["shunt", "status", "web"];
    lb.wait_for_json(&web, "the enter rule to open the pool", RAMP_WAIT, |v| v[0]["state"] == "open")?;
    let open = unix_now();
    eprintln!("pool open: {}", lb.cli_json(&web)?[0]["why"]);
    lb.wait_for_json(&web, "the exit rule to close the pool", RAMP_WAIT, |v| v[0]["state"] == "closing")?;
    let closing = unix_now();
    // The long-lived overflow connections hold it closing: lb counts them as draining.
    lb.wait_for_json(&web, "the overflow backends draining", WAIT, |v| {
        v[0]["backends"].as_array().is_some_and(|b| b.iter().any(|b| b["state"] == "draining"))
    })?;
    let v = lb.cli_json(&web)?;
    ensure!(v[0]["state"] == "closing", "closed while long-lived overflow connections were open: {v}");
    stop_echo.store(true, Ordering::Relaxed);
    let mut echoed = echo.join().map_err(|_| anyhow::anyhow!("the echoing thread panicked"))?;
    // They finish normally, from the client: FIN both ways.
    for s in echoed.sessions.drain(..) {
        let name = s.name().to_string();
        if let Err(e) = s.close() {
            echoed.broken.push(format!("{name}: closing: {e:#}"));
        }
    }
    lb.wait_for_json(&web, "the pool closed once drained", WAIT, |v| v[0]["state"] == "closed")?;
    let v = lb.cli_json(&web)?;
    ensure!(v[0]["why"] == "overflow sessions drained", "closed for another reason: {v}");
    Ok((Seen { open, closing }, echoed))
}

/// The latest moment the client's offered rate went above ENTER_ABOVE before it first went
/// above what the primaries take together: the send time that ended the last one-second
/// window (of the client's own send times) at or below the threshold.
fn crossing(sends: &[f64]) -> Result<(f64, u64)> {
    // The rate at each send: the sends in the second that ends with it.
    let rates: Vec<u64> = (0..sends.len()).map(|i| (i + 1 - sends.partition_point(|&s| s <= sends[i] - 1.0)) as u64).collect();
    let primaries_together = PRIMARY_QUOTA * PRIMARIES.len() as u64;
    let full = rates.iter().position(|&r| r > primaries_together);
    let peak = rates.iter().copied().max().unwrap_or(0);
    let Some(full) = full else {
        bail!("the client offered at most {peak}/s, never above the primaries' {primaries_together}/s together: the machine is too loaded for this test");
    };
    let below = rates[..full].iter().rposition(|&r| r <= ENTER_ABOVE).context("the offered rate never was below the threshold")?;
    Ok((sends[below + 1], peak))
}

#[test]
fn a_ramp_of_new_connections_opens_the_overflow_pool_within_quotas_and_it_drains_and_closes() -> Result<()> {
    let topo = TwoArm::new(4)?;
    let servers = CountingServer::start_all(topo.backends(), PORT)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start(topo.lb().ns(), &config(&topo), &arms)?;
    let client = topo.client();

    lb.wait_in_service("web", 2, WAIT)?;
    lb.wait_for_json(&["shunt", "status", "web"], "overflow backends healthy, pool closed", WAIT, |v| {
        v[0]["state"] == "closed" && v[0]["backends"].as_array().is_some_and(|b| b.len() == 2 && b.iter().all(|b| b["healthy"] == true))
    })?;
    let (keep, kept) = mpsc::channel();
    let mut first_labels = Vec::new();
    for _ in 0..LONG_LIVED_FROM_THE_START {
        let s = TcpSession::connect(client.ns(), vip(), 80, T)?;
        ensure!(!is_overflow(s.name()), "a closed pool took a connection ({})", s.name());
        first_labels.push(s.name().to_string());
        keep.send(s)?;
    }

    let (stop_load, stop_echo) = (AtomicBool::new(false), AtomicBool::new(false));
    let (followed, load) = std::thread::scope(|scope| {
        let load = scope.spawn(|| offer_load(client.ns(), &stop_load, keep));
        let echo = scope.spawn(|| keep_echoing(kept, &stop_echo));
        let followed = follow_the_pool(&mut lb, &stop_echo, echo);
        // Also on failure: the scope joins both threads.
        stop_echo.store(true, Ordering::Relaxed);
        stop_load.store(true, Ordering::Relaxed);
        (followed, load.join())
    });
    let load = load.map_err(|_| anyhow::anyhow!("the client thread panicked"))?;
    let dialled = &load.dialled;
    let (seen, echoed) = followed?;

    // No connection failed or broke, short or long-lived.
    let failed: Vec<&String> = dialled.iter().filter_map(|d| d.outcome.as_ref().err()).collect();
    ensure!(failed.is_empty(), "{} of {} connections failed, e.g. {:?}", failed.len(), dialled.len(), &failed[..failed.len().min(5)]);
    ensure!(echoed.broken.is_empty(), "long-lived connections broke: {:?}", echoed.broken);
    ensure!(
        load.kept_on_overflow == LONG_LIVED_ON_OVERFLOW,
        "only {} long-lived connections landed on the overflow pool at the peak",
        load.kept_on_overflow
    );
    let served: Vec<String> = first_labels.into_iter().chain(dialled.iter().filter_map(|d| d.outcome.clone().ok())).collect();

    // The pool opened within for_secs + 1 s (+ the allowance) of the client's crossing.
    let sends: Vec<f64> = dialled.iter().map(|d| d.at).collect();
    let (crossed, peak) = crossing(&sends)?;
    let took = seen.open - crossed;
    let bound = (ENTER_FOR_SECS + 1) as f64 + OPEN_ALLOWANCE_SECS;
    eprintln!(
        "client: {} connections, peak {peak}/s; crossed {ENTER_ABOVE}/s at +{:.2} s; pool seen open {took:.2} s later (bound {bound} s), \
         closing at +{:.2} s; {} echoes",
        dialled.len(),
        crossed - sends[0],
        seen.closing - sends[0],
        echoed.echoes
    );
    ensure!(took <= bound, "the pool was seen open {took:.2} s after the offered rate crossed {ENTER_ABOVE}/s (bound {bound} s)");

    // Each backend's own count: only the client's connections (health checks come from lb),
    // equal to what the client saw of it, never above its quota + burst in any second.
    let mut own_counts = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let mut at: Vec<f64> = server.accepted().iter().filter(|a| a.peer.ip() == client.addr(false)).map(|a| a.at).collect();
        at.sort_by(f64::total_cmp);
        let (most, limit) = (most_in_any_second(&at), quota_with_burst(quota_of(i)));
        let wall_most = per_wall_second(&at).values().copied().max().unwrap_or(0);
        eprintln!(
            "{}: {} connections; most in a wall-clock second {wall_most}, in any 1 s window {most}; quota {} + burst = {limit}",
            server.label(),
            at.len(),
            quota_of(i)
        );
        ensure!(most <= limit, "{} took {most} new connections within one second: above its quota {} + burst", server.label(), quota_of(i));
        // Offered about 60/s each at the peak, the primaries use their quota: the pool takes
        // only what they cannot (a pace that refused flows arriving a little early would leave
        // them near 25/s and spill the rest).
        if !is_overflow(server.label()) {
            ensure!(most * 10 >= quota_of(i) * 8, "{} took at most {most} new connections in a second, under 80% of its quota {}", server.label(), quota_of(i));
        }
        let client_saw = served.iter().filter(|l| l.as_str() == server.label()).count();
        ensure!(at.len() == client_saw, "{} counted {} connections from the client, the client {client_saw}", server.label(), at.len());
        if is_overflow(server.label()) {
            let late = at.iter().filter(|&&t| t > seen.closing).count();
            ensure!(late == 0, "{} accepted {late} connections after the pool was seen closing", server.label());
        }
        own_counts.push(at.len() as u64);
    }

    // The contribution report equals the overflow backends' own counts.
    lb.wait_for_json(&["shunt", "report"], "the report to equal the overflow backends' counts", WAIT, |r| {
        OVERFLOW.iter().all(|&i| {
            let addr = format!("{}:{PORT}", topo.backend(i).v4());
            r["backends"].as_array().is_some_and(|rows| {
                rows.iter().any(|row| row["service"] == "web" && row["backend"] == addr && row["new_sessions"] == own_counts[i])
            })
        })
    })?;
    let report: Value = lb.cli_json(&["shunt", "report"])?;
    eprintln!("report: {report}");
    // lb's own per-backend counts agree with the backends' (primaries included).
    let status = lb.status()?;
    eprintln!("lb events: {}", status["events"]);
    for (i, own) in own_counts.iter().enumerate() {
        let addr = format!("{}:{PORT}", topo.backend(i).v4());
        let b = status["services"][0]["backends"].as_array().and_then(|b| b.iter().find(|b| b["address"] == addr)).context("backend in status")?;
        ensure!(b["counters"]["new_sessions"] == *own, "lb counted {} new sessions for {addr}, the backend {own}", b["counters"]["new_sessions"]);
    }
    lb.stop()?;
    drop(servers);
    Ok(())
}
