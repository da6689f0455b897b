use std::net::SocketAddr;

/// A command the policy refuses; nothing changed.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{0} is not an overflow backend of this service; only overflow backends report their state")]
    NotAnOverflowBackend(SocketAddr),
    #[error("ttl_secs 0 would expire at once; give a positive TTL, or none to hold until a close")]
    ZeroTtl,
}
