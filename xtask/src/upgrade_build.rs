//! The second `lb` of the upgrade test (tests/tests/e2e_upgrade.rs): built with lb-userspace's
//! `upgrade-test` feature (its XDP program differs, its map layouts do not) and copied to
//! target/upgrade-test/lb. It shares target/debug with the default build, so only lb-userspace
//! and its XDP object are compiled twice; the default `lb` is built after it and takes its
//! place in target/debug again.

use anyhow::{Context, Result};

use crate::util::{self, cargo};

/// Builds the upgrade-test `lb` into target/upgrade-test/lb, then the default workspace.
pub fn build_upgrade_then_default() -> Result<()> {
    util::run(cargo().args(["build", "-p", "lb-userspace", "--bin", "lb", "--features", "upgrade-test"]))?;
    let target = util::target_dir();
    let dir = target.join("upgrade-test");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (from, to) = (target.join("debug").join("lb"), dir.join("lb"));
    // Copied to a new file, then renamed: a test running the old copy is not disturbed.
    let partial = dir.join("lb.partial");
    std::fs::copy(&from, &partial).with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    std::fs::rename(&partial, &to).with_context(|| format!("renaming {} to {}", partial.display(), to.display()))?;
    println!("upgrade-test lb: {}", to.display());
    util::run(cargo().args(["build", "--workspace"]))
}
