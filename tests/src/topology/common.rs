//! What every topology has: a switch namespace, a client, the lb and backends, and the ways to
//! reach them. `OneArm` and `TwoArm` own one each and deref to it.

use super::host::Host;
use super::switch::Switch;
use crate::netns::Netns;

/// The namespaces of one topology; dropping it removes them all.
#[derive(Debug)]
pub struct Topology {
    pub(super) switch: Switch,
    pub(super) client: Host,
    pub(super) lb: Host,
    pub(super) backends: Vec<Host>,
}

impl Topology {
    pub fn client(&self) -> &Host {
        &self.client
    }
    /// The lb host (a two-arm lb's `ifaces()` is `[arm0, arm1]`).
    pub fn lb(&self) -> &Host {
        &self.lb
    }
    pub fn backends(&self) -> &[Host] {
        &self.backends
    }
    pub fn backend(&self, i: usize) -> &Host {
        &self.backends[i]
    }
    /// The namespace holding the bridge and every switched host's switch-side port.
    pub fn switch(&self) -> &Netns {
        &self.switch.ns
    }

    /// Every host (client, lb, backends; not the switch).
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.client, &self.lb].into_iter().chain(&self.backends)
    }

    /// Names of every namespace this topology owns (switch included).
    pub fn namespace_names(&self) -> Vec<String> {
        std::iter::once(self.switch().name())
            .chain(self.hosts().map(|h| h.ns.name()))
            .map(str::to_owned)
            .collect()
    }
}
