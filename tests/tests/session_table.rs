//! The session table the XDP program keeps itself (lb_common::session_table): which record a new
//! flow displaces when its bucket is full. Real program, BPF_PROG_TEST_RUN in a throw-away
//! namespace, as the fixtures do.
//!
//! Run as root: `cargo test -p lb-tests --test session_table -- --nocapture`.

#[allow(dead_code)]
#[path = "fixtures/frames.rs"]
mod frames;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lb::balancer::{Balancer, InitialHealth};
use lb::config::Config;
use lb::dataplane::{Dataplane, LoadOptions};
use lb_common::{DEFAULT_SESSION_BUCKETS, Event, SESSION_WAYS, addr_v4, port_raw, session_bucket, session_buckets, session_hash};

use frames::Frame;
use lb_tests::fib_bed::FibBed;
use lb_tests::xdp_test_run::{XDP_TX, test_run};

const CONFIG: &str = r#"
[[service]]
name = "web"
vip = "10.200.99.1"
port = 80
protocol = "tcp"
table_size = 251
backend = [{ address = "10.200.10.11" }, { address = "10.200.10.12" }]
"#;

/// `n` new flows (SYNs) from distinct clients of 10.200.0.0/16 that all land in one bucket of a
/// table of `buckets` (of 2^18: about one client port in 2^18 shares it, so clients vary too).
fn flows_sharing_a_bucket(buckets: u32, n: usize) -> Vec<Frame> {
    let first = Frame::syn("10.200.10.2:20000", "10.200.99.1:80");
    let bucket = session_bucket(session_hash(&first.flow_key()), buckets);
    let mut key = first.flow_key();
    let mut flows = vec![first.clone()];
    'search: for host in 0..=u16::MAX {
        let client = Ipv4Addr::new(10, 200, (host >> 8) as u8, host as u8);
        key.src_addr = addr_v4(client.octets());
        for port in 1024..=u16::MAX {
            key.src_port = port_raw(port);
            if session_bucket(session_hash(&key), buckets) == bucket && (client, port) != (Ipv4Addr::new(10, 200, 10, 2), 20000) {
                flows.push(first.clone().with_src(SocketAddr::new(client.into(), port)));
                if flows.len() == n {
                    break 'search;
                }
            }
        }
    }
    assert_eq!(flows.len(), n, "not enough clients share a bucket");
    flows
}

fn run(lb: &mut Balancer, bed: &FibBed, frame: &Frame) -> Result<()> {
    let r = test_run(lb, bed.a0.ifindex, &frame.bytes())?;
    ensure!(r.verdict == XDP_TX, "{} -> {}: verdict {}", frame.src, frame.dst, r.verdict);
    Ok(())
}

fn recorded(lb: &Balancer, frames: &[Frame]) -> Vec<bool> {
    frames.iter().map(|f| lb.dataplane().session(&f.flow_key()).is_some()).collect()
}

fn event(lb: &Balancer, which: Event) -> u64 {
    lb.dataplane().events().into_iter().find(|(e, _)| *e == which).map_or(0, |(_, n)| n)
}

#[test]
fn a_full_bucket_gives_up_unconfirmed_then_closing_records_and_no_live_connection() -> Result<()> {
    let bed = FibBed::new("session-table")?;
    let _inside = bed.ns.enter()?;
    let mut lb = Balancer::new(Dataplane::load()?, &Config::parse(CONFIG)?, InitialHealth::Up)?;
    let flows = flows_sharing_a_bucket(DEFAULT_SESSION_BUCKETS, SESSION_WAYS + 2);
    let (fill, newcomers) = flows.split_at(SESSION_WAYS);
    let confirmed = |lb: &Balancer, f: &Frame| lb.dataplane().session(&f.flow_key()).is_some_and(|s| !s.is_unconfirmed());

    // A bucket holds SESSION_WAYS connections, each with the backend explain predicts; a new
    // record is unconfirmed until the flow's next packet.
    for f in fill {
        run(&mut lb, &bed, f)?;
        ensure!(lb.dataplane().session(&f.flow_key()).is_some_and(|s| s.is_unconfirmed()), "{}: a SYN's record", f.src);
        run(&mut lb, &bed, &f.clone().later(b"hello"))?;
        ensure!(confirmed(&lb, f), "{}: the client's second packet left its record unconfirmed", f.src);
    }
    for f in fill {
        let want = lb.explain_packet(&f.flow_key(), true)?.and_then(|e| e.backend).map(|b| b.id);
        let got = lb.dataplane().session(&f.flow_key()).map(|s| u32::from(s.backend_id));
        ensure!(got == want, "{}: recorded backend {got:?}, explain says {want:?}", f.src);
    }

    // A new flow (spoofed, for all the table can tell), by its SYN or by any first packet, into
    // a bucket of live connections is forwarded but displaces none of them.
    let unrecorded = event(&lb, Event::NewFlowNotRecorded);
    run(&mut lb, &bed, &newcomers[0])?;
    run(&mut lb, &bed, &newcomers[1].clone().later(b"an ACK of no connection"))?;
    ensure!(recorded(&lb, &flows) == [true, true, true, true, false, false], "a new flow displaced a live one: {:?}", recorded(&lb, &flows));
    ensure!(event(&lb, Event::NewFlowNotRecorded) == unrecorded + 2, "new_flow_not_recorded did not count them");

    // The client closes flow 1: a new flow takes its slot; the next takes that unconfirmed one.
    run(&mut lb, &bed, &fill[1].clone().fin())?;
    run(&mut lb, &bed, &newcomers[0])?;
    ensure!(recorded(&lb, &flows) == [true, false, true, true, true, false], "with flow 1 closing: {:?}", recorded(&lb, &flows));
    run(&mut lb, &bed, &newcomers[1].clone().later(b"data"))?;
    ensure!(recorded(&lb, &flows) == [true, false, true, true, false, true], "a new flow after an unconfirmed one: {:?}", recorded(&lb, &flows));

    // Confirmed by its next packet, newcomer 1 is a live connection like the rest: the bucket
    // takes no new flow, and flow 1, displaced, is not recorded again while they live.
    run(&mut lb, &bed, &newcomers[1].clone().later(b"more"))?;
    ensure!(confirmed(&lb, &newcomers[1]), "newcomer 1's second packet left it unconfirmed");
    run(&mut lb, &bed, &newcomers[0])?;
    run(&mut lb, &bed, &fill[1].clone().later(b"late"))?;
    ensure!(recorded(&lb, &flows) == [true, false, true, true, false, true], "a new flow displaced a live one: {:?}", recorded(&lb, &flows));

    // The program's session clock (kernel ticks times the tick length the loader passes in)
    // keeps the wall clock's pace: 2.3 s is 2.14 ticks of 1.07 s (a wrong tick length, HZ=250
    // taken for HZ=1000 say, would be off by a factor of 4).
    let seen_before = lb.dataplane().session_seen(&fill[0].flow_key()).context("flow 0's record")?;
    std::thread::sleep(Duration::from_millis(2300));
    run(&mut lb, &bed, &fill[0].clone().later(b"data"))?;
    let seen_after = lb.dataplane().session_seen(&fill[0].flow_key()).context("flow 0's record")?;
    ensure!(
        (2..=3).contains(&seen_after.wrapping_sub(seen_before)),
        "2.3 s moved the session clock from {seen_before} to {seen_after}, expected 2 or 3 ticks"
    );
    Ok(())
}

#[test]
fn the_configured_capacity_sizes_the_table_the_program_uses() -> Result<()> {
    // 1024 records: 256 buckets instead of 2^18.
    let config = Config::parse(&format!("[sessions]\ncapacity = 1024\n{CONFIG}"))?;
    let buckets = session_buckets(config.sessions.capacity);
    let bed = FibBed::new("session-capacity")?;
    let _inside = bed.ns.enter()?;
    let dp = Dataplane::load_with(LoadOptions { pins: None, session_capacity: config.sessions.capacity })?;
    ensure!(dp.session_capacity() == 1024, "loaded with capacity {}", dp.session_capacity());
    let mut lb = Balancer::new(dp, &config, InitialHealth::Up)?;

    // Flows that share a bucket of the small table, and whose buckets in the default table
    // (all but a few past the small table's end) differ: only a program that masks hashes with
    // the loaded size records any of them, and in one bucket, so the last displaces one.
    let flows = flows_sharing_a_bucket(buckets, SESSION_WAYS + 1);
    let default_buckets: Vec<u32> = flows.iter().map(|f| session_bucket(session_hash(&f.flow_key()), DEFAULT_SESSION_BUCKETS)).collect();
    ensure!(
        default_buckets.iter().filter(|&&b| b >= buckets).count() >= SESSION_WAYS,
        "the flows' default buckets {default_buckets:?} do not test the mask"
    );
    let (fill, newcomer) = flows.split_at(SESSION_WAYS);
    for f in fill {
        run(&mut lb, &bed, f)?;
    }
    ensure!(recorded(&lb, fill).iter().all(|&r| r), "flows of a bucket with room went unrecorded: {:?}", recorded(&lb, fill));
    run(&mut lb, &bed, &newcomer[0])?;
    let kept = recorded(&lb, &flows).iter().filter(|&&r| r).count();
    ensure!(
        kept == SESSION_WAYS && lb.dataplane().session(&newcomer[0].flow_key()).is_some(),
        "{} flows in one bucket of {SESSION_WAYS} slots: {:?} recorded",
        flows.len(),
        recorded(&lb, &flows)
    );

    // The size is fixed while the program runs: a reload asking for another is refused whole.
    let bigger = Config::parse(&format!("[sessions]\ncapacity = 2048\n{CONFIG}"))?;
    let e = lb.reconcile(&bigger).expect_err("a reload resizing SESSIONS").to_string();
    ensure!(e.contains("capacity 2048") && e.contains("restart lb"), "refusal: {e}");
    ensure!(lb.running_config() == config, "a refused reload changed the running config");
    ensure!(lb.dataplane().session(&newcomer[0].flow_key()).is_some(), "a refused reload lost a session");
    Ok(())
}
