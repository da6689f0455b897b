//! `cargo xtask demo [ARGS]`: runs the `lb-demo` binary of lb-tests.

use anyhow::Result;

use crate::util::{self, cargo};

pub fn run(args: &[String]) -> Result<()> {
    // The demo starts the real `lb` binary, which `cargo run` of lb-tests does not build.
    util::run(cargo().args(["build", "--release", "-p", "lb-userspace", "--bin", "lb"]))?;
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "lb-tests", "--bin", "lb-demo"]);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    util::run(&mut cmd)
}
