//! `lb run` configuration files for tests, written from typed values instead of pasted TOML.

use std::fmt::Write;
use std::net::IpAddr;

/// One `[[service]]`: every backend listens on `backend_port` and is health-checked there by TCP.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    /// "tcp" or "udp".
    pub protocol: &'static str,
    /// "nat" or "dsr" (dsr needs `backend_port == port`).
    pub forwarding: &'static str,
    pub backends: Vec<IpAddr>,
    pub backend_port: u16,
}

/// Health checks fast enough for a test (a killed backend leaves service within about
/// `FALL * INTERVAL`) but with a timeout far above a loaded machine's connect time: a refused
/// connection fails at once anyway, only a slow one waits for the timeout.
const INTERVAL_MS: u32 = 500;
const TIMEOUT_MS: u32 = 450;
const RISE: u32 = 1;
const FALL: u32 = 2;

impl ServiceConfig {
    /// One NAT TCP service on 10.200.100.1:80 with one backend, 10.200.3.11:8080: for tests of
    /// starts and restarts, which send nothing (the backend need not exist).
    pub fn nat_placeholder(name: &str) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            vip: "10.200.100.1".parse().expect("address"),
            port: 80,
            protocol: "tcp",
            forwarding: "nat",
            backends: vec!["10.200.3.11".parse().expect("address")],
            backend_port: 8080,
        }
    }

    /// The service as TOML.
    pub fn to_toml(&self) -> String {
        let mut c = format!(
            "[[service]]\nname = \"{}\"\nvip = \"{}\"\nport = {}\nprotocol = \"{}\"\nforwarding = \"{}\"\n\
             [service.health]\nkind = \"tcp\"\nport = {}\ninterval_ms = {INTERVAL_MS}\n\
             timeout_ms = {TIMEOUT_MS}\nrise = {RISE}\nfall = {FALL}\n",
            self.name, self.vip, self.port, self.protocol, self.forwarding, self.backend_port
        );
        for b in &self.backends {
            let _ = write!(
                c,
                "[[service.backend]]\naddress = \"{b}\"\nport = {}\n",
                self.backend_port
            );
        }
        c
    }
}

/// A whole configuration file.
pub fn render(services: &[ServiceConfig]) -> String {
    services.iter().map(ServiceConfig::to_toml).collect()
}
