//! What each overflow backend contributed: openings, seconds open, and the new sessions,
//! packets and bytes it served. Keyed by service name and backend address (ip:port), never by
//! internal ids, so the figures mean the same on every node and after a restart (they are
//! saved through `crate::state`, and will be replicated between nodes).
//!
//! Traffic counts in every state, draining included (all of an overflow backend's traffic is
//! shunted traffic, so the figures equal the backend's own counts); seconds count only while
//! the backend is open; an opening is a pool opening in which the backend took flows.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{BackendSample, OverflowBackendState};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    pub openings: u64,
    pub seconds_open: u64,
    pub new_sessions: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// Every service's overflow backends' contributions; what the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contributions {
    services: BTreeMap<String, BTreeMap<SocketAddr, Contribution>>,
}

impl Contributions {
    /// The state document's name (`crate::state`) and its format version.
    pub const DOCUMENT: &'static str = "contributions";
    pub const VERSION: u32 = 1;

    /// `backend` opened for the first time since its pool opened.
    pub fn record_opening(&mut self, service: &str, backend: SocketAddr) {
        self.entry(service, backend).openings += 1;
    }

    /// One second of `sample` for a backend that was in `state` during it.
    pub fn record_second(&mut self, service: &str, state: OverflowBackendState, sample: &BackendSample) {
        let c = self.entry(service, sample.addr);
        if state == OverflowBackendState::Open {
            c.seconds_open += 1;
        }
        c.new_sessions += sample.new_sessions;
        c.packets += sample.packets;
        c.bytes += sample.bytes;
    }

    pub fn get(&self, service: &str, backend: SocketAddr) -> Option<&Contribution> {
        self.services.get(service)?.get(&backend)
    }

    /// (service, backend, contribution), by service name then address.
    pub fn iter(&self) -> impl Iterator<Item = (&str, SocketAddr, &Contribution)> {
        self.services
            .iter()
            .flat_map(|(s, backends)| backends.iter().map(move |(a, c)| (s.as_str(), *a, c)))
    }

    fn entry(&mut self, service: &str, backend: SocketAddr) -> &mut Contribution {
        self.services.entry(service.to_string()).or_default().entry(backend).or_default()
    }
}
