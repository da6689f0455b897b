//! `cargo xtask fuzz [FRAMES] [SEED]`: a long round of the packet-path fuzzer (`lb-fuzz`,
//! release build, 10M frames unless told), then the config parser's and the admin protocol's
//! property tests with many more cases than the test command runs.

use anyhow::Result;

use crate::util::{self, cargo};

/// Cases per property in the long run (the test command runs proptest's default, 256).
const PROPERTY_CASES: &str = "20000";

pub fn run(args: &[String]) -> Result<()> {
    let mut packets = cargo();
    packets.args(["run", "--release", "-p", "lb-tests", "--bin", "lb-fuzz", "--"]).args(args);
    util::run(&mut packets)?;
    let mut properties = cargo();
    properties
        .args(["test", "--release", "-p", "lb-userspace", "--lib", "fuzz_"])
        .env("PROPTEST_CASES", PROPERTY_CASES);
    util::run(&mut properties)
}
