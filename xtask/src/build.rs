//! `cargo xtask build [--release]`.

use anyhow::Result;

use crate::util::{self, cargo};

pub fn run(release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)
}
