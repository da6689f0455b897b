//! `cargo xtask bench [ARGS]`: builds `lb`, then runs the `lb-bench` binary of lb-tests.

use anyhow::Result;

use crate::util::{self, cargo};

pub fn run(args: &[String]) -> Result<()> {
    // The census bench runs the real `lb run`, found next to lb-bench.
    util::run(cargo().args(["build", "--release", "-p", "lb-userspace", "--bin", "lb"]))?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "lb-tests",
        "--bin",
        "lb-bench",
        "--",
    ])
    .args(args);
    util::run(&mut cmd)
}
