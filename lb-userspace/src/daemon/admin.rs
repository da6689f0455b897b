//! The daemon's side of the admin socket.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::net::{UnixListener, UnixStream};

use super::RunArgs;
use crate::{
    api::{self, BackendStatus, Request, Response, ServiceStatus, Status},
    balancer::Balancer,
    health::StatusTable,
};

/// Binds the admin socket, root-only. Refuses if another instance answers on it.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another lb is already running with admin socket {}: stop it, or give this one \
                 its own --admin-socket",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(mut stream: UnixStream, balancer: &Balancer, health: &StatusTable, args: &RunArgs) {
    let answer = async {
        let response = match api::read_request(&mut stream).await {
            Ok(Request::Status) => Response::Status(Box::new(status(balancer, health, args))),
            Err(e) => Response::Error(e.to_string()),
        };
        api::write_response(&mut stream, &response).await
    };
    // A stuck client must not stall the daemon's loop.
    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), answer).await.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))) {
        tracing::warn!("admin request failed: {e}");
    }
}

fn status(balancer: &Balancer, health: &StatusTable, args: &RunArgs) -> Status {
    let dp = balancer.dataplane();
    let health = health.lock().map(|h| h.clone()).unwrap_or_default();
    let services = balancer
        .services()
        .iter()
        .map(|svc| ServiceStatus {
            name: svc.config.name.clone(),
            vip: svc.config.vip.to_string(),
            port: svc.config.port,
            protocol: svc.config.protocol.as_str().to_string(),
            forwarding: svc.config.forwarding.as_str().to_string(),
            hash_key: svc.config.hash_key.as_str().to_string(),
            backends_in_service: svc.info.in_service_count,
            counters: dp.service_counters(svc.info.id),
            backends: svc
                .backends
                .iter()
                .map(|b| {
                    let h = health.get(&(svc.config.name.clone(), b.addr));
                    BackendStatus {
                        address: b.addr,
                        weight: b.weight,
                        health: if b.up { "up" } else { "down" }.into(),
                        checks: h.map(|h| h.checks).unwrap_or(0),
                        last_check_ok: h.and_then(|h| h.last_ok),
                        last_check_latency_ms: h.and_then(|h| h.last_latency).map(|d| d.as_secs_f64() * 1e3),
                        last_error: h.and_then(|h| h.last_error.clone()),
                        counters: dp.backend_counters(b.id),
                    }
                })
                .collect(),
        })
        .collect();
    Status {
        interfaces: dp.interfaces(),
        xdp_mode: format!("{:?}", args.xdp_mode).to_lowercase(),
        services,
        outcomes: dp.outcomes().into_iter().map(|(o, n)| (o.name().to_string(), n)).collect(),
        events: dp.events().into_iter().map(|(e, n)| (e.name().to_string(), n)).collect(),
    }
}
