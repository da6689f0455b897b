//! `lb run --control-listen ADDR:PORT`: the external push of traffic shunting. Systems that
//! know of a surge before it comes open or close a service's overflow pool
//! (`POST /v1/services/NAME/shunt`), overflow servers report their own state
//! (`POST /v1/services/NAME/backends/ADDR`); both with a bearer token read from
//! `--control-token-file`.
//!
//! `request` checks what is asked, `token` who asks, `http` serves it; the daemon's loop only
//! carries out a checked `ControlOrder` (daemon/control_orders.rs) and answers once the tick that
//! acts on it has run.

pub mod http;
pub mod request;
pub mod token;

use std::{net::SocketAddr, path::Path};

use anyhow::bail;
use hyper::StatusCode;
use tokio::{net::TcpListener, sync::oneshot};

pub use request::{ControlOrder, Order};
pub use token::Token;

/// A refused request: its status and what was wrong (answered as `{"error": message}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The daemon's answer: 200 with what was done, or a refusal (nothing changed).
pub type ControlAnswer = Result<serde_json::Value, Refusal>;

/// A checked order on its way to the daemon's loop.
pub struct ControlRequest {
    pub order: ControlOrder,
    pub reply: oneshot::Sender<ControlAnswer>,
}

/// Checks the flags, reads the token and binds the port, before anything touches the kernel.
pub fn prepare(listen: Option<SocketAddr>, token_file: Option<&Path>) -> anyhow::Result<Option<(TcpListener, Token)>> {
    match (listen, token_file) {
        (None, None) => Ok(None),
        (None, Some(_)) => bail!("--control-token-file is given without --control-listen: give both, or neither"),
        (Some(_), None) => bail!(
            "--control-listen needs --control-token-file PATH: a file (mode 0600) holding the bearer token \
             the control requests must present"
        ),
        (Some(addr), Some(path)) => {
            let token = Token::load(path)?;
            Ok(Some((http::bind(addr)?, token)))
        }
    }
}

#[cfg(test)]
mod tests;
