//! The answer to each admin request.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::sync::oneshot;

use super::{
    explain, preflight,
    shunting::{ShuntCommand, unix_now},
    state::Daemon,
    status,
};
use crate::{
    api::{Request, Response, ShuntAction},
    balancer::flow_key,
    config::Config,
    policy::ManualCommand,
};

/// A drain's answer, sent once a walk of SESSIONS that started after the drain has counted
/// the sessions its backend has left (the operator watches them run out from there).
pub(super) struct DrainReply {
    since: Instant,
    service: String,
    backend: SocketAddr,
    /// (id, generation) of the drained backend.
    incarnation: (u32, u32),
    lines: Vec<String>,
    reply: oneshot::Sender<Response>,
}

/// A shunt command's answer, sent once the tick that acts on it has run: it says what the
/// pool then is.
pub(super) struct ShuntReply {
    service: String,
    reply: oneshot::Sender<Response>,
}

impl Daemon {
    /// Answers an admin request; a drain's answer waits (off the loop) for the next count, a
    /// shunt command's for the next tick.
    pub async fn answer(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        if let Request::Shunt { service, action } = request {
            let command = ShuntCommand::Manual(match action {
                ShuntAction::Open { reason } => ManualCommand::Open { reason },
                ShuntAction::Close { reason } => ManualCommand::Close { reason },
                ShuntAction::Release => ManualCommand::Release,
            });
            match self.shunting.command(&self.balancer, unix_now(), &service, command) {
                Ok(()) => self.shunt_replies.push(ShuntReply { service, reply }),
                Err(e) => drop(reply.send(Response::Error(format!("{e:#}")))),
            }
            return;
        }
        let Request::BackendDrain { service, backend, timeout_secs } = request else {
            let _ = reply.send(self.handle(request).await);
            return;
        };
        match self.drain(&service, backend, timeout_secs.map(Duration::from_secs)).await {
            Ok((lines, incarnation)) => {
                let since = Instant::now();
                self.drain_replies.push(DrainReply { since, service, backend, incarnation, lines, reply });
                self.sessions.ask();
            }
            Err(e) => drop(reply.send(Response::Error(format!("{e:#}")))),
        }
    }

    async fn drain(&mut self, service: &str, backend: SocketAddr, timeout: Option<Duration>) -> anyhow::Result<(Vec<String>, (u32, u32))> {
        let lines = self.balancer.drain(service, backend, timeout, Instant::now())?;
        self.changed(&lines).await?;
        let svc = self.balancer.service(service)?;
        let b = svc.backends.iter().find(|b| b.addr == backend).context("the drained backend is gone")?;
        Ok((lines, (b.id, b.generation)))
    }

    /// Sends the answers of the drains that a walk started at `started` counted for.
    pub(super) fn answer_drains(&mut self, started: Instant) {
        let (ready, waiting) = std::mem::take(&mut self.drain_replies).into_iter().partition(|d| d.since <= started);
        self.drain_replies = waiting;
        for DrainReply { service, backend, incarnation: (id, generation), mut lines, reply, .. } in ready {
            let n = self.sessions.get(id, generation);
            let left = format!("service {service}: backend {backend} has {n} active session(s)");
            tracing::info!("{left}");
            lines.push(left);
            let _ = reply.send(done(lines));
        }
    }

    /// Answers the shunt commands the last tick acted on.
    pub(super) fn answer_shunt_commands(&mut self) {
        for ShuntReply { service, reply } in std::mem::take(&mut self.shunt_replies) {
            let _ = reply.send(Response::Done(vec![self.shunting.describe(&service)]));
        }
    }

    pub async fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::ShuntStatus { service } => match self.shunting.status(&self.balancer, service.as_deref()) {
                Ok(s) => Response::ShuntStatus(s),
                Err(e) => Response::Error(format!("{e:#}")),
            },
            Request::ShuntReport => Response::ShuntReport(self.shunting.report()),
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
            Request::Status
            | Request::Metrics
            | Request::Explain { .. }
            | Request::Reload
            | Request::BackendDrain { .. }
            | Request::Shunt { .. }
            | Request::ShuntStatus { .. }
            | Request::ShuntReport => {
                unreachable!("answered by handle or answer")
            }
        })
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
