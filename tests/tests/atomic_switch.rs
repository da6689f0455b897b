//! The atomic switch under a concurrent reader: the real XDP program, run without pause with
//! BPF_PROG_TEST_RUN on TCP SYNs of many flows (a SYN skips the session lookup, so every packet
//! is chosen from the table), while the balancer applies hundreds of changes: weights, backends
//! added and removed, drains and undrains, table size changes.
//!
//! A packet reads one service (SERVICES entry and SERVICE_BANKS word: table size, banks,
//! in-service count), one table slot and maybe one in-service entry. Each of those reads on its own is always some version's value;
//! what a torn switch shows is a MIX: one version's entry with another version's bank contents.
//! So every packet must be explained by ONE published version (entry, table and in-service list
//! together) among those live while it ran; table sizes change often so that a mix picks a slot
//! no single version would. Run as root: `cargo test -p lb-tests --test atomic_switch`.

#[allow(dead_code)]
#[path = "fixtures/frames.rs"]
mod frames;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use lb::balancer::Balancer;
use lb::balancer::InitialHealth;
use lb::config::Config;
use lb::dataplane::Dataplane;
use lb_common::{FlowKey, HASH_FIELDS_MASK, ServiceInfo, flow_hash, second_choice, table_slot};

use lb_tests::fib_bed::FibBed;
use lb_tests::xdp_test_run::{XDP_DROP, XDP_TX, run_xdp};
use frames::Frame;

const VIP: &str = "10.200.99.1:80";
/// Table sizes the changes cycle through (primes; a SYN's slot differs between them).
const TABLE_SIZES: [u32; 4] = [1021, 2039, 4093, 3067];
const CHANGES: usize = 240;
const FLOWS: u16 = 4096;

/// NAT, so the output frame names the chosen backend (destination address and port). Two
/// backends are kept down for the whole test: their slots go to the second choice, so the
/// in-service list is read too.
fn config() -> String {
    let backends: Vec<String> = initial_backends().iter().map(|b| format!("{{ address = \"{}\", port = {} }}", b.ip(), b.port())).collect();
    format!(
        "[[service]]\nname = \"web\"\nvip = \"10.200.99.1\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         table_size = {}\nbackend = [{}]\n",
        TABLE_SIZES[0],
        backends.join(", ")
    )
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// Backends of the initial config; the first two stay down.
fn initial_backends() -> Vec<SocketAddr> {
    (1..=4).flat_map(|p| [sa(&format!("10.200.10.11:{}", 8000 + p)), sa(&format!("10.200.10.12:{}", 8000 + p))]).collect()
}

/// Backends the writer may add later (all behind a neighbour the bed knows).
fn spare_backends() -> Vec<SocketAddr> {
    (1..=6).map(|p| sa(&format!("10.200.10.13:{}", 8000 + p))).collect()
}

/// One published state of the service: what a packet reads, as one consistent whole.
#[derive(Debug)]
struct Version {
    what: String,
    info: ServiceInfo,
    table: Vec<u32>,
    in_service: Vec<u32>,
    /// Backend id -> (address, UP flag) for every id the service holds.
    backends: HashMap<u32, (SocketAddr, bool)>,
}

/// Reads the live state back from the maps (what the kernel reads), not from the balancer's
/// own idea of it.
fn snapshot(lb: &Balancer, what: String) -> Result<Version> {
    let svc = lb.service("web")?;
    let dp = lb.dataplane();
    let (_, info) = dp.service_entries().into_iter().find(|(k, _)| *k == svc.key).context("SERVICES entry of web")?;
    let table = (0..info.table_size).map(|s| dp.lookup_slot(info.id, info.lookup_bank, s)).collect::<Result<_, _>>()?;
    let in_service =
        (0..info.in_service_count).map(|i| dp.in_service_slot(info.id, info.in_service_bank, i)).collect::<Result<_, _>>()?;
    let backends = svc.backends.iter().map(|b| (b.id, (b.addr, b.up))).collect();
    Ok(Version { what, info, table, in_service, backends })
}

/// What the reader saw for one packet: which versions could be live, and where it went.
struct Observation {
    flow: usize,
    /// Versions published before the run began ..= versions begun before it ended.
    first: usize,
    last: usize,
    /// None: dropped.
    backend: Option<SocketAddr>,
}

/// Where the kernel sends a SYN of `flow` under version `v`, given whether the slot's backend is
/// found up: (first choice, second choice).
fn choices(v: &Version, flow: &FlowKey) -> (Option<u32>, Option<u32>) {
    let hash = flow_hash(flow, v.info.flags & HASH_FIELDS_MASK);
    let first = v.table.get(table_slot(hash, v.info.table_size) as usize).copied();
    let second = (v.info.in_service_count > 0)
        .then(|| v.in_service.get(second_choice(hash, v.info.in_service_count) as usize).copied())
        .flatten();
    (first, second)
}

/// Whether one version explains the observation. BACKENDS flags and addresses change apart from
/// the switch (a removed backend loses UP after it; an added one gets its entry before), so they
/// may come from any version live during the run; entry, table and list must come from `v`.
fn explains(versions: &[Version], o: &Observation, v: &Version, flow: &FlowKey) -> bool {
    let window = &versions[o.first..=o.last];
    let addr_of = |id: u32| window.iter().filter_map(|w| w.backends.get(&id)).map(|(a, _)| *a).collect::<HashSet<_>>();
    let up_somewhere = |id: u32| window.iter().any(|w| w.backends.get(&id).is_some_and(|(_, up)| *up));
    let down_somewhere = |id: u32| window.iter().any(|w| !w.backends.get(&id).is_some_and(|(_, up)| *up));
    let (first, second) = choices(v, flow);
    let Some(first) = first else { return false };
    let by_first = up_somewhere(first) && o.backend.is_some_and(|a| addr_of(first).contains(&a));
    let second_allowed = down_somewhere(first);
    let by_second = second_allowed
        && match (second, o.backend) {
            (Some(id), Some(a)) => up_somewhere(id) && addr_of(id).contains(&a),
            // The listed backend went down (removed) while the packet ran: dropped.
            (Some(id), None) => down_somewhere(id),
            (None, None) => true,
            (None, Some(_)) => false,
        };
    by_first || by_second
}

/// The program's answer for one frame: the backend a NAT SYN was rewritten to, None if dropped.
fn run(reader: &Xdp, ingress_ifindex: u32, frame: &[u8], out: &mut [u8]) -> Result<Option<SocketAddr>> {
    let r = run_xdp(reader, ingress_ifindex, frame, out, 1)?;
    match r.return_value {
        XDP_TX => {
            let p = SlicedPacket::from_ethernet(&out[..r.data_size_out as usize])?;
            let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) = (p.net, p.transport) else {
                bail!("a forwarded SYN that is not IPv4/TCP");
            };
            Ok(Some(SocketAddr::new(IpAddr::V4(ip.header().destination_addr()), tcp.destination_port())))
        }
        XDP_DROP => Ok(None),
        v => bail!("verdict {v} for a SYN to the service"),
    }
}

/// A small deterministic generator (the test must fail the same way twice).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Applies one random change; returns what it did. Keeps at least two up backends in the table
/// besides the two that stay down, so a packet always has somewhere to go between changes.
fn change(lb: &mut Balancer, rng: &mut Rng, step: usize) -> Result<String> {
    let svc = lb.service("web")?;
    let pinned_down = &initial_backends()[..2];
    let managed: Vec<SocketAddr> = svc.backends.iter().map(|b| b.addr).filter(|a| !pinned_down.contains(a)).collect();
    let in_table: Vec<SocketAddr> =
        svc.backends.iter().filter(|b| b.in_table() && !pinned_down.contains(&b.addr)).map(|b| b.addr).collect();
    let draining: Vec<SocketAddr> = svc.backends.iter().filter(|b| b.drain.is_some()).map(|b| b.addr).collect();
    let spare: Vec<SocketAddr> = spare_backends().into_iter().filter(|a| !managed.contains(a)).collect();
    let pick = |rng: &mut Rng, v: &[SocketAddr]| v[rng.next(v.len())];
    if step % 3 == 2 {
        let mut cfg = lb.running_config();
        let size = TABLE_SIZES[(step / 3 + 1) % TABLE_SIZES.len()];
        cfg.services[0].table_size = size;
        lb.reconcile(&cfg)?;
        return Ok(format!("table_size {size}"));
    }
    loop {
        match rng.next(6) {
            0 | 1 => {
                let (b, w) = (pick(rng, &in_table), 1 + rng.next(5) as u32);
                lb.set_weight("web", b, w)?;
                return Ok(format!("weight {b} {w}"));
            }
            2 if !spare.is_empty() => {
                let b = pick(rng, &spare);
                lb.add_backend("web", b, 1 + rng.next(3) as u32)?;
                return Ok(format!("add {b}"));
            }
            3 if in_table.len() > 2 => {
                let b = pick(rng, &in_table);
                lb.remove_backend("web", b)?;
                return Ok(format!("remove {b}"));
            }
            4 if in_table.len() > 2 => {
                let b = pick(rng, &in_table);
                lb.drain("web", b, Some(Duration::from_secs(600)), Instant::now())?;
                return Ok(format!("drain {b}"));
            }
            5 if !draining.is_empty() => {
                let b = pick(rng, &draining);
                lb.undrain("web", b)?;
                return Ok(format!("undrain {b}"));
            }
            _ => continue,
        }
    }
}

/// Stops the reader however the writer leaves (error or panic included).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Packets the reader runs on the first and the last version.
const READER_RUNS: usize = 64;

/// Waits until the reader has run `target` packets in all, or has ended (its error tells why).
fn reader_ran(runs: &AtomicUsize, reader_gone: &AtomicBool, target: usize) {
    while runs.load(SeqCst) < target && !reader_gone.load(SeqCst) {
        std::thread::yield_now();
    }
}

#[test]
fn a_reader_never_observes_a_mixed_table() -> Result<()> {
    let bed = FibBed::new("atomic-switch")?;
    let _inside = bed.ns.enter()?;
    let mut dp = Dataplane::load()?;
    dp.allow_egress(bed.a0.ifindex)?;
    let mut lb = Balancer::new(dp, &Config::parse(&config())?, InitialHealth::Up)?;
    for b in &initial_backends()[..2] {
        lb.set_health("web", *b, false)?;
    }
    // A second handle on the same loaded program, for the reader thread.
    let info = lb.dataplane_mut().program().info()?;
    let reader = Xdp::from_program_info(info, "lb_xdp".into(), XdpAttachType::Interface)?;

    let frames: Vec<Frame> = (0..FLOWS).map(|i| Frame::syn(&format!("10.200.10.2:{}", 10000 + i), VIP)).collect();
    let flows: Vec<FlowKey> = frames.iter().map(Frame::flow_key).collect();
    let bytes: Vec<Vec<u8>> = frames.iter().map(Frame::bytes).collect();

    let mut versions = vec![snapshot(&lb, "initial".into())?];
    let started = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Packets the reader has run, and whether it has ended: the writer waits on these, not on
    // a clock, for the reader to run before the first change and after the last.
    let runs = AtomicUsize::new(0);
    let reader_gone = AtomicBool::new(false);
    let (observations, writer) = std::thread::scope(|s| {
        let reader = s.spawn(|| -> Result<Vec<Observation>> {
            let _gone = StopOnDrop(&reader_gone);
            let _inside = bed.ns.enter()?;
            let mut seen = Vec::new();
            let mut out = vec![0u8; 256];
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            while !stop.load(SeqCst) {
                let flow = rng.next(bytes.len());
                let first = done.load(SeqCst);
                let backend = run(&reader, bed.a0.ifindex, &bytes[flow], &mut out)?;
                let last = started.load(SeqCst);
                seen.push(Observation { flow, first, last, backend });
                runs.fetch_add(1, SeqCst);
            }
            Ok(seen)
        });
        let writer = (|| -> Result<()> {
            let _stop = StopOnDrop(&stop);
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            // The reader sees the initial version before the first change...
            reader_ran(&runs, &reader_gone, READER_RUNS);
            for step in 0..CHANGES {
                started.store(step + 1, SeqCst);
                let what = change(&mut lb, &mut rng, step).with_context(|| format!("change {}", step + 1))?;
                versions.push(snapshot(&lb, what)?);
                done.store(step + 1, SeqCst);
            }
            // ...and the last one after it.
            reader_ran(&runs, &reader_gone, runs.load(SeqCst) + READER_RUNS);
            Ok(())
        })();
        (reader.join().expect("reader thread panicked"), writer)
    });
    writer?;
    let observations = observations?;

    let mut problems = Vec::new();
    let (mut spanning, mut second, mut dropped) = (0, 0, 0);
    for o in &observations {
        let flow = &flows[o.flow];
        spanning += usize::from(o.first < o.last);
        dropped += usize::from(o.backend.is_none());
        let candidates = &versions[o.first..=o.last];
        if !candidates.iter().any(|v| explains(&versions, o, v, flow)) {
            problems.push(format!(
                "flow {} went to {:?} while versions {}..={} were live ({}): no single version sends it there \
                 (each version's first/second choice: {:?})",
                frames[o.flow].src,
                o.backend,
                o.first,
                o.last,
                candidates.iter().map(|v| v.what.as_str()).collect::<Vec<_>>().join("; "),
                candidates.iter().map(|v| choices(v, flow)).collect::<Vec<_>>(),
            ));
        }
        let v = &versions[o.first];
        if o.first == o.last && choices(v, flow).0.is_some_and(|id| !v.backends.get(&id).is_some_and(|(_, up)| *up)) {
            second += 1;
        }
    }
    eprintln!(
        "{} packets, {} changes ({} versions), {spanning} packets ran while a change was in flight, \
         {second} second choices between changes, {dropped} dropped; {} grace periods waited",
        observations.len(),
        CHANGES,
        versions.len(),
        lb.dataplane().grace_waits().0
    );
    ensure!(problems.is_empty(), "{} of {} packets saw a mixed table; first ones:\n{}", problems.len(), observations.len(),
        problems.iter().take(5).cloned().collect::<Vec<_>>().join("\n"));
    // The test only means something if the reader really raced the writer.
    ensure!(observations.len() >= 10 * CHANGES, "only {} packets for {CHANGES} changes", observations.len());
    ensure!(spanning >= CHANGES, "only {spanning} packets overlapped a change");
    ensure!(second > 0, "no packet took the second choice: the in-service list was never read");
    Ok(())
}
