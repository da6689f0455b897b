//! `cargo xtask bench [ARGS]`: runs the `lb-bench` binary of lb-tests.

use anyhow::Result;

use crate::util::{self, cargo};

pub fn run(args: &[String]) -> Result<()> {
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
