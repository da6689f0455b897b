//! A short round of the packet-path fuzzer (lb_tests::fuzz): 300,000 frames, mutations of every
//! kind of seed and random bytes, each judged by an oracle that reads frames with etherparse.
//! `cargo xtask fuzz` runs long rounds (10M frames by default).
//!
//! Run as root: `cargo test -p lb-tests --test fuzz_packet_path -- --nocapture`.

#[test]
fn three_hundred_thousand_fuzzed_frames_break_no_rule() {
    // Two fixed seeds (reproducible) and one from the clock (new frames every run; printed,
    // so a failure can be replayed with `cargo xtask fuzz 300000 SEED`).
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for seed in [1, 2, clock] {
        let report = lb_tests::fuzz::run(100_000, seed).unwrap_or_else(|e| panic!("round seed {seed}: {e:#}"));
        println!("seed {seed}: {report}");
        let seen = |s| report.seen.get(&s).copied().unwrap_or(0);
        // The round reached every kind of path, not only the parser's refusals.
        use lb_tests::fuzz::Seen::*;
        for (s, least) in [(Passed, 1000), (Request, 1000), (Reply, 1000), (IcmpToBackend, 100), (IcmpToClient, 10)] {
            assert!(seen(s) >= least, "seed {seed}: {s:?} only {} times: {report}", seen(s));
        }
    }
}
