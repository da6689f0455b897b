//! `lb run`: load and pin (or adopt the pins an earlier lb left), attach, keep the maps in step
//! with health checks, drains, the admin socket and the config file (SIGHUP or `lb reload`),
//! answer metrics scrapes (`--metrics-listen`). On SIGINT/SIGTERM the control plane exits and the
//! data plane keeps forwarding with the last tables (pinned), for the next `lb run` to adopt;
//! `--detach-on-exit` detaches and unpins instead, as `lb detach` does for a stopped instance.

mod accounts;
mod admin;
mod checkers;
mod control_orders;
mod explain;
mod hooks;
pub use saved::remove_instance_files;
mod notify;
mod ops;
mod preflight;
mod rates;
mod saved;
mod sessions;
mod shunt_samples;
mod shunting;
mod state;
mod status;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::MissedTickBehavior,
};

use crate::{
    balancer::{Balancer, InitialHealth, LiveError},
    config::Config,
    dataplane::{Dataplane, Found, Instance, Layout, LoadOptions, PinDir, XdpModeArg},
    control, metrics,
    state::FileStore,
};
use state::{Daemon, TICK};

/// Where `lb run` keeps what survives a restart unless told otherwise (`--state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lb";

pub struct RunArgs {
    pub config: PathBuf,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpModeArg,
    pub admin_socket: PathBuf,
    /// Serve GET /metrics over HTTP here (off when None).
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the control endpoint (external shunt push, overflow servers' reports) here.
    pub control_listen: Option<SocketAddr>,
    /// The bearer token of the control endpoint (required with `control_listen`).
    pub control_token_file: Option<PathBuf>,
    /// Names the pin directory, /sys/fs/bpf/lb/<instance>.
    pub instance: Instance,
    /// What survives a restart besides the maps (accounts, drains, running services, health
    /// history, shunting) is kept here.
    pub state_dir: PathBuf,
    /// Discard the pins found (another layout, or on purpose) instead of adopting them.
    pub fresh: bool,
    /// Detach and unpin on SIGINT/SIGTERM instead of leaving the data plane running.
    pub detach_on_exit: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Everything that can be checked is checked before anything touches the kernel.
    let (config, file_digest) = Config::load_with_digest(&args.config)?;
    preflight::privileges()?;
    preflight::check(&args.interfaces, &config)?;
    let accounts = accounts::Accounts::load(FileStore::open(&args.state_dir)?)?;
    let mut saved = saved::SavedState::load(&args.state_dir, &args.instance.to_string(), &config, file_digest)?;
    // A running instance of the same name, or pins of another layout, refuse this one before
    // any socket is bound. From here on a failure of a fresh start drops `pins`, which removes
    // the directory and whatever was pinned; an adopted directory stays as it was found.
    let layout = Layout::of_object(lb_common::session_buckets(config.sessions.capacity))?;
    let pins = PinDir::claim(&args.instance, &layout, args.fresh)?;
    let found = pins.found().clone();
    // The token and the ports first: refusing them then leaves no admin socket behind.
    let control = control::prepare(args.control_listen, args.control_token_file.as_deref())?;
    let metrics_listener = args.metrics_listen.map(metrics::http::bind).transpose()?;
    let listener = admin::bind(&args.admin_socket)?;
    // Removes the socket file when run returns, also when the start fails after this point.
    let _socket_file = admin::SocketFile(args.admin_socket.clone());

    let dp = Dataplane::load_with(LoadOptions { pins: Some(pins), session_capacity: config.sessions.capacity })?;
    let dp_adopted = dp.adopted();
    // Adopting, the saved running services (live changes) are continued if the file is the one
    // they were based on; otherwise, and at a first start, the file is applied.
    let chosen = saved.running.choose(dp_adopted, |c| preflight::check(&args.interfaces, c));
    chosen.info.iter().for_each(|l| tracing::info!("{l}"));
    chosen.warnings.iter().for_each(|l| tracing::warn!("{l}"));
    let config = chosen.config;
    let balancer = if dp_adopted {
        // The program is replaced on the links first (the interfaces never lack XDP), then
        // the tables follow the config: a start refused at attach has changed no map.
        let mut dp = dp;
        dp.attach(&args.interfaces, args.xdp_mode)?;
        let (mut balancer, mut lines) = Balancer::adopt(dp, &config, InitialHealth::Down)?;
        // The maps say which backends drain; the state directory says since when.
        lines.extend(saved.drains.restore(&mut balancer));
        for l in lines {
            tracing::info!("{l}");
        }
        balancer
    } else {
        let mut balancer = Balancer::new(dp, &config, InitialHealth::Down)?;
        balancer.dataplane_mut().attach(&args.interfaces, args.xdp_mode)?;
        balancer
    };
    let mut balancer = balancer;
    balancer.dataplane_mut().commit_pins()?;
    tracing::info!(
        interfaces = %args.interfaces.join(","),
        services = config.services.len(),
        session_capacity = config.sessions.capacity,
        socket = %args.admin_socket.display(),
        layout = balancer.dataplane().layout_version(),
        "{}",
        match found {
            Found::Adoptable => "adopted the running data plane; backends keep their health until their checks say otherwise",
            _ => "attached; backends enter service as their health checks pass",
        }
    );
    let mut daemon = Daemon::start(balancer, args, accounts, saved).await?;
    // Scrapes are rendered on this loop (the daemon's data has one owner); the HTTP side only
    // carries them. Without a listener the channel has no sender and its branch stays idle.
    let (scrape_tx, mut scrapes) = mpsc::channel::<metrics::http::ScrapeRequest>(8);
    let http = metrics_listener.map(|l| {
        if let Ok(address) = l.local_addr() {
            tracing::info!(%address, "serving GET /metrics");
        }
        metrics::http::spawn(l, scrape_tx.clone())
    });
    drop(scrape_tx);
    // Control orders, likewise: checked on the HTTP side, carried out on this loop.
    let (control_tx, mut control_orders) = mpsc::channel::<control::ControlRequest>(8);
    let control_http = control.map(|(l, token)| {
        if let Ok(address) = l.local_addr() {
            tracing::info!(%address, "serving the control endpoint POST /v1/services/NAME/shunt and /v1/services/NAME/backends/ADDR");
        }
        control::http::spawn(l, token, control_tx.clone())
    });
    drop(control_tx);
    let (admin_tx, mut admin_requests) = mpsc::channel::<admin::AdminRequest>(8);
    let admin = admin::spawn(listener, admin_tx);
    // The data plane is attached (or adopted) and the admin socket answers: ready.
    notify::ready(if dp_adopted { "adopted the running data plane" } else { "attached" });

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            Some(ev) = daemon.events.recv() => {
                if let Err(e) = daemon.on_health(ev) {
                    break Err(anyhow::Error::new(e).context("updating the in-service list"));
                }
            }
            Some(reply) = scrapes.recv() => {
                let _ = reply.send(metrics::render(&status::status(&daemon)));
            }
            Some(order) = control_orders.recv() => daemon.take_control_order(order),
            Some(admin::AdminRequest { request, reply }) = admin_requests.recv() => {
                daemon.answer(request, reply).await;
            }
            _ = tick.tick() => match daemon.tick().await {
                Err(LiveError::Dataplane(e)) => break Err(anyhow::Error::new(e).context("the once-a-second update")),
                Err(e) => tracing::warn!("the once-a-second update failed: {e:#}"),
                Ok(()) => {}
            },
            // Walks of SESSIONS run on a blocking thread; the loop only takes their counts.
            walked = daemon.sessions.next_walk() => match daemon.on_census(walked).await {
                Err(LiveError::Dataplane(e)) => break Err(anyhow::Error::new(e).context("finishing drains")),
                Err(e) => tracing::warn!("finishing a drain failed: {e:#}"),
                Ok(()) => {}
            },
            _ = sighup.recv() => match daemon.reload().await {
                Ok(lines) if lines.is_empty() => tracing::info!("reload: nothing changed"),
                Ok(_) => tracing::info!("reload done"),
                Err(e) => tracing::error!("{e:#}"),
            },
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
        }
    };
    notify::stopping();
    for task in [http, control_http].into_iter().flatten() {
        task.abort();
    }
    admin.abort();
    daemon.shutdown().await;
    result
}
