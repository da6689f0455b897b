//! Control orders (`--control-listen`) on the daemon's loop: each is refused at once with the
//! reason (and nothing changes), or handed to the shunting policy and answered, with the
//! service's shunt status, once the tick that acts on it has run.

use hyper::StatusCode;
use tokio::sync::oneshot;

use super::{
    shunting::{ShuntCommand, ShuntError, unix_now},
    state::Daemon,
};
use crate::{
    balancer::LiveError,
    config::Pool,
    control::{ControlAnswer, ControlOrder, ControlRequest, Order, Refusal},
    policy::{ExternalCommand, PolicyError},
};

/// An accepted order whose answer waits for the next tick.
pub(super) struct ControlReply {
    order: ControlOrder,
    reply: oneshot::Sender<ControlAnswer>,
}

impl Daemon {
    pub fn take_control_order(&mut self, ControlRequest { order, reply }: ControlRequest) {
        match self.control_command(&order) {
            Ok(()) => {
                tracing::info!(service = %order.service, "control request: {}", what(&order.order));
                self.control_replies.push(ControlReply { order, reply });
            }
            Err(refusal) => {
                tracing::info!(service = %order.service, status = refusal.status.as_u16(), "control request refused: {}", refusal.message);
                let _ = reply.send(Err(refusal));
            }
        }
    }

    fn control_command(&mut self, o: &ControlOrder) -> Result<(), Refusal> {
        let svc = self.balancer.service(&o.service).map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))?;
        let command = match &o.order {
            Order::Shunt(c) => ShuntCommand::External(c.clone()),
            Order::BackendReport { backend, report } => {
                match svc.backends.iter().find(|b| b.addr == *backend) {
                    None => {
                        return Err(Refusal::new(
                            StatusCode::NOT_FOUND,
                            format!("service {:?} has no backend {backend}: see `lb shunt status {}`", o.service, o.service),
                        ));
                    }
                    Some(b) if b.pool != Pool::Overflow => {
                        return Err(Refusal::new(
                            StatusCode::CONFLICT,
                            format!("{backend} is a primary backend of service {:?}; only overflow backends report their state", o.service),
                        ));
                    }
                    Some(_) => {}
                }
                ShuntCommand::BackendReport { backend: *backend, report: *report }
            }
        };
        self.shunting.command(&self.balancer, unix_now(), &o.service, command).map_err(|e| {
            let status = match &e {
                ShuntError::Live(LiveError::UnknownService(_)) => StatusCode::NOT_FOUND,
                ShuntError::NotShunted(_) => StatusCode::CONFLICT,
                ShuntError::Policy { source: PolicyError::ZeroTtl, .. } => StatusCode::BAD_REQUEST,
                ShuntError::Policy { source: PolicyError::NotAnOverflowBackend(_), .. } => StatusCode::CONFLICT,
                ShuntError::Live(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Refusal::new(status, format!("{e:#}"))
        })
    }

    /// Answers the control orders the last tick acted on.
    pub(super) fn answer_control_orders(&mut self) {
        for ControlReply { order, reply } in std::mem::take(&mut self.control_replies) {
            let answer = match self.shunting.status(&self.balancer, Some(&order.service)).map(|mut s| s.pop()) {
                Ok(Some(shunt)) => Ok(serde_json::json!({
                    "service": order.service,
                    "done": what(&order.order),
                    "shunt": shunt,
                })),
                // A reload between the order and the tick took the pool away.
                Ok(None) | Err(_) => Err(Refusal::new(
                    StatusCode::CONFLICT,
                    format!("{}; then the service lost its overflow pool (reload)", what(&order.order)),
                )),
            };
            let _ = reply.send(answer);
        }
    }
}

fn what(order: &Order) -> String {
    match order {
        Order::Shunt(ExternalCommand::Open { reason, ttl_secs: Some(ttl) }) => format!("external open ({reason:?}) for {ttl} s unless renewed"),
        Order::Shunt(ExternalCommand::Open { reason, ttl_secs: None }) => format!("external open ({reason:?}) until an external close"),
        Order::Shunt(ExternalCommand::Close { reason }) => format!("external close ({reason:?})"),
        Order::BackendReport { backend, report } => format!("backend {backend} reports {}", report.as_str()),
    }
}
