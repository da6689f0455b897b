//! Fuzzing the packet path (`cargo xtask fuzz`, and a short round in the test command): seed
//! frames of every kind the fixtures use, mutated blindly and field by field, plus random
//! bytes, through the real program with BPF_PROG_TEST_RUN in a throw-away namespace. Every run
//! is judged by `oracle`, which reads frames with etherparse, not with the program's code.

mod mutate;
mod oracle;
mod rng;
mod seeds;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lb::{
    balancer::{Balancer, InitialHealth},
    config::{Config, Forwarding},
    dataplane::Dataplane,
};

pub use oracle::Seen;
use oracle::{Oracle, Service};
use rng::Rng;

use crate::{fib_bed::FibBed, xdp_test_run::test_run};

/// What a round did.
#[derive(Debug)]
pub struct Report {
    pub frames: u64,
    pub seeds: usize,
    pub seen: BTreeMap<Seen, u64>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_sec = self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9);
        write!(f, "{} frames from {} seeds in {:.1} s ({per_sec:.0}/s):", self.frames, self.seeds, self.elapsed.as_secs_f64())?;
        for (seen, n) in &self.seen {
            write!(f, " {seen:?} {n}")?;
        }
        Ok(())
    }
}

/// Runs `frames` frames from generator seed `seed`; the first rule broken ends the round with
/// an error that holds the frame, what came out, and how to replay it.
pub fn run(frames: u64, seed: u64) -> Result<Report> {
    let bed = FibBed::new("fuzz")?;
    let _inside = bed.ns.enter()?;
    let Round { mut lb, seeds: seed_frames, oracle } = Round::set_up(&bed)?;

    let mut rng = Rng::new(seed);
    let mut seen = BTreeMap::new();
    let start = Instant::now();
    for i in 0..frames {
        let (origin, input) = match rng.below(16) {
            0 => ("random bytes".to_string(), random_frame(&mut rng)),
            1 => {
                let s = rng.below(seed_frames.len());
                (format!("seed {s} as is"), seed_frames[s].clone())
            }
            _ => {
                let s = rng.below(seed_frames.len());
                (format!("seed {s} mutated"), mutate::mutate(&seed_frames[s], &mut rng))
            }
        };
        let input = at_least_ethernet(input, &mut rng);
        let r = test_run(&mut lb, bed.a0.ifindex, &input).with_context(|| format!("test run of frame {i}"))?;
        match oracle.judge(&input, r.verdict, &r.output) {
            Ok(s) => *seen.entry(s).or_insert(0) += 1,
            Err(why) => {
                // Once more, counted, in (nearly) the state that led to it: which outcome it was.
                let before = lb.dataplane().outcomes();
                let again = test_run(&mut lb, bed.a0.ifindex, &input)?;
                let after = lb.dataplane().outcomes();
                let outcome: Vec<&str> =
                    before.iter().zip(&after).filter(|((_, a), (_, b))| a != b).map(|((o, _), _)| o.name()).collect();
                bail!(
                    "frame {i} of round seed {seed} ({origin}): {why}\n  in:  {}\n  out: {} (verdict {}; run again: verdict {}, outcome {outcome:?})",
                    hex(&input),
                    hex(&r.output),
                    r.verdict,
                    again.verdict
                )
            }
        }
    }
    Ok(Report { frames, seeds: seed_frames.len(), seen, elapsed: start.elapsed() })
}

/// Runs one frame (hex) through a bed set up as for a round, after its seeds; returns the
/// verdict, the outcome counters that moved, the oracle's judgement and the output, to debug
/// a frame a round reported.
pub fn replay(frame_hex: &str) -> Result<String> {
    let input: Vec<u8> = (0..frame_hex.len() / 2)
        .map(|i| u8::from_str_radix(&frame_hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .context("the frame is not hex")?;
    let bed = FibBed::new("fuzz-replay")?;
    let _inside = bed.ns.enter()?;
    let Round { mut lb, oracle, .. } = Round::set_up(&bed)?;
    let before = lb.dataplane().outcomes();
    let r = test_run(&mut lb, bed.a0.ifindex, &input)?;
    let after = lb.dataplane().outcomes();
    let moved: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((o, _), _)| o.name().to_string())
        .collect();
    let judged = oracle.judge(&input, r.verdict, &r.output);
    Ok(format!("verdict {} outcome {moved:?} oracle {judged:?}\n  out: {}", r.verdict, hex(&r.output)))
}

/// The program loaded in `bed` (entered) with the round's services, its flows recorded, the
/// seed frames, and the oracle.
struct Round {
    lb: Balancer,
    seeds: Vec<Vec<u8>>,
    oracle: Oracle,
}

impl Round {
    fn set_up(bed: &FibBed) -> Result<Round> {
        let mut dp = Dataplane::load()?;
        dp.allow_egress(bed.a0.ifindex)?;
        dp.allow_egress(bed.b0.ifindex)?;
        let config = Config::parse(seeds::CONFIG)?;
        let mut lb = Balancer::new(dp, &config, InitialHealth::Up)?;
        let seeds = seeds::frames(&mut lb, bed)?;
        Ok(Round { lb, seeds, oracle: oracle_of(&config, bed) })
    }
}

fn oracle_of(config: &Config, bed: &FibBed) -> Oracle {
    let services = config
        .services
        .iter()
        .map(|s| Service {
            vip: std::net::SocketAddr::new(s.vip, s.port),
            proto: s.protocol.number(),
            nat: s.forwarding == Forwarding::Nat,
            backends: s.backends.iter().map(|b| std::net::SocketAddr::new(b.address, b.port)).collect(),
        })
        .collect();
    let macs = bed.neighbours();
    Oracle { services, neighbour_mac: Box::new(move |ip| macs.iter().find(|(a, _)| *a == ip).map(|(_, m)| *m)) }
}

fn random_frame(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(160)).map(|_| rng.byte()).collect()
}

/// BPF_PROG_TEST_RUN wants at least an Ethernet header.
fn at_least_ethernet(mut f: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    while f.len() < 14 {
        f.push(rng.byte());
    }
    f
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
