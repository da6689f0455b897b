//! `cargo xtask bench`: per-packet cost of the XDP program with BPF_PROG_TEST_RUN.
//!
//! The kernel repeats a test run on ONE buffer without resetting it, so every case runs through
//! the harness program (lb-ebpf/src/bench.rs), which restores the pristine frame (and, for new
//! flows, stamps a fresh source address) before tail-calling lb_xdp. The harness's own cost is
//! measured by tail-calling an empty program instead, and subtracted. Each case then proves it
//! took the intended path from the program's own counters: a wrong path fails the bench.
//!
//! Two figures per path: "net" (harness subtracted, the floor of the method left in, the form of
//! the Katran reference figures) and "program" (net minus the floor: what lb_xdp itself costs).
//! The floor is the test-run loop's, not the program's (../shared/toolchain/README.md), and it
//! moves with the machine: 21 ns when the references were taken, 27-35 ns on later runs. So the
//! target, half of Katran's cost, is judged on program cost against Katran's figure less the
//! floor measured with it; the net comparison is printed beside it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail, ensure};
use aya::{
    maps::{Array, ProgramArray},
    programs::Xdp,
};
use etherparse::PacketBuilder;
use lb::{
    balancer::{Balancer, InitialHealth},
    config::Config,
    dataplane::{Dataplane, LoadOptions},
};
use lb_common::{BENCH_FRAME_MAX, BenchFrame, DEFAULT_SESSION_CAPACITY, MAX_SESSION_CAPACITY, MIN_SESSION_CAPACITY, Outcome};
use lb_tests::{
    fib_bed::FibBed,
    lb_config::{self, ServiceConfig},
    xdp_test_run::run_xdp,
};

/// A DSR service with an overflow pool: service id 3 (its pool table takes id 4). Its primary
/// backend is marked full (`Bench::new`), so every new flow spills; the overflow backends'
/// new-session quota is far above any rate, so the pace check runs and always admits.
const SPILL_SERVICE: &str = r#"
[[service]]
name = "spill"
vip = "10.200.99.4"
port = 80
protocol = "tcp"
table_size = 65537

[service.shunt]

[[service.backend]]
address = "10.200.10.11"
max_sessions = 1000000

[[service.backend]]
address = "10.200.10.12"
pool = "overflow"
max_new_sessions_per_sec = 1000000000

[[service.backend]]
address = "10.200.10.13"
pool = "overflow"
max_new_sessions_per_sec = 1000000000
"#;

/// The bench's services: service ids 0 (dsr), 1 (nat), 2 (udp) follow this order; then
/// SPILL_SERVICE.
fn services() -> Result<Vec<ServiceConfig>> {
    let service = |name: &str, vip: &str, protocol: &'static str, forwarding: &'static str, port: u16, backend_port: u16, backends: &[&str]| -> Result<ServiceConfig> {
        Ok(ServiceConfig {
            name: name.into(),
            vip: vip.parse()?,
            port,
            protocol,
            forwarding,
            backends: backends.iter().map(|b| b.parse()).collect::<Result<_, _>>()?,
            backend_port,
        })
    };
    Ok(vec![
        service("dsr", "10.200.99.1", "tcp", "dsr", 80, 80, &["10.200.10.11", "10.200.10.12", "10.200.10.13"])?,
        service("nat", "10.200.99.2", "tcp", "nat", 80, 8080, &["10.200.10.11", "10.200.10.12"])?,
        service("udp", "10.200.99.3", "udp", "dsr", 53, 53, &["10.200.10.21"])?,
    ])
}

/// Rounds per case; the median is reported, so disturbed rounds (other tenants of the host) do
/// not move it.
const ROUNDS: usize = 9;
/// Census walks to catch a health event in (each waits for the next walk, seconds apart).
const CENSUS_ROUNDS: usize = 5;
/// Offset of the IPv4 source address in an untagged frame: stamped to make every run a new flow.
const IPV4_SRC_OFFSET: u32 = 14 + 12;
/// Katran's data plane measured on this machine the same way (net ns/packet).
const KATRAN_NON_SERVICE: f64 = 69.0;
const KATRAN_NEW_TCP: f64 = 278.0;
const KATRAN_ESTABLISHED: f64 = 130.0;
const KATRAN_UDP: f64 = 155.0;
/// Katran's cost for a cold new flow (a new 5-tuple every packet) with 1M flows in its LRU,
/// measured the same way on machines like ours (net ns/packet; issue 14).
const KATRAN_COLD_NEW_FLOW_1M: f64 = 493.0;
/// The floor (empty XDP program) measured with the Katran figures (../shared/toolchain/README.md:
/// "XDP_DROP 21", net of the harness, same method and machines).
const KATRAN_FLOOR: f64 = 21.0;

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    new_flow_every_run: bool,
    expect: Outcome,
    /// New sessions the service must count per run (1: every run a new flow, 0: session hits).
    new_sessions_per_run: Option<(u32, u64)>,
    /// Katran's figure for the same path (NaN: Katran has no such path).
    katran: f64,
    /// A packet run once before the case: the flow the case's packets are about, so the
    /// case finds its record even when run alone.
    flow_first: Option<Vec<u8>>,
}

fn tcp_frame(dst: Ipv4Addr, dport: u16, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0xa, 2], [2, 0, 0, 0, 0xa, 1])
        .ipv4([10, 200, 10, 2], dst.octets(), 64)
        .tcp(40000, dport, 1, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, &[0u8; 16]).expect("building a frame");
    out
}

/// A NAT backend's reply to the bench's client (what the un-NAT path rewrites).
fn reply_frame(backend: SocketAddr) -> Result<Vec<u8>> {
    let IpAddr::V4(src) = backend.ip() else { bail!("the bench's backends are IPv4") };
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0xa, 11], [2, 0, 0, 0, 0xa, 1])
        .ipv4(src.octets(), [10, 200, 10, 2], 64)
        .tcp(backend.port(), 40000, 1, 64240)
        .ack(1)
        .write(&mut out, &[0u8; 16])?;
    Ok(out)
}

/// An ICMP "fragmentation needed" from a router on the client's side to `vip`, quoting a whole
/// packet of the bench client's flow in the reply direction (vip:port -> client): what a
/// backend's too-big reply draws.
fn frag_needed_frame(vip: Ipv4Addr, port: u16) -> Result<Vec<u8>> {
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(vip.octets(), [10, 200, 10, 2], 64).tcp(port, 40000, 1, 64240).ack(1).write(&mut quoted, &[0u8; 16])?;
    let mut out = Vec::new();
    let frag_needed = etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 };
    PacketBuilder::ethernet2([2, 0, 0, 0, 0xa, 2], [2, 0, 0, 0, 0xa, 1])
        .ipv4([10, 200, 10, 254], vip.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(frag_needed))
        .write(&mut out, &quoted)?;
    Ok(out)
}

/// NAT, the other way: a "fragmentation needed" from a router on the backends' side to the
/// bench client, quoting the client's packet as it was forwarded to `backend`.
fn frag_needed_to_client_frame(backend: SocketAddr) -> Result<Vec<u8>> {
    let IpAddr::V4(to) = backend.ip() else { bail!("the bench's backends are IPv4") };
    let mut quoted = Vec::new();
    PacketBuilder::ipv4([10, 200, 10, 2], to.octets(), 64).tcp(40000, backend.port(), 1, 64240).ack(1).write(&mut quoted, &[0u8; 16])?;
    let mut out = Vec::new();
    let frag_needed = etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 };
    PacketBuilder::ethernet2([2, 0, 0, 0, 0xa, 11], [2, 0, 0, 0, 0xa, 1])
        .ipv4([10, 200, 10, 253], [10, 200, 10, 2], 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(frag_needed))
        .write(&mut out, &quoted)?;
    Ok(out)
}

/// An ICMP echo request to a VIP: passed to the host.
fn echo_frame(dst: Ipv4Addr) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0xa, 2], [2, 0, 0, 0, 0xa, 1])
        .ipv4([10, 200, 10, 2], dst.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, &[0u8; 56])?;
    Ok(out)
}

fn udp_frame(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0xa, 2], [2, 0, 0, 0, 0xa, 1])
        .ipv4([10, 200, 10, 2], dst.octets(), 64)
        .udp(40000, dport)
        .write(&mut out, &[0u8; 32])
        .expect("building a frame");
    out
}

/// One round's figures, ns per run.
struct Round {
    floor: f64,
    program: f64,
}

struct Bench {
    balancer: Balancer,
    ingress: u32,
}

impl Bench {
    /// The bench's services on a freshly loaded program with a session table of `capacity`,
    /// the harness programs loaded beside it, redirects to `ingress` allowed.
    fn new(ingress: u32, capacity: u32) -> Result<Self> {
        let mut dp = Dataplane::load_with(LoadOptions { pins: None, session_capacity: capacity })?;
        for name in ["lb_bench_harness", "lb_bench_null"] {
            let p: &mut Xdp = dp.ebpf_mut().program_mut(name).context(name)?.try_into()?;
            p.load()?;
        }
        dp.allow_egress(ingress)?;
        let config = Config::parse(&format!(
            "[sessions]\ncapacity = {capacity}\n{}{SPILL_SERVICE}",
            lb_config::render(&services()?)
        ))?;
        let mut balancer = Balancer::new(dp, &config, InitialHealth::Up)?;
        balancer.set_full("spill", "10.200.10.11:80".parse()?, true)?;
        balancer.set_pool_open("spill", &["10.200.10.12:80".parse()?, "10.200.10.13:80".parse()?])?;
        Ok(Bench { balancer, ingress })
    }

    /// Runs `case` ROUNDS times; returns the median program and net ns and the program range.
    fn case(&mut self, case: &Case, runs: u32, stamp_base: u32) -> Result<(f64, f64, String)> {
        if let Some(frame) = &case.flow_first {
            let mut out = vec![0u8; 512];
            let ingress = self.ingress;
            let p: &mut Xdp = self.dp().ebpf_mut().program_mut("lb_xdp").context("program")?.try_into()?;
            run_xdp(p, ingress, frame, &mut out, 1)?;
        }
        let mut rounds = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            // Every round stamps source addresses no earlier round used: new flows stay new.
            let first_stamp = stamp_base + (round * runs as usize) as u32;
            rounds.push(self.round(case, runs, first_stamp)?);
        }
        let mut programs: Vec<f64> = rounds.iter().map(|r| r.program).collect();
        let program = median(&mut programs);
        let net = program + median(&mut rounds.iter().map(|r| r.floor).collect::<Vec<_>>());
        Ok((program, net, format!("{:.0}-{:.0}", programs[0], programs[ROUNDS - 1])))
    }

    fn dp(&mut self) -> &mut Dataplane {
        self.balancer.dataplane_mut()
    }

    fn set_frame(&mut self, frame: &[u8], vary: bool, base: u32) -> Result<()> {
        self.set_frame_repeated(frame, vary, base, 0)
    }

    /// `set_frame`, each flow stamped on 2^`runs_per_flow_log2` consecutive runs from stamp
    /// `base`.
    fn set_frame_repeated(&mut self, frame: &[u8], vary: bool, base: u32, runs_per_flow_log2: u32) -> Result<()> {
        ensure!(frame.len() <= BENCH_FRAME_MAX, "frame too long for the harness");
        let mut bytes = [0u8; BENCH_FRAME_MAX];
        bytes[..frame.len()].copy_from_slice(frame);
        let value = BenchFrame {
            len: frame.len() as u32,
            vary_offset: if vary { IPV4_SRC_OFFSET } else { 0 },
            iteration: base << runs_per_flow_log2,
            runs_per_flow_log2,
            bytes,
        };
        let mut map: Array<_, BenchFrame> =
            Array::try_from(self.dp().ebpf_mut().map_mut("BENCH_FRAME").context("BENCH_FRAME")?)?;
        map.set(0, value, 0)?;
        Ok(())
    }

    fn set_target(&mut self, program: &str) -> Result<()> {
        let ebpf = self.dp().ebpf_mut();
        let fd = {
            let p: &mut Xdp = ebpf.program_mut(program).context("program")?.try_into()?;
            p.fd()?.try_clone()?
        };
        let mut targets = ProgramArray::try_from(ebpf.map_mut("BENCH_TARGET").context("BENCH_TARGET")?)?;
        targets.set(0, &fd, 0)?;
        Ok(())
    }

    /// Average ns per run of the harness alone (tail-calling the empty program) on `frame`,
    /// stamping it as a new flow every run if `vary`: what the harness adds to a case.
    fn harness(&mut self, frame: &[u8], vary: bool, repeat: u32) -> Result<f64> {
        self.set_target("lb_bench_null")?;
        self.set_frame(frame, vary, 0)?;
        let (total, _) = self.time("lb_bench_harness", frame, repeat)?;
        self.set_target("lb_xdp")?;
        Ok(total)
    }

    /// One round of `case`: `runs` runs through the harness, checked against the program's own
    /// counters; returns the ns per run lb_xdp adds to the harness tail-calling an empty program
    /// (measured just before, on the same frame with the same stamping): the program's cost.
    /// The floor (the empty program alone) is measured in the round too.
    fn round(&mut self, case: &Case, runs: u32, first_stamp: u32) -> Result<Round> {
        let (floor, _) = self.time("lb_bench_null", &case.frame, runs)?;
        let harness = self.harness(&case.frame, case.new_flow_every_run, runs)?;
        self.set_frame(&case.frame, case.new_flow_every_run, first_stamp)?;
        // Established cases: one warm-up run records the session first.
        if !case.new_flow_every_run {
            self.time("lb_bench_harness", &case.frame, 1)?;
        }
        let before_outcome = self.dp().outcome(case.expect);
        let before_sessions = case.new_sessions_per_run.map(|(svc, _)| self.dp().service_counters(svc).new_sessions);
        let (gross, verdict) = self.time("lb_bench_harness", &case.frame, runs)?;
        let took = self.dp().outcome(case.expect) - before_outcome;
        if took != runs as u64 {
            bail!("{}: only {took} of {runs} runs ended in {} (last verdict {verdict}): the bench measured another path",
                case.name, case.expect.name());
        }
        if let (Some((svc, per_run)), Some(before)) = (case.new_sessions_per_run, before_sessions) {
            let got = self.dp().service_counters(svc).new_sessions - before;
            if got != per_run * runs as u64 {
                bail!("{}: {got} new sessions in {runs} runs, expected {}", case.name, per_run * runs as u64);
            }
        }
        Ok(Round { floor, program: gross - harness })
    }

    /// Average ns per run of `program` over `repeat` runs on `frame`.
    fn time(&mut self, program: &str, frame: &[u8], repeat: u32) -> Result<(f64, u32)> {
        let ingress = self.ingress;
        let mut out = vec![0u8; 512];
        let p: &mut Xdp = self.dp().ebpf_mut().program_mut(program).context("program")?.try_into()?;
        let r = run_xdp(p, ingress, frame, &mut out, repeat)?;
        Ok((r.duration.as_nanos() as f64, r.return_value))
    }
}

fn main() -> Result<()> {
    let repeat: u32 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    // Optional: only the cases whose name contains this (e.g. to profile one path with perf).
    let only = std::env::args().nth(2);
    let bed = FibBed::new("bench")?;
    let _inside = bed.ns.enter()?;
    let mut bench = Bench::new(bed.a0.ifindex, DEFAULT_SESSION_CAPACITY)?;

    let vip = |last| Ipv4Addr::new(10, 200, 99, last);
    // The reply case answers the NAT established case's flow from the backend it goes to (that
    // flow's packet is run first, so the case finds its record even when run alone).
    let nat_flow = lb::balancer::flow_key(
        SocketAddr::new([10, 200, 10, 2].into(), 40000),
        SocketAddr::new(vip(2).into(), 80),
        lb_common::PROTO_TCP,
    );
    let nat_backend = bench.balancer.explain(&nat_flow)?.and_then(|e| e.backend).context("the NAT flow's backend")?;
    let cases = vec![
        Case { name: "non-service packet (TCP to another address)", frame: tcp_frame(Ipv4Addr::new(10, 200, 10, 1), 22, false),
               new_flow_every_run: false, expect: Outcome::PassNoService, new_sessions_per_run: None, katran: KATRAN_NON_SERVICE, flow_first: None },
        Case { name: "DSR TCP SYN, new flow (hash + session insert)", frame: tcp_frame(vip(1), 80, true),
               new_flow_every_run: true, expect: Outcome::TxToBackend, new_sessions_per_run: Some((0, 1)), katran: KATRAN_NEW_TCP, flow_first: None },
        // What a test run of Katran measures: one SYN repeated, so its record is rewritten in
        // place (hot in cache) rather than a new one inserted.
        Case { name: "DSR TCP SYN, same flow every run", frame: tcp_frame(vip(1), 80, true),
               new_flow_every_run: false, expect: Outcome::TxToBackend, new_sessions_per_run: Some((0, 1)), katran: KATRAN_NEW_TCP, flow_first: None },
        Case { name: "DSR TCP established (session hit)", frame: tcp_frame(vip(1), 80, false),
               new_flow_every_run: false, expect: Outcome::TxToBackend, new_sessions_per_run: Some((0, 0)), katran: KATRAN_ESTABLISHED, flow_first: None },
        Case { name: "NAT TCP SYN, new flow (session insert + rewrite)", frame: tcp_frame(vip(2), 80, true),
               new_flow_every_run: true, expect: Outcome::TxToBackend, new_sessions_per_run: Some((1, 1)), katran: KATRAN_NEW_TCP, flow_first: None },
        Case { name: "NAT TCP SYN, same flow every run", frame: tcp_frame(vip(2), 80, true),
               new_flow_every_run: false, expect: Outcome::TxToBackend, new_sessions_per_run: Some((1, 1)), katran: KATRAN_NEW_TCP, flow_first: None },
        Case { name: "NAT TCP established (session hit + rewrite)", frame: tcp_frame(vip(2), 80, false),
               new_flow_every_run: false, expect: Outcome::TxToBackend, new_sessions_per_run: Some((1, 0)), katran: KATRAN_ESTABLISHED, flow_first: None },
        Case { name: "NAT reply (backend -> client, un-NAT)", frame: reply_frame(nat_backend.addr)?,
               new_flow_every_run: false, expect: Outcome::TxReply, new_sessions_per_run: None, katran: f64::NAN,
               flow_first: Some(tcp_frame(vip(2), 80, false)) },
        // Shunting: the primary choice is full, so the flow goes to the overflow pool's table
        // and its choice's new-session pace (one compare-and-swap). Beside the plain new flow.
        Case { name: "DSR TCP SYN, new flow that spills (primary full)", frame: tcp_frame(vip(4), 80, true),
               new_flow_every_run: true, expect: Outcome::TxToBackend, new_sessions_per_run: Some((3, 1)), katran: f64::NAN, flow_first: None },
        Case { name: "DSR TCP SYN, same flow every run, spills", frame: tcp_frame(vip(4), 80, true),
               new_flow_every_run: false, expect: Outcome::TxToBackend, new_sessions_per_run: Some((3, 1)), katran: f64::NAN, flow_first: None },
        Case { name: "DSR TCP established of a spilled flow", frame: tcp_frame(vip(4), 80, false),
               new_flow_every_run: false, expect: Outcome::TxToBackend, new_sessions_per_run: Some((3, 0)), katran: f64::NAN, flow_first: None },
        Case { name: "UDP DSR established", frame: udp_frame(vip(3), 53),
               new_flow_every_run: false, expect: Outcome::TxToBackend, new_sessions_per_run: Some((2, 0)), katran: KATRAN_UDP, flow_first: None },
        // Errors about the DSR and NAT established flows (their packets recorded them first).
        Case { name: "ICMP frag needed, DSR flow (record, MACs)", frame: frag_needed_frame(vip(1), 80)?,
               new_flow_every_run: false, expect: Outcome::TxIcmpToBackend, new_sessions_per_run: Some((0, 0)), katran: f64::NAN,
               flow_first: Some(tcp_frame(vip(1), 80, false)) },
        Case { name: "ICMP frag needed, NAT flow (record, rewrite)", frame: frag_needed_frame(vip(2), 80)?,
               new_flow_every_run: false, expect: Outcome::TxIcmpToBackend, new_sessions_per_run: Some((1, 0)), katran: f64::NAN,
               flow_first: Some(tcp_frame(vip(2), 80, false)) },
        Case { name: "ICMP frag needed to NAT client (record, rewrite)", frame: frag_needed_to_client_frame(nat_backend.addr)?,
               new_flow_every_run: false, expect: Outcome::TxIcmpToClient, new_sessions_per_run: None, katran: f64::NAN,
               flow_first: Some(tcp_frame(vip(2), 80, false)) },
        Case { name: "ICMP echo request to a VIP (passed)", frame: echo_frame(vip(1))?,
               new_flow_every_run: false, expect: Outcome::PassNotTcpUdp, new_sessions_per_run: None, katran: f64::NAN,
               flow_first: None },
    ];

    // The floor of the method, and what the harness adds on top of it.
    let probe = tcp_frame(vip(1), 80, false);
    let (floor, _) = bench.time("lb_bench_null", &probe, repeat)?;
    let harness = bench.harness(&probe, false, repeat)? - floor;

    println!("BPF_PROG_TEST_RUN, {ROUNDS} rounds of {repeat} runs per case (new-flow cases: {} runs); kernel {}",
        repeat / 5, std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim());
    println!("floor (empty XDP program): {floor:.1} ns now, {KATRAN_FLOOR:.0} ns with the Katran figures; \
              harness adds {harness:.1} ns, measured again and subtracted in every round");
    println!("program ns: what lb_xdp adds to the floor, median of the rounds (fastest-slowest); \
              net ns: program + this run's floor");
    println!("target: half of Katran's program cost (its net figure less {KATRAN_FLOOR:.0}); \
              'half net': the same test on net figures, floors included\n");
    println!("{:<48} {:>8} {:>9} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8}",
        "path", "program", "range", "net", "Katran", "(prog)", "target", "verdict", "half net");
    for (i, case) in cases.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !case.name.contains(o.as_str())) {
            continue;
        }
        let runs = if case.new_flow_every_run { repeat / 5 } else { repeat };
        let (program, net, range) = bench.case(case, runs, (i as u32 + 1) << 24)?;
        if case.katran.is_nan() {
            println!("{:<48} {program:>8.1} {range:>9} {net:>8.1} {:>7} {:>7} {:>7} {:>8} {:>8}", case.name, "-", "-", "-", "-", "-");
            continue;
        }
        let katran_program = case.katran - KATRAN_FLOOR;
        let target = katran_program / 2.0;
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        println!("{:<48} {program:>8.1} {range:>9} {net:>8.1} {:>7.0} {katran_program:>7.0} {target:>7.1} {:>8} {:>8}",
            case.name, case.katran, verdict(program <= target), verdict(net <= case.katran / 2.0));
    }
    if only.as_ref().is_none_or(|o| "session table size".contains(o.as_str())) {
        let new_flow = cases.iter().find(|c| c.new_flow_every_run).context("no new-flow case")?;
        new_flow_by_capacity(new_flow, repeat / 5, bed.a0.ifindex)?;
    }
    if only.as_ref().is_none_or(|o| SYN_FLOOD.contains(o.as_str())) {
        let new_flow = cases.iter().find(|c| c.new_flow_every_run).context("no new-flow case")?;
        syn_flood(new_flow, repeat / 5, bed.a0.ifindex)?;
    }
    if only.as_ref().is_none_or(|o| "census".contains(o.as_str())) {
        println!();
        lb_tests::census_bench::print(&lb_tests::census_bench::run(CENSUS_ROUNDS)?);
    }
    if only.as_ref().is_none_or(|o| "restart".contains(o.as_str())) {
        println!();
        lb_tests::restart_bench::print(&lb_tests::restart_bench::run()?);
    }
    if only.is_some() {
        return Ok(());
    }
    println!();
    lb_tests::table_bench::print(&lb_tests::table_bench::run());
    println!();
    table_write(bench.dp())?;
    grace_period(bench.dp())?;
    for backends in [10, 100, 1000] {
        live_weight_change(backends)?;
    }
    reload_of_many_services(32)?;
    Ok(())
}

/// What a new flow costs as the session table grows (`[sessions] capacity`): the bucket it is
/// recorded in is a cache miss, and past the TLB's reach a page walk too.
fn new_flow_by_capacity(case: &Case, runs: u32, ingress: u32) -> Result<()> {
    println!("\n{} by session table size", case.name);
    println!("{:>12} {:>9} {:>8} {:>9} {:>8}", "capacity", "memory", "program", "range", "net");
    for capacity in [MIN_SESSION_CAPACITY << 4, DEFAULT_SESSION_CAPACITY, MAX_SESSION_CAPACITY] {
        let mut bench = Bench::new(ingress, capacity)?;
        let (program, net, range) = bench.case(case, runs, 0xC0 << 24)?;
        let mib = capacity as f64 * size_of::<lb_common::SessionSlot>() as f64 / f64::from(1 << 20);
        println!("{capacity:>12} {:>9} {program:>8.1} {range:>9} {net:>8.1}", format!("{mib} MiB"));
        if capacity == DEFAULT_SESSION_CAPACITY {
            let target = KATRAN_COLD_NEW_FLOW_1M / 2.0;
            let verdict = if net <= target { "met" } else { "MISSED" };
            println!("{:>12} Katran with 1M flows: {KATRAN_COLD_NEW_FLOW_1M:.0} net; target half: {target:.1} net: {verdict}", "");
        }
    }
    Ok(())
}

/// The title of `syn_flood`'s section (and its filter).
const SYN_FLOOD: &str = "TCP SYN, new flow every run, under a SYN flood";

/// What a SYN costs under a flood: a new flow every run (as spoofed sources are) into a table
/// the flood has already filled. Two tables per size: full of unconfirmed records (SYNs nobody
/// followed up: each SYN takes the place of one of them), and full of live confirmed ones (a
/// bucket of live connections: each SYN is forwarded unrecorded, event new_flow_not_recorded), beside
/// the same SYN into an empty table. Each table is filled through the program itself, and proven
/// full of the intended kind before and after the rounds, besides the counters of every round.
fn syn_flood(case: &Case, runs: u32, ingress: u32) -> Result<()> {
    // One CPU for the section: a table cleared from userspace on one CPU and then written by
    // the program on the other would time cache lines crossing between them.
    let _pinned = PinnedToThisCpu::new()?;
    println!("\n{SYN_FLOOD} ({})", case.name);
    println!("an empty table is cleared before every round, whose runs are at most a quarter of its capacity; \
              compare rows of equal runs: a short round meets most buckets once (cold in cache), a long one \
              meets a small table's buckets many times (warm)");
    println!("{:>10} {:<38} {:>7} {:>8} {:>9} {:>8} {:>16}", "capacity", "table", "runs", "program", "range", "net", "not recorded");
    let ack = tcp_frame(Ipv4Addr::new(10, 200, 99, 1), 80, false);
    for capacity in [MIN_SESSION_CAPACITY << 4, DEFAULT_SESSION_CAPACITY] {
        let short = runs.min(capacity / 4);
        let unconfirmed = Some((&case.frame, Fill::Unconfirmed));
        let live = Some((&ack, Fill::Confirmed));
        let mut tables = vec![("empty", None, short), ("full of unconfirmed records (SYNs)", unconfirmed, short),
            ("full of live connections (confirmed)", live, short)];
        if short < runs {
            tables.extend([("full of unconfirmed records (SYNs)", unconfirmed, runs), ("full of live connections (confirmed)", live, runs)]);
        }
        for (table, filler, runs) in tables {
            let mut bench = Bench::new(ingress, capacity)?;
            if let Some((frame, kind)) = filler {
                bench.fill(frame, kind)?;
            }
            let events = |b: &mut Bench| b.dp().event(lb_common::Event::NewFlowNotRecorded);
            let before = events(&mut bench);
            let mut rounds = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS as u32 {
                if filler.is_none() {
                    bench.dp().clear_sessions()?;
                }
                rounds.push(bench.round(case, runs, FLOOD_STAMPS + round * runs)?);
            }
            let not_recorded = events(&mut bench) - before;
            let total = ROUNDS as u64 * u64::from(runs);
            let mut programs: Vec<f64> = rounds.iter().map(|r| r.program).collect();
            let program = median(&mut programs);
            let net = program + median(&mut rounds.iter().map(|r| r.floor).collect::<Vec<_>>());
            let range = format!("{:.0}-{:.0}", programs[0], programs[ROUNDS - 1]);
            // The path, proven: the table still full of its kind, and every SYN recorded (or,
            // into live connections, none).
            if let Some((_, kind)) = filler {
                bench.ensure_full(kind).context("after the rounds")?;
            }
            let expected = if filler.is_some_and(|(_, kind)| kind == Fill::Confirmed) { total } else { 0 };
            ensure!(not_recorded == expected, "{not_recorded} of {total} SYNs not recorded, expected {expected}: another path was measured");
            println!("{capacity:>10} {table:<38} {runs:>7} {program:>8.1} {range:>9} {net:>8.1} {:>16}", format!("{not_recorded}/{total}"));
        }
    }
    Ok(())
}

/// Keeps the calling thread on the CPU it runs on until dropped.
struct PinnedToThisCpu(libc::cpu_set_t);

impl PinnedToThisCpu {
    fn new() -> Result<Self> {
        let mut before: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = size_of::<libc::cpu_set_t>();
        ensure!(unsafe { libc::sched_getaffinity(0, size, &mut before) } == 0, "sched_getaffinity failed");
        let cpu = unsafe { libc::sched_getcpu() };
        ensure!(cpu >= 0, "sched_getcpu failed");
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu as usize, &mut one) };
        ensure!(unsafe { libc::sched_setaffinity(0, size, &one) } == 0, "sched_setaffinity failed");
        Ok(PinnedToThisCpu(before))
    }
}

impl Drop for PinnedToThisCpu {
    fn drop(&mut self) {
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

/// First source address stamped by `syn_flood`'s rounds (a fill stamps from FILL_STAMPS, below).
const FLOOD_STAMPS: u32 = 0x40 << 24;
const FILL_STAMPS: u32 = 0x10 << 24;

/// The kind of record `Bench::fill` fills the session table with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fill {
    /// SYNs of flows that never send again.
    Unconfirmed,
    /// Flows past their handshake (non-SYN packets), seen just now.
    Confirmed,
}

impl Bench {
    /// Fills every slot of the session table with records of `kind`: `frame` (a SYN or an ACK
    /// to a service) through the program, a new flow every run (every second run for confirmed
    /// records), until the table is full.
    fn fill(&mut self, frame: &[u8], kind: Fill) -> Result<()> {
        let capacity = self.dp().session_capacity();
        // Buckets get new flows at random: at 32 per bucket of 4 on average, a bucket is left
        // with a free slot at odds of 1 in 10^9, so every bucket of the largest table here fills.
        let flows = capacity.saturating_mul(8);
        self.set_target("lb_xdp")?;
        // A live connection's record is confirmed by its second packet: each flow sends two.
        let per_flow_log2 = u32::from(kind == Fill::Confirmed);
        self.set_frame_repeated(frame, true, FILL_STAMPS, per_flow_log2)?;
        self.time("lb_bench_harness", frame, flows << per_flow_log2)?;
        self.ensure_full(kind).context("after the fill")
    }

    /// Every slot of the table holds a record of `kind`.
    fn ensure_full(&mut self, kind: Fill) -> Result<()> {
        let capacity = self.dp().session_capacity() as usize;
        let sessions = self.dp().sessions();
        let of_kind = sessions.iter().filter(|(_, s)| s.is_unconfirmed() == (kind == Fill::Unconfirmed)).count();
        ensure!(sessions.len() == capacity && of_kind == capacity,
            "the table holds {} records of {capacity}, {of_kind} of them {kind:?}", sessions.len());
        Ok(())
    }
}

/// Sorts `xs` and returns its middle element.
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Time from a weight change reaching the balancer (what `lb backend weight` asks the daemon)
/// to the new table being live in the kernel: validation, table build (M = 65537), bank write
/// and flip. The admin socket round trip (tens of microseconds) is not included.
fn live_weight_change(backends: u16) -> Result<()> {
    const RUNS: usize = 10;
    let service = ServiceConfig {
        name: "big".into(),
        vip: "10.200.99.50".parse()?,
        port: 80,
        protocol: "tcp",
        forwarding: "dsr",
        backends: (0..backends).map(|i| IpAddr::from([10, 200, 64 + (i / 250) as u8, 1 + (i % 250) as u8])).collect(),
        backend_port: 80,
    };
    let config = Config::parse(&service.to_toml())?;
    let mut lb = Balancer::new(Dataplane::load()?, &config, InitialHealth::Up)?;
    let target = SocketAddr::new(service.backends[0], 80);
    let bank_before = lb.service("big")?.info.lookup_bank;
    let mut times = Vec::with_capacity(RUNS);
    let mut without_wait = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let (waits, waited) = lb.dataplane().grace_waits();
        let start = std::time::Instant::now();
        lb.set_weight("big", target, 2 + (run % 2) as u32)?;
        let took = start.elapsed();
        let (waits_after, waited_after) = lb.dataplane().grace_waits();
        // Every change but the first rewrites the bank the one before retired: one grace period.
        ensure!(waits_after - waits == u64::from(run > 0), "change {run} waited {} grace periods", waits_after - waits);
        times.push(took);
        without_wait.push(took - (waited_after - waited));
    }
    ensure!(lb.service("big")?.info.lookup_bank == bank_before, "{RUNS} changes must flip the table {RUNS} times");
    times.sort();
    without_wait.sort();
    println!("weight change to live table, {backends:>4} backends (M = 65537): median {:.2} ms over {RUNS} runs \
              ({:.2} ms of it not waiting for readers)",
        times[RUNS / 2].as_secs_f64() * 1e3, without_wait[RUNS / 2].as_secs_f64() * 1e3);
    Ok(())
}

/// A reload that changes every one of `n` services (each loses or regains a backend, so its
/// table and in-service list flip): how long until all are live, and how many grace periods
/// that waited (one per reload: the flips are stores, not map updates).
fn reload_of_many_services(n: u8) -> Result<()> {
    const RUNS: usize = 10;
    const BACKENDS: u8 = 10;
    let config = |backends: u8| -> Result<Config> {
        let services: Vec<ServiceConfig> = (0..n)
            .map(|i| ServiceConfig {
                name: format!("s{i}"),
                vip: IpAddr::from([10, 200, 98, i + 1]),
                port: 80,
                protocol: "tcp",
                forwarding: "dsr",
                backends: (0..backends).map(|b| IpAddr::from([10, 200, 64 + i, b + 1])).collect(),
                backend_port: 80,
            })
            .collect();
        Ok(Config::parse(&lb_config::render(&services))?)
    };
    let (full, fewer) = (config(BACKENDS)?, config(BACKENDS - 1)?);
    let mut lb = Balancer::new(Dataplane::load()?, &full, InitialHealth::Up)?;
    let mut times = Vec::with_capacity(RUNS);
    let mut waits = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let (waits_before, _) = lb.dataplane().grace_waits();
        let start = std::time::Instant::now();
        let lines = lb.reconcile(if run % 2 == 0 { &fewer } else { &full })?;
        times.push(start.elapsed());
        ensure!(lines.len() >= usize::from(n), "reload {run} changed only {} services", lines.len());
        waits.push(lb.dataplane().grace_waits().0 - waits_before);
    }
    times.sort();
    println!("reload changing {n} services ({BACKENDS} backends each, M = 65537): median {:.1} ms over {RUNS} runs, \
              grace periods per reload: {:?}",
        times[RUNS / 2].as_secs_f64() * 1e3, waits);
    Ok(())
}

/// What waiting out the program runs that may read a retired bank costs: one RCU grace period,
/// which the kernel waits for in an update of an array-of-maps element (dataplane/grace.rs).
fn grace_period(dp: &mut Dataplane) -> Result<()> {
    const RUNS: usize = 20;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = std::time::Instant::now();
        dp.wait_for_readers()?;
        times.push(start.elapsed());
    }
    times.sort();
    println!("grace period before a retired bank is rewritten: median {:.2} ms, min {:.2} ms, max {:.2} ms over {RUNS} runs",
        times[RUNS / 2].as_secs_f64() * 1e3, times[0].as_secs_f64() * 1e3, times[RUNS - 1].as_secs_f64() * 1e3);
    Ok(())
}

/// How long a built table takes to reach the kernel: one bank of M = 65537 slots written into
/// LOOKUP (a service id no bench case uses, so no packet path sees it).
fn table_write(dp: &mut Dataplane) -> Result<()> {
    const RUNS: usize = 20;
    let table: Vec<u32> = (0..lb_common::DEFAULT_TABLE_SIZE).map(|i| i % 1000).collect();
    let unused_service = lb_common::MAX_SERVICES - 1;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = std::time::Instant::now();
        dp.write_lookup(unused_service, 1, &table)?;
        times.push(start.elapsed());
    }
    times.sort();
    ensure!(dp.lookup_slot(unused_service, 1, 65536)? == 65536 % 1000, "the written table does not read back");
    println!("\ntable write into LOOKUP (M = {}, memory-mapped): median {:.1} us over {RUNS} runs",
        table.len(), times[RUNS / 2].as_secs_f64() * 1e6);
    Ok(())
}
