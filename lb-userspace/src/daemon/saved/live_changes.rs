//! The live changes (`lb backend add/remove/weight`, `lb service add/remove`, drains that
//! ended) between the config file lb last applied and the services it runs: listed by name for
//! the log when a start puts them back or drops them.

use std::{fmt, net::SocketAddr};

use crate::config::{BackendConfig, Config, ServiceConfig};

/// One difference between the file and the running services, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::daemon) enum LiveChange {
    ServiceAdded(String),
    ServiceRemoved(String),
    /// Same name, other settings (removed and added again): the whole service differs.
    ServiceReplaced(String),
    BackendAdded { service: String, backend: SocketAddr, weight: u32 },
    BackendRemoved { service: String, backend: SocketAddr },
    /// Same address, other weight (or other settings, which only a replaced service can have).
    BackendChanged { service: String, backend: SocketAddr, from: u32, to: u32 },
}

impl fmt::Display for LiveChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveChange::ServiceAdded(name) => write!(f, "service {name} added"),
            LiveChange::ServiceRemoved(name) => write!(f, "service {name} removed"),
            LiveChange::ServiceReplaced(name) => write!(f, "service {name} replaced with other settings"),
            LiveChange::BackendAdded { service, backend, weight } => write!(f, "backend {backend} added to {service} (weight {weight})"),
            LiveChange::BackendRemoved { service, backend } => write!(f, "backend {backend} removed from {service}"),
            LiveChange::BackendChanged { service, backend, from, to } if from != to => {
                write!(f, "backend {backend} of {service}: weight {from} -> {to}")
            }
            LiveChange::BackendChanged { service, backend, .. } => write!(f, "backend {backend} of {service} changed"),
        }
    }
}

/// What turned `file` into `running`, service by service in the running order, then the
/// services removed.
pub(in crate::daemon) fn live_changes(file: &Config, running: &Config) -> Vec<LiveChange> {
    let mut changes = Vec::new();
    for now in &running.services {
        let Some(was) = service(file, &now.name) else {
            changes.push(LiveChange::ServiceAdded(now.name.clone()));
            continue;
        };
        if !same_settings(was, now) {
            changes.push(LiveChange::ServiceReplaced(now.name.clone()));
            continue;
        }
        for b in &now.backends {
            let addr = endpoint(b);
            match backend(was, addr) {
                None => changes.push(LiveChange::BackendAdded { service: now.name.clone(), backend: addr, weight: b.weight }),
                Some(old) if old != b => {
                    changes.push(LiveChange::BackendChanged { service: now.name.clone(), backend: addr, from: old.weight, to: b.weight })
                }
                Some(_) => {}
            }
        }
        for b in &was.backends {
            if backend(now, endpoint(b)).is_none() {
                changes.push(LiveChange::BackendRemoved { service: now.name.clone(), backend: endpoint(b) });
            }
        }
    }
    for was in &file.services {
        if service(running, &was.name).is_none() {
            changes.push(LiveChange::ServiceRemoved(was.name.clone()));
        }
    }
    changes
}

impl LiveChange {
    /// Whether `file` (another config file) has what this change made of `running`: then
    /// applying that file keeps it, nothing is lost.
    pub fn kept_by(&self, file: &Config, running: &Config) -> bool {
        match self {
            LiveChange::ServiceAdded(name) | LiveChange::ServiceReplaced(name) => {
                service(file, name).is_some() && service(file, name) == service(running, name)
            }
            LiveChange::ServiceRemoved(name) => service(file, name).is_none(),
            LiveChange::BackendAdded { service: name, backend: addr, .. } | LiveChange::BackendChanged { service: name, backend: addr, .. } => {
                let in_file = service(file, name).and_then(|s| backend(s, *addr));
                in_file.is_some() && in_file == service(running, name).and_then(|s| backend(s, *addr))
            }
            LiveChange::BackendRemoved { service: name, backend: addr } => service(file, name).is_none_or(|s| backend(s, *addr).is_none()),
        }
    }
}

fn service<'a>(config: &'a Config, name: &str) -> Option<&'a ServiceConfig> {
    config.services.iter().find(|s| s.name == name)
}

fn backend(svc: &ServiceConfig, addr: SocketAddr) -> Option<&BackendConfig> {
    svc.backends.iter().find(|b| endpoint(b) == addr)
}

fn endpoint(b: &BackendConfig) -> SocketAddr {
    SocketAddr::new(b.address, b.port)
}

/// Everything but the backends is equal.
fn same_settings(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    ServiceConfig { backends: Vec::new(), ..a.clone() } == ServiceConfig { backends: Vec::new(), ..b.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[service]]
name = "web"
vip = "10.0.0.1"
port = 80
protocol = "tcp"
forwarding = "nat"
  [[service.backend]]
  address = "10.0.1.11"
  port = 8080
  [[service.backend]]
  address = "10.0.1.12"
  port = 8080
  [[service.backend]]
  address = "10.0.1.13"
  port = 8080

[[service]]
name = "dns"
vip = "10.0.0.1"
port = 53
protocol = "udp"
forwarding = "nat"
  [[service.backend]]
  address = "10.0.2.11"
  port = 53
"#;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    /// FILE with live changes: a backend added to web, one removed, one reweighted; dns
    /// removed; api added.
    fn running() -> Config {
        let mut running = Config::parse(FILE).expect("valid");
        let web = &mut running.services[0];
        web.backends.push(BackendConfig::primary("10.0.1.14".parse().expect("ip"), 8080, 3));
        web.backends.retain(|b| b.address.to_string() != "10.0.1.12");
        web.backends[0].weight = 5;
        running.services.retain(|s| s.name != "dns");
        let mut api = running.services[0].clone();
        api.name = "api".into();
        api.port = 8081;
        running.services.push(api);
        running
    }

    #[test]
    fn lists_each_live_change_by_name() {
        let file = Config::parse(FILE).expect("valid");
        let lines: Vec<String> = live_changes(&file, &running()).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "backend 10.0.1.11:8080 of web: weight 1 -> 5",
                "backend 10.0.1.14:8080 added to web (weight 3)",
                "backend 10.0.1.12:8080 removed from web",
                "service api added",
                "service dns removed",
            ]
        );
        assert!(live_changes(&file, &file).is_empty());
        let mut replaced = file.clone();
        replaced.services[1].forwarding = crate::config::Forwarding::Dsr;
        assert_eq!(live_changes(&file, &replaced), [LiveChange::ServiceReplaced("dns".into())]);
    }

    #[test]
    fn a_change_the_new_file_also_has_is_kept() {
        let (file, running) = (Config::parse(FILE).expect("valid"), running());
        let changes = live_changes(&file, &running);
        // The new file took over the added backend and dropped dns; the rest is undone.
        let mut new_file = file.clone();
        new_file.services[0].backends.push(BackendConfig::primary("10.0.1.14".parse().expect("ip"), 8080, 3));
        new_file.services.retain(|s| s.name != "dns");
        let kept: Vec<String> = changes.iter().filter(|c| c.kept_by(&new_file, &running)).map(ToString::to_string).collect();
        assert_eq!(kept, ["backend 10.0.1.14:8080 added to web (weight 3)", "service dns removed"]);
        // The same backend with another weight in the new file is not what lb ran: dropped.
        new_file.services[0].backends.last_mut().expect("added").weight = 4;
        let added = LiveChange::BackendAdded { service: "web".into(), backend: addr("10.0.1.14:8080"), weight: 3 };
        assert!(!added.kept_by(&new_file, &running));
    }
}
