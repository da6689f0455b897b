//! A TCP server in a backend namespace that says which backend it is, then echoes.
//!
//! `socat TCP6-LISTEN:<port>,fork,reuseaddr,ipv6only=0 SYSTEM:'echo <label>; exec cat'`: one
//! listener for both families; each connection gets the backend's label as its first line, then
//! every line it sends back, for as long as it stays open. It is a real process so "the backend
//! died" is a real SIGKILL, and an accepted socket's local address is whatever the client
//! dialled (a DSR VIP on `lo` included), so replies need no extra care.

use super::ready::{Proto, is_listening, wait_listening};
use crate::child::ChildGuard;
use crate::netns::{Netns, spawn_in};
use anyhow::{Result, bail};

#[derive(Debug)]
pub struct TcpServer {
    ns: String,
    label: String,
    port: u16,
    process: Option<ChildGuard>,
}

impl TcpServer {
    /// Starts the server in `ns`, answering `label`, and waits until it listens.
    /// `label` must be `[A-Za-z0-9_-]` (it is spliced into socat's address syntax).
    pub fn start(ns: &Netns, label: &str, port: u16) -> Result<TcpServer> {
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("server label {label:?} must be [A-Za-z0-9_-]");
        }
        let mut server = TcpServer {
            ns: ns.name().to_owned(),
            label: label.to_owned(),
            port,
            process: None,
        };
        server.restart()?;
        Ok(server)
    }

    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the listener and every open connection (the whole process group): the backend
    /// is dead, new connections are refused, established ones are closed.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// Kills only the listener: new connections are refused, established ones keep echoing
    /// (until `kill` or Drop). Models a backend draining.
    pub fn stop_listening(&mut self) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            p.kill_leader()?;
        }
        Ok(())
    }

    /// (Re)starts the listener, killing any previous one first, and waits until it listens.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        let listen = format!("TCP6-LISTEN:{},fork,reuseaddr,ipv6only=0", self.port);
        let reply = format!("SYSTEM:echo {}; exec cat", self.label);
        let process = spawn_in(&self.ns, &["socat", &listen, &reply])?;
        let process = self.process.insert(process);
        let why = || format!("`{}`: {}", process.what(), process.stderr_tail());
        wait_listening(&self.ns, Proto::Tcp, self.port, why)
    }

    /// True if something listens on the port in the namespace.
    pub fn is_listening(&self) -> Result<bool> {
        is_listening(&self.ns, Proto::Tcp, self.port)
    }
}
