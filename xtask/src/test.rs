//! `cargo xtask test [-- ARGS]`: every test of the workspace, two at a time, after building
//! what they check beside the workspace: the Debian package and the upgrade-test `lb`.

use anyhow::{Result, bail};

use crate::util::{self, cargo, is_root};

pub fn run(args: &[String]) -> Result<()> {
    if !is_root() {
        bail!(
            "tests must run as root: they create network namespaces and veth pairs and load XDP \
             programs (run `cargo xtask test` as root)"
        );
    }
    // tests/tests/package.rs checks the Debian package (a release build).
    crate::package::run()?;
    // The namespace tests run target/debug/lb and, for the upgrade, target/upgrade-test/lb.
    crate::upgrade_build::build_upgrade_then_default()?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-targets", "--"]);
    // libtest rejects an option given twice: let an explicit --test-threads win.
    if !args.iter().any(|a| a.starts_with("--test-threads")) {
        cmd.arg("--test-threads=2");
    }
    cmd.args(args);
    util::run(&mut cmd)
}
