//! The answer to each admin request.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{explain, preflight, state::Daemon, status};
use crate::{
    api::{Request, Response},
    balancer::flow_key,
    config::Config,
};

impl Daemon {
    pub async fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(Box::new(status::status(self))),
            Request::Metrics => Response::Metrics(crate::metrics::render(&status::status(self))),
            Request::Explain { service, client } => match self.explain(&service, client) {
                Ok(report) => Response::Explain(Box::new(report)),
                Err(e) => Response::Error(format!("{e:#}")),
            },
            Request::Reload => match self.reload().await {
                Ok(lines) => done(lines),
                Err(e) => Response::Error(format!("{e:#}")),
            },
            change => {
                let result = self.change(change);
                match result {
                    Ok(lines) => match self.changed(&lines).await {
                        Ok(()) => done(lines),
                        Err(e) => Response::Error(format!("{e:#}")),
                    },
                    Err(e) => Response::Error(format!("{e:#}")),
                }
            }
        }
    }

    /// Backend and service changes.
    fn change(&mut self, request: Request) -> anyhow::Result<Vec<String>> {
        let b = &mut self.balancer;
        Ok(match request {
            Request::BackendAdd { service, backend, weight } => b.add_backend(&service, backend, weight)?,
            Request::BackendRemove { service, backend } => b.remove_backend(&service, backend)?,
            Request::BackendWeight { service, backend, weight } => b.set_weight(&service, backend, weight)?,
            Request::BackendDrain { service, backend, timeout_secs } => {
                let mut lines = b.drain(&service, backend, timeout_secs.map(Duration::from_secs), Instant::now())?;
                lines.push(self.sessions_left(&service, backend)?);
                lines
            }
            Request::BackendUndrain { service, backend } => b.undrain(&service, backend)?,
            Request::ServiceAdd { toml } => {
                // This host must be able to route the new service's family, as at start. (An
                // invalid file is refused by add_service, with its reason.)
                if let Ok(file) = Config::parse(&toml) {
                    preflight::check(&self.args.interfaces, &file)?;
                }
                b.add_service(&toml)?
            }
            Request::ServiceRemove { name } => b.remove_service(&name)?,
            Request::Status | Request::Metrics | Request::Explain { .. } | Request::Reload => {
                unreachable!("answered by handle")
            }
        })
    }

    /// Counts sessions now (not at the next tick): the operator who drains a backend watches
    /// them run out in `lb status` from this moment on.
    fn sessions_left(&mut self, service: &str, backend: SocketAddr) -> anyhow::Result<String> {
        self.sessions.count_now(self.balancer.dataplane());
        let svc = self.balancer.service(service)?;
        let b = svc.backends.iter().find(|b| b.addr == backend).context("the drained backend is gone")?;
        let n = self.sessions.get(b.id, b.generation);
        Ok(format!("service {service}: backend {backend} has {n} active session(s)"))
    }

    fn explain(&self, service: &str, client: SocketAddr) -> anyhow::Result<crate::api::ExplainReport> {
        let svc = self.balancer.service(service)?;
        let vip = SocketAddr::new(svc.config.vip, svc.config.port);
        if client.is_ipv4() != vip.is_ipv4() {
            bail!(
                "client {client} and the vip {} of service {service} are of different address \
                 families: give a client address of the vip's family",
                svc.config.vip
            );
        }
        let flow = flow_key(client, vip, svc.config.protocol.number());
        let ex = self
            .balancer
            .explain(&flow)?
            .with_context(|| format!("service {service} is not in the data plane"))?;
        Ok(explain::report(svc, client, &ex))
    }
}

fn done(lines: Vec<String>) -> Response {
    if lines.is_empty() {
        return Response::Done(vec!["nothing to change: the running state already is as asked".into()]);
    }
    Response::Done(lines)
}
