//! The `lb` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{api, dataplane::XdpModeArg};

#[derive(Parser, Debug)]
#[command(name = "lb", version, about = "XDP L4 load balancer")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the XDP program, attach it, run health checks; stay in the foreground until
    /// SIGINT/SIGTERM, then detach.
    Run {
        /// The TOML configuration (see examples/lb.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Interface to attach to; repeat for two-arm set-ups (clients on one, backends on another).
        #[arg(long = "iface", short = 'i', required = true)]
        interfaces: Vec<String>,
        #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
        xdp_mode: XdpModeArg,
        /// Admin socket the CLI talks to (root-only).
        #[arg(long, default_value = api::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
    },
    /// Show services, backends, health and counters of a running instance.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = api::DEFAULT_SOCKET)]
        admin_socket: PathBuf,
    },
    /// Validate a configuration file without touching the kernel.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}
