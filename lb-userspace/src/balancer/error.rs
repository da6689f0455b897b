//! Why a change to the running balancer was refused (or failed in the kernel). Every refusal
//! happens before the first map write, so the running state is exactly as it was.

use std::net::SocketAddr;

use crate::{config::ConfigError, dataplane::DataplaneError};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no service named {0:?} is running: see `lb status` for the running services")]
    UnknownService(String),
    #[error("service {service:?} has no backend {backend}: see `lb status` for its backends")]
    UnknownBackend { service: String, backend: SocketAddr },
    /// The change would make a configuration the file validator rejects.
    #[error("{what} refused: {source}")]
    Invalid {
        what: String,
        #[source]
        source: ConfigError,
    },
    /// A rule of the running state (draining, id space) forbids the change.
    #[error("{0}")]
    Refused(String),
    /// A map write failed: a kernel problem, not bad input.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}
