//! `cargo xtask demo [ARGS]`: runs the `lb-demo` binary of lb-tests.

use anyhow::Result;

use crate::util::{self, cargo};

pub fn run(args: &[String]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "lb-tests", "--bin", "lb-demo"]);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    util::run(&mut cmd)
}
