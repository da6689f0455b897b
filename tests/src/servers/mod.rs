//! Real servers in backend namespaces that answer with their backend's label, so a test can
//! tell which backend served a connection or datagram, and can kill/restart them to model a
//! backend failing.

mod counting;
mod ready;
mod tcp;
mod think;
mod udp;

pub use counting::{Accepted, CountingServer};
pub use ready::{Proto, START_TIMEOUT, is_listening};
pub use tcp::TcpServer;
pub use think::ThinkingServer;
pub use udp::UdpServer;

use crate::topology::Host;
use anyhow::{Context, Result};

/// A backend's TCP and UDP servers on the same port number, both answering the host's label.
#[derive(Debug)]
pub struct BackendServer {
    pub tcp: TcpServer,
    pub udp: UdpServer,
}

impl BackendServer {
    /// Starts both servers in `host`'s namespace.
    pub fn start(host: &Host, port: u16) -> Result<BackendServer> {
        let tcp = TcpServer::start(host.ns(), host.label(), port)
            .with_context(|| format!("TCP server on {}", host.label()))?;
        let udp = UdpServer::start(host.ns(), host.label(), port)
            .with_context(|| format!("UDP server on {}", host.label()))?;
        Ok(BackendServer { tcp, udp })
    }

    /// Starts servers on every host in `hosts` (typically `topology.backends()`).
    pub fn start_all(hosts: &[Host], port: u16) -> Result<Vec<BackendServer>> {
        hosts
            .iter()
            .map(|h| BackendServer::start(h, port))
            .collect()
    }

    /// Kills both servers (and every open TCP connection): the backend is dead.
    pub fn kill(&mut self) -> Result<()> {
        self.tcp.kill()?;
        self.udp.kill()
    }

    /// Brings both servers back.
    pub fn restart(&mut self) -> Result<()> {
        self.tcp.restart()?;
        self.udp.restart()
    }
}
