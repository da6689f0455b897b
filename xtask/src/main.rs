//! `cargo xtask <command>`: project automation (setup, build, test, bench, demo, fuzz).

mod bench;
mod build;
mod demo;
mod fuzz;
mod package;
mod setup;
mod test;
mod upgrade_build;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Project automation for the XDP load balancer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install everything the build and the tests need (Debian packages, nightly rust-src,
    /// bpf-linker), then build the workspace once. Idempotent.
    Setup,
    /// Build the workspace (lb-userspace's build.rs compiles the eBPF object).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Run every test of the workspace (needs root: tests create network namespaces).
    /// Arguments go to the test binaries, e.g. `cargo xtask test -- --nocapture`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the Debian package (cargo-deb): lb, its systemd unit, /etc/lb/lb.toml, man pages
    /// and shell completions; written to target/debian/.
    Package,
    /// Run the benchmark (`lb-bench`); arguments are passed to it.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the demo (`lb-demo`); arguments are passed to it.
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz the packet path (`lb-fuzz [FRAMES] [SEED]`, or `replay HEX`), then the config
    /// parser and the admin protocol (property tests with many cases). Needs root.
    Fuzz {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::Build { release } => build::run(release),
        Cmd::Test { args } => test::run(&args),
        Cmd::Package => package::run(),
        Cmd::Bench { args } => bench::run(&args),
        Cmd::Demo { args } => demo::run(&args),
        Cmd::Fuzz { args } => fuzz::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole chain on one line (and no backtrace, even with RUST_BACKTRACE).
            eprintln!("xtask error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
