//! `cargo xtask package`: the Debian package of lb (cargo-deb, which `cargo xtask setup`
//! installs): a release build of `lb` and `lb-docs`, the man pages and shell completions that
//! `lb-docs` generates from the clap definitions, then `cargo deb --no-build`, which takes the
//! files `[package.metadata.deb]` of lb-userspace lists. The package lands in target/debian/.

use anyhow::{Context, Result};

use crate::util::{self, cargo};

pub fn run() -> Result<()> {
    util::run(cargo().args(["build", "--release", "-p", "lb-userspace", "--bin", "lb", "--bin", "lb-docs"]))?;
    let release = util::target_dir().join("release");
    let generated = release.join("packaging");
    if generated.exists() {
        // Pages of subcommands that are gone must not be packaged.
        std::fs::remove_dir_all(&generated).with_context(|| format!("removing {}", generated.display()))?;
    }
    util::run(std::process::Command::new(release.join("lb-docs")).arg(&generated))?;
    util::run(cargo().args(["deb", "-p", "lb-userspace", "--no-build"]))
}
