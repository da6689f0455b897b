//! The `lb` command line.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::{
    api::{self, Request},
    config::DEFAULT_WEIGHT,
    daemon::DEFAULT_STATE_DIR,
    dataplane::{DEFAULT_INSTANCE, Instance, XdpModeArg},
};

#[derive(Parser, Debug)]
#[command(name = "lb", version, about = "XDP L4 load balancer")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the running `lb run` listens.
#[derive(Args, Debug)]
pub struct AdminSocket {
    /// Admin socket of the running instance.
    #[arg(long = "admin-socket", global = true, default_value = api::DEFAULT_SOCKET)]
    pub path: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the XDP program, pin its maps and links under /sys/fs/bpf/lb/INSTANCE (or adopt
    /// those an earlier lb of the instance left), attach it, run health checks; stay in the
    /// foreground until SIGINT/SIGTERM, then exit leaving the data plane forwarding (`lb detach`
    /// removes it). SIGHUP re-reads the config file (as `lb reload`).
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
        /// Serve the metrics (Prometheus text format) at http://ADDR:PORT/metrics. Off unless
        /// given; unauthenticated, so use a loopback or management address.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<SocketAddr>,
        /// Serve the control endpoint at http://ADDR:PORT: POST /v1/services/NAME/shunt (an
        /// external system opens or closes the overflow pool) and
        /// POST /v1/services/NAME/backends/ADDR (an overflow server reports ready or closing).
        /// Off unless given; no TLS, so use a management or loopback address (or a TLS proxy).
        #[arg(long, value_name = "ADDR:PORT")]
        control_listen: Option<SocketAddr>,
        /// File holding the bearer token control requests must present (required with
        /// --control-listen; must not be world-readable).
        #[arg(long, value_name = "PATH")]
        control_token_file: Option<PathBuf>,
        /// Name of this instance: its maps and program are pinned under /sys/fs/bpf/lb/NAME
        /// (1 to 64 of A-Z a-z 0-9 _ -). Give every instance on a host its own.
        #[arg(long, value_name = "NAME", default_value = DEFAULT_INSTANCE)]
        instance: Instance,
        /// Directory for what survives a restart (the overflow backends' contribution
        /// accounts, the drains in progress, the running services with their live changes, the
        /// health checks' history); created (mode 0700) if missing.
        #[arg(long, value_name = "DIR", env = "LB_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Discard the pins an earlier lb of this instance left (detaching its program) and start
        /// over, instead of adopting them: needed when they have another map layout. Sessions and
        /// counters are lost, and the interfaces are without XDP for a moment.
        #[arg(long)]
        fresh: bool,
        /// On SIGINT/SIGTERM, detach the program and remove the pins and the instance's state
        /// files (as `lb detach`) instead of leaving the data plane running.
        #[arg(long)]
        detach_on_exit: bool,
    },
    /// Remove the program, XDP links and pins of an instance that no lb runs (stopping it for
    /// good: its traffic is no longer balanced), and its state files.
    Detach {
        #[arg(long, value_name = "NAME", default_value = DEFAULT_INSTANCE)]
        instance: Instance,
        /// The state directory `lb run` was given: this instance's files there
        /// (`drains-NAME.json`, `running-NAME.json`, `health-NAME.json`, `shunt-NAME.json`) are removed. Other
        /// instances' files and the shared contribution accounts (`contributions.json`) are kept.
        #[arg(long, value_name = "DIR", env = "LB_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Show services, backends (health, drain, sessions, rates) and counters of a running instance.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminSocket,
    },
    /// Print the metrics of a running instance in the Prometheus text format.
    Metrics {
        #[command(flatten)]
        admin: AdminSocket,
    },
    /// Validate a configuration file without touching the kernel.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Change a backend of a running service.
    Backend {
        #[command(subcommand)]
        op: BackendOp,
        #[command(flatten)]
        admin: AdminSocket,
    },
    /// Add or remove a service of a running instance.
    Service {
        #[command(subcommand)]
        op: ServiceOp,
        #[command(flatten)]
        admin: AdminSocket,
    },
    /// Re-read the config file the running instance was started with and apply the difference
    /// (unchanged services are not touched). Live changes not in the file are undone.
    Reload {
        #[command(flatten)]
        admin: AdminSocket,
    },
    /// Traffic shunting: open or close a service's overflow pool, see its state and the
    /// overflow backends' contribution accounts.
    Shunt {
        #[command(subcommand)]
        op: ShuntOp,
        #[command(flatten)]
        admin: AdminSocket,
    },
    /// Show where a flow from a client to a service goes, and why.
    Explain {
        service: String,
        /// The client's address and port (SRC_IP:SRC_PORT; IPv6 as [addr]:port).
        #[arg(long, value_name = "SRC_IP:SRC_PORT")]
        flow: SocketAddr,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminSocket,
    },
}

/// BACKEND is ADDR:PORT, e.g. 10.0.1.11:8080 or [2001:db8::11]:8080.
#[derive(Subcommand, Debug)]
pub enum BackendOp {
    /// Add a backend; it takes new flows once its health check passes.
    Add {
        service: String,
        #[arg(value_name = "ADDR:PORT")]
        backend: SocketAddr,
        #[arg(long, default_value_t = DEFAULT_WEIGHT)]
        weight: u32,
    },
    /// Remove a backend now: its open connections move to other backends (and break).
    Remove {
        service: String,
        #[arg(value_name = "ADDR:PORT")]
        backend: SocketAddr,
    },
    /// Stop new flows to a backend; remove it once its sessions are gone or after the timeout.
    Drain {
        service: String,
        #[arg(value_name = "ADDR:PORT")]
        backend: SocketAddr,
        /// Seconds until it is removed even with sessions left (default: the service's
        /// drain_timeout in the config file, 300 if it sets none).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Give a draining backend new flows again.
    Undrain {
        service: String,
        #[arg(value_name = "ADDR:PORT")]
        backend: SocketAddr,
    },
    /// Change a backend's weight (its share of new flows).
    Weight {
        service: String,
        #[arg(value_name = "ADDR:PORT")]
        backend: SocketAddr,
        weight: u32,
    },
}

impl BackendOp {
    pub fn request(self) -> Request {
        match self {
            BackendOp::Add { service, backend, weight } => Request::BackendAdd { service, backend, weight },
            BackendOp::Remove { service, backend } => Request::BackendRemove { service, backend },
            BackendOp::Drain { service, backend, timeout } => {
                Request::BackendDrain { service, backend, timeout_secs: timeout }
            }
            BackendOp::Undrain { service, backend } => Request::BackendUndrain { service, backend },
            BackendOp::Weight { service, backend, weight } => Request::BackendWeight { service, backend, weight },
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ShuntOp {
    /// Open the service's overflow pool now and hold it open, whatever the automatic triggers
    /// say, until `close` or `release`. Its overflow backends take flows once healthy.
    Open {
        service: String,
        /// Why, for `lb shunt status` and the log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Close the pool now (no new flows to it; its sessions go on, then on_close runs) and
    /// hold it closed, whatever the automatic triggers say, until `open` or `release`.
    Close {
        service: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Give control of the pool back to the automatic triggers (rules, windows, pushes).
    Release { service: String },
    /// Each shunted service's pool: state, since, why, its overflow backends, its last events.
    Status {
        /// Only this service.
        service: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// What each overflow backend contributed: openings, seconds open, new sessions, packets, bytes.
    Report {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceOp {
    /// Add the service a TOML file describes (one [[service]], as in the config file).
    Add {
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a service: its traffic is no longer balanced.
    Remove { name: String },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    fn metrics_listen(args: &[&str]) -> Option<std::net::SocketAddr> {
        match Cli::try_parse_from(args).expect("parses").command {
            Command::Run { metrics_listen, .. } => metrics_listen,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn the_metrics_listener_is_off_unless_asked_for() {
        assert_eq!(metrics_listen(&["lb", "run", "-c", "lb.toml", "-i", "eth0"]), None);
        assert_eq!(
            metrics_listen(&["lb", "run", "-c", "lb.toml", "-i", "eth0", "--metrics-listen", "127.0.0.1:9100"]),
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert!(Cli::try_parse_from(["lb", "run", "-c", "x", "-i", "e", "--metrics-listen", "9100"]).is_err());
    }

    fn control(args: &[&str]) -> (Option<std::net::SocketAddr>, Option<std::path::PathBuf>) {
        match Cli::try_parse_from(args).expect("parses").command {
            Command::Run { control_listen, control_token_file, .. } => (control_listen, control_token_file),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn the_control_endpoint_is_off_unless_asked_for() {
        assert_eq!(control(&["lb", "run", "-c", "lb.toml", "-i", "eth0"]), (None, None));
        let on = ["lb", "run", "-c", "x", "-i", "e", "--control-listen", "10.0.0.2:9200", "--control-token-file", "/etc/lb/t"];
        assert_eq!(control(&on), (Some("10.0.0.2:9200".parse().unwrap()), Some("/etc/lb/t".into())));
        assert!(Cli::try_parse_from(["lb", "run", "-c", "x", "-i", "e", "--control-listen", "9200"]).is_err());
    }

    fn instance(args: &[&str]) -> Result<String, String> {
        match Cli::try_parse_from(args).map_err(|e| e.to_string())?.command {
            Command::Run { instance, .. } => Ok(instance.to_string()),
            other => panic!("not run: {other:?}"),
        }
    }

    fn state_dir(args: &[&str]) -> std::path::PathBuf {
        match Cli::try_parse_from(args).expect("parses").command {
            Command::Run { state_dir, .. } => state_dir,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn the_state_dir_is_var_lib_lb_unless_given() {
        // LB_STATE_DIR (the environment's override) is not set for unit tests.
        if std::env::var_os("LB_STATE_DIR").is_none() {
            assert_eq!(state_dir(&["lb", "run", "-c", "x", "-i", "e"]), std::path::Path::new("/var/lib/lb"));
        }
        assert_eq!(state_dir(&["lb", "run", "-c", "x", "-i", "e", "--state-dir", "/tmp/s"]), std::path::Path::new("/tmp/s"));
    }

    #[test]
    fn shunt_commands_parse_with_an_optional_reason() {
        use super::ShuntOp;
        let op = |args: &[&str]| match Cli::try_parse_from(args).expect("parses").command {
            Command::Shunt { op, .. } => op,
            other => panic!("not shunt: {other:?}"),
        };
        assert!(matches!(op(&["lb", "shunt", "open", "web", "--reason", "surge"]),
            ShuntOp::Open { service, reason } if service == "web" && reason == "surge"));
        assert!(matches!(op(&["lb", "shunt", "close", "web"]), ShuntOp::Close { reason, .. } if reason.is_empty()));
        assert!(matches!(op(&["lb", "shunt", "status", "--json"]), ShuntOp::Status { service: None, json: true }));
        assert!(matches!(op(&["lb", "shunt", "report"]), ShuntOp::Report { json: false }));
        assert!(Cli::try_parse_from(["lb", "shunt", "open"]).is_err(), "a service is required");
    }

    #[test]
    fn the_instance_is_named_default_unless_given_and_must_be_a_plain_name() {
        assert_eq!(instance(&["lb", "run", "-c", "lb.toml", "-i", "eth0"]).as_deref(), Ok("default"));
        assert_eq!(instance(&["lb", "run", "-c", "x", "-i", "e", "--instance", "edge_1"]).as_deref(), Ok("edge_1"));
        let err = instance(&["lb", "run", "-c", "x", "-i", "e", "--instance", "../x"]).unwrap_err();
        assert!(err.contains("--instance") && err.contains("A-Z a-z 0-9 _ -"), "{err}");
    }
}
