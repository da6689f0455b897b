//! `lb run`: load, attach, keep the maps in step with health checks, answer the admin socket,
//! and detach cleanly on SIGINT/SIGTERM.

mod admin;
mod preflight;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::Context;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    balancer::{Balancer, InitialHealth},
    config::Config,
    dataplane::{Dataplane, XdpModeArg},
    health::{self, Health},
};

pub struct RunArgs {
    pub config: PathBuf,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpModeArg,
    pub admin_socket: PathBuf,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Everything that can be checked is checked before anything touches the kernel.
    let config = Config::load(&args.config)?;
    preflight::check(&args.interfaces, &config)?;
    let listener = admin::bind(&args.admin_socket)?;

    let dp = Dataplane::load()?;
    let mut balancer = Balancer::new(dp, &config, InitialHealth::Down)?;
    balancer.dataplane_mut().attach(&args.interfaces, args.xdp_mode)?;
    tracing::info!(
        interfaces = %args.interfaces.join(","),
        services = config.services.len(),
        socket = %args.admin_socket.display(),
        "attached; backends enter service as their health checks pass"
    );

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let health_status: health::StatusTable = Arc::new(Mutex::new(HashMap::new()));
    let mut checkers = Vec::new();
    for svc in &config.services {
        for b in &svc.backends {
            let backend = SocketAddr::new(b.address, b.port);
            let target = health::check_target(backend, &svc.health);
            checkers.push(health::spawn_checker(
                svc.name.clone(),
                backend,
                target,
                svc.health.clone(),
                events_tx.clone(),
                health_status.clone(),
            ));
        }
    }

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let result = loop {
        tokio::select! {
            Some(ev) = events.recv() => {
                let up = ev.health == Health::Up;
                match balancer.set_health(&ev.service, ev.backend, up) {
                    Ok(_) => tracing::info!(service = %ev.service, backend = %ev.backend,
                        state = if up { "up" } else { "down" }, detail = %ev.detail, "backend health changed"),
                    Err(e) => break Err(anyhow::Error::new(e).context("updating the in-service list")),
                }
            }
            conn = listener.accept() => {
                if let Ok((stream, _)) = conn {
                    admin::serve(stream, &balancer, &health_status, &args).await;
                }
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
        }
    };
    for c in checkers {
        c.abort();
    }
    balancer.dataplane_mut().detach_all();
    let _ = std::fs::remove_file(&args.admin_socket);
    tracing::info!("detached; exiting");
    result
}
