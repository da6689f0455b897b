//! `cargo xtask build [--release]`.

use anyhow::Result;

use crate::util::{cargo, run};

pub fn run(release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}
