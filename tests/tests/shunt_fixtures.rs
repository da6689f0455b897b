//! Shunting in the data plane (issue 13): quotas checked per new flow, spills to the overflow
//! pool's own table, the next overflow choice, every choice full, established flows staying.
//! Real program, BPF_PROG_TEST_RUN in a throw-away namespace, as the fixtures do.
//!
//! The new-session quotas here are 1 a second, so a backend that has just taken a new flow is
//! at its quota for the next second: the flows of one step run back to back (microseconds).
//!
//! Run as root: `cargo test -p lb-tests --test shunt_fixtures -- --nocapture`.

#[allow(dead_code)]
#[path = "fixtures/frames.rs"]
mod frames;

use std::net::SocketAddr;

use anyhow::{Context, Result, ensure};
use lb::balancer::{Balancer, InitialHealth, build_pool_table};
use lb::config::Config;
use lb::dataplane::Dataplane;
use lb_common::{Event, HASH_FIVE_TUPLE, flow_hash, table_slot};

use frames::Frame;
use lb_tests::fib_bed::FibBed;
use lb_tests::xdp_test_run::{XDP_TX, test_run};

const PRIMARY: &str = "10.200.10.11:80";
/// Flows a backend with a quota of 1 a second takes back to back: its quota and its burst
/// (lb_common::quota: a burst of at least one).
const BACK_TO_BACK: usize = 1 + lb_common::quota::quota_burst(1) as usize;
const OVERFLOW: [&str; 2] = ["10.200.10.12:80", "10.200.10.13:80"];

fn config(primary_quota: &str) -> String {
    format!(
        r#"
[[service]]
name = "web"
vip = "10.200.99.1"
port = 80
protocol = "tcp"
table_size = 251

[service.shunt]

[[service.backend]]
address = "10.200.10.11"
{primary_quota}

[[service.backend]]
address = "10.200.10.12"
pool = "overflow"
max_new_sessions_per_sec = 1

[[service.backend]]
address = "10.200.10.13"
pool = "overflow"
max_new_sessions_per_sec = 1
"#
    )
}

struct Bed {
    bed: FibBed,
    lb: Balancer,
    next_port: u16,
}

impl Bed {
    fn new(tag: &str, primary_quota: &str) -> Result<(Bed, lb_tests::netns::NetnsGuard)> {
        let bed = FibBed::new(tag)?;
        let inside = bed.ns.enter()?;
        let lb = Balancer::new(Dataplane::load()?, &Config::parse(&config(primary_quota))?, InitialHealth::Up)?;
        Ok((Bed { bed, lb, next_port: 30000 }, inside))
    }

    fn event(&self, which: Event) -> u64 {
        self.lb.dataplane().events().into_iter().find(|(e, _)| *e == which).map_or(0, |(_, n)| n)
    }

    fn backend_addr(&self, id: u32) -> Result<SocketAddr> {
        let svc = self.lb.service("web")?;
        svc.backends.iter().find(|b| b.id == id).map(|b| b.addr).context("no such backend id")
    }

    /// Sends `frame`; returns the backend its session record names, and which events moved.
    fn send(&mut self, frame: &Frame) -> Result<(SocketAddr, Vec<Event>)> {
        let before: Vec<(Event, u64)> = self.lb.dataplane().events();
        let r = test_run(&mut self.lb, self.bed.a0.ifindex, &frame.bytes())?;
        ensure!(r.verdict == XDP_TX, "{} -> {}: verdict {}", frame.src, frame.dst, r.verdict);
        let after = self.lb.dataplane().events();
        let moved = before.iter().zip(&after).filter(|((_, a), (_, b))| a != b).map(|((e, _), _)| *e).collect();
        let id = self.lb.dataplane().session(&frame.flow_key()).context("no session recorded")?.backend_id;
        Ok((self.backend_addr(id.into())?, moved))
    }

    /// A SYN of a flow not seen before.
    fn new_flow(&mut self) -> Frame {
        self.next_port += 1;
        Frame::syn(&format!("10.200.10.2:{}", self.next_port), "10.200.99.1:80")
    }

    /// Sends a new flow's SYN.
    fn send_new(&mut self) -> Result<(SocketAddr, Vec<Event>)> {
        let f = self.new_flow();
        self.send(&f)
    }

    fn open(&mut self, which: &[&str]) -> Result<()> {
        let addrs: Vec<SocketAddr> = which.iter().map(|a| a.parse().unwrap()).collect();
        self.lb.set_pool_open("web", &addrs)?;
        Ok(())
    }

    /// The overflow backend `lb explain` predicts for `frame`'s flow if it spills, checked
    /// against the pool's table as built (the kernel's choice is then checked against it).
    fn pool_choice(&self, frame: &Frame) -> Result<SocketAddr> {
        let ex = self.lb.explain_packet(&frame.flow_key(), true)?.context("explain: no service")?;
        let predicted = ex.overflow.context("explain says nothing of the pool")?.pool_choice.context("explain: pool closed")?.addr;
        let table = build_pool_table(self.lb.service("web")?);
        let slot = table_slot(flow_hash(&frame.flow_key(), HASH_FIVE_TUPLE), table.len() as u32);
        let built = self.backend_addr(table[slot as usize])?;
        ensure!(predicted == built, "explain predicts {predicted}, the pool table names {built}");
        Ok(predicted)
    }
}

fn addr(a: &str) -> SocketAddr {
    a.parse().unwrap()
}

#[test]
fn a_flow_spills_only_while_the_pool_is_open_and_its_choice_is_at_quota() -> Result<()> {
    let (mut t, _inside) = Bed::new("shunt-spill", "max_new_sessions_per_sec = 1")?;

    // Closed pool: the primary takes its quota and burst back to back (BACK_TO_BACK flows),
    // then a flow over it stays on the primary (never dropped, never to a closed pool),
    // counted as every choice full.
    for n in 0..BACK_TO_BACK {
        let (to, ev) = t.send_new()?;
        ensure!(to == addr(PRIMARY) && ev.is_empty(), "flow {n} within the quota: {to}, events {ev:?}");
    }
    let (to, ev) = t.send_new()?;
    ensure!(to == addr(PRIMARY) && ev == [Event::EveryChoiceFull], "over quota, pool closed: {to}, {ev:?}");
    ensure!(t.event(Event::SpilledToOverflow) == 0, "a closed pool took a flow");

    // Open pool. Opening may take long enough for the primary's pace to let a flow or two in
    // again; the first flow over it spills.
    t.open(&OVERFLOW)?;
    let mut spilled = Vec::new();
    for _ in 0..=BACK_TO_BACK {
        let (to, ev) = t.send_new()?;
        if ev == [Event::SpilledToOverflow] {
            spilled.push(to);
            break;
        }
        ensure!(to == addr(PRIMARY) && ev.is_empty(), "before the primary's quota is used: {to}, {ev:?}");
    }
    ensure!(spilled.len() == 1, "no flow spilled over the primary's quota");

    // Back to back: the next flows spill too (to the pool table's choice while it has room,
    // then to the other overflow backend) until each overflow backend has taken its quota and
    // burst. Then every choice is full and the flow stays on its primary choice.
    for _ in 1..2 * BACK_TO_BACK {
        let (to, ev) = t.send_new()?;
        ensure!(ev == [Event::SpilledToOverflow], "spill {}: {to}, {ev:?}", spilled.len() + 1);
        spilled.push(to);
    }
    for o in OVERFLOW {
        let took = spilled.iter().filter(|s| **s == addr(o)).count();
        ensure!(took == BACK_TO_BACK, "{o} took {took} of the spilled flows {spilled:?}");
    }
    let (to, ev) = t.send_new()?;
    ensure!(to == addr(PRIMARY) && ev == [Event::EveryChoiceFull], "every choice full: {to}, {ev:?}");
    Ok(())
}

#[test]
fn the_pool_table_chooses_then_the_next_overflow_backend_then_the_primary() -> Result<()> {
    // The primary is marked full by the control plane (max_sessions, say): deterministic.
    let (mut t, _inside) = Bed::new("shunt-next", "max_sessions = 100")?;
    t.lb.set_full("web", addr(PRIMARY), true)?;
    let probe = t.new_flow();
    let closed = t.lb.explain_packet(&probe.flow_key(), true)?.and_then(|e| e.overflow).context("explain: no pool")?;
    ensure!(closed.choice_full && !closed.open && closed.pool_choice.is_none(), "explain of a closed pool: {closed:?}");
    t.open(&OVERFLOW)?;

    // A spilled flow goes where the pool's table says (spread and sticky like the primary's).
    let a = t.new_flow();
    let choice = t.pool_choice(&a)?;
    let (to, ev) = t.send(&a)?;
    ensure!(to == choice && ev == [Event::SpilledToOverflow], "pool table chose {choice}, flow went to {to}, {ev:?}");

    // That backend has room for its burst, then is at its quota (1/s): a flow it is the
    // table's choice for goes on to the other overflow backend.
    let other = OVERFLOW.iter().map(|o| addr(o)).find(|o| *o != choice).unwrap();
    let next_flow_of_choice = |t: &mut Bed| -> Result<Frame> {
        loop {
            let f = t.new_flow();
            if t.pool_choice(&f)? == choice {
                return Ok(f);
            }
        }
    };
    for _ in 1..BACK_TO_BACK {
        let b = next_flow_of_choice(&mut t)?;
        let (to, ev) = t.send(&b)?;
        ensure!(to == choice && ev == [Event::SpilledToOverflow], "within its burst: {to}, {ev:?}");
    }
    let b = next_flow_of_choice(&mut t)?;
    let (to, ev) = t.send(&b)?;
    ensure!(to == other && ev == [Event::SpilledToOverflow], "next overflow choice: {to}, {ev:?}");
    for _ in 1..BACK_TO_BACK {
        let (to, ev) = t.send_new()?;
        ensure!(to == other && ev == [Event::SpilledToOverflow], "the other's burst: {to}, {ev:?}");
    }

    // Both at quota: the primary's choice, full or not.
    let (to, ev) = t.send_new()?;
    ensure!(to == addr(PRIMARY) && ev == [Event::EveryChoiceFull], "all full: {to}, {ev:?}");

    // Established flows never move: a's next packet stays on its overflow backend, and a flow
    // of the full primary stays there.
    let (to, ev) = t.send(&a.clone().later(b"data"))?;
    ensure!(to == choice && ev.is_empty(), "established spilled flow moved to {to}, {ev:?}");
    t.lb.set_full("web", addr(PRIMARY), false)?;
    let p = t.new_flow();
    let (to, _) = t.send(&p)?;
    ensure!(to == addr(PRIMARY), "unmarked primary: {to}");
    t.lb.set_full("web", addr(PRIMARY), true)?;
    let (to, ev) = t.send(&p.clone().later(b"data"))?;
    ensure!(to == addr(PRIMARY) && ev.is_empty(), "established flow of a full backend moved to {to}, {ev:?}");

    // Closed again: no new flow spills; the spilled flow's sessions go on (a drain).
    t.open(&[])?;
    let (to, ev) = t.send_new()?;
    ensure!(to == addr(PRIMARY) && ev == [Event::EveryChoiceFull], "closed pool: {to}, {ev:?}");
    let (to, _) = t.send(&a.clone().later(b"more"))?;
    ensure!(to == choice, "a closed pool's session moved to {to}");
    Ok(())
}

#[test]
fn opening_anything_but_the_services_overflow_backends_is_refused() -> Result<()> {
    let (mut t, _inside) = Bed::new("shunt-refuse", "")?;
    let e = t.lb.set_pool_open("web", &[addr(PRIMARY)]).expect_err("a primary backend is no pool member");
    ensure!(e.to_string().contains("not an overflow backend"), "{e}");
    ensure!(build_pool_table(t.lb.service("web")?).is_empty(), "a refused open opened something");
    Ok(())
}
