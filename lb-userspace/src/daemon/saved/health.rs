//! Health history survives a restart. Each checker's hysteresis (health, the results counted
//! toward the other health, whether the backend was ever up) is saved in the state directory
//! as document `health-<instance>`, by service name and backend address, with the service's
//! health settings; written at most once a second when it changed (the daemon's tick) and at
//! shutdown. A start that adopts the data plane starts each checker from its saved history, so
//! a backend with 2 of 3 `rise` successes needs one more, and one in the middle of failing
//! keeps its failures, when the maps agree: a saved health the maps' UP flag contradicts (the
//! maps are what the data plane did), or settings changed since, start from the maps' health
//! as before. A first start has no data plane to continue: every backend starts down.

use std::{collections::HashMap, net::SocketAddr};

use serde::{Deserialize, Serialize};

use super::instance_files::document_name;
use crate::{
    balancer::Balancer,
    health::{BackendHealthStatus, Health, HealthHistory},
    state::{self, FileStore, StateError},
};

const VERSION: u32 = 1;

/// (service name, backend address), as checkers and the status table key backends.
pub(in crate::daemon) type Key = (String, SocketAddr);

/// One backend's history as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedHealth {
    service: String,
    backend: SocketAddr,
    #[serde(flatten)]
    history: HealthHistory,
    /// The service's `[service.health]` then: a streak counts only toward the same checks.
    settings: serde_json::Value,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedHealths {
    backends: Vec<SavedHealth>,
}

pub(in crate::daemon) struct HealthFile {
    store: FileStore,
    document: String,
    /// What was last written; None until the first write.
    written: Option<Vec<SavedHealth>>,
    /// Read at start, for `restore`.
    loaded: Vec<SavedHealth>,
}

impl HealthFile {
    /// Reads the saved histories. A corrupt document is set aside and reported (checkers start
    /// from the maps' health); one of another format version, or one that cannot be read,
    /// refuses the start (left untouched for the lb that wrote it).
    pub fn load(store: FileStore, instance: &str) -> Result<HealthFile, StateError> {
        let document = document_name("health", instance);
        let loaded = state::load_or_report::<SavedHealths>(&store, &document, VERSION, "; health checks start from the maps' health")?.unwrap_or_default().backends;
        Ok(HealthFile { store, document, written: None, loaded })
    }

    /// The histories the checkers of `balancer`'s backends start from (`adopted`: the data
    /// plane of an earlier lb was adopted; otherwise none), and lines to log about them.
    pub fn restore(&mut self, balancer: &Balancer, adopted: bool) -> (HashMap<Key, HealthHistory>, Vec<String>) {
        let loaded = std::mem::take(&mut self.loaded);
        if !adopted {
            return (HashMap::new(), Vec::new());
        }
        restore(loaded, &backends(balancer))
    }

    /// Writes the histories of `table` (the checkers' status) for the backends `balancer` has,
    /// if they changed since the last write. A failed write is reported and tried again at the
    /// next call.
    pub fn save_if_changed(&mut self, table: &HashMap<Key, BackendHealthStatus>, balancer: &Balancer) {
        let histories = table.iter().map(|(k, s)| (k.clone(), s.history)).collect();
        self.save_histories(&histories, &backends(balancer));
    }

    fn save_histories(&mut self, histories: &HashMap<Key, HealthHistory>, current: &[Current]) {
        let backends: Vec<SavedHealth> = current
            .iter()
            .filter_map(|(key, _, settings)| {
                let history = *histories.get(key)?;
                Some(SavedHealth { service: key.0.clone(), backend: key.1, history, settings: settings.clone() })
            })
            .collect();
        if self.written.as_ref() == Some(&backends) {
            return;
        }
        match state::save(&self.store, &self.document, VERSION, &SavedHealths { backends: backends.clone() }) {
            Ok(()) => self.written = Some(backends),
            Err(e) => tracing::error!("saving the health checks' history: {e}"),
        }
    }
}

/// A backend lb runs: its key, its health in the maps, its service's health settings (JSON,
/// as saved).
type Current = (Key, Health, serde_json::Value);

fn backends(balancer: &Balancer) -> Vec<Current> {
    let mut current = Vec::new();
    for svc in balancer.services() {
        let settings = serde_json::to_value(&svc.config.health).unwrap_or_default();
        for b in &svc.backends {
            let maps = if b.up { Health::Up } else { Health::Down };
            current.push(((svc.config.name.clone(), b.addr), maps, settings.clone()));
        }
    }
    current
}

/// Which saved histories the checkers of `current` go on from: those of backends still there,
/// checked with the same settings, whose saved health the maps agree with.
fn restore(saved: Vec<SavedHealth>, current: &[Current]) -> (HashMap<Key, HealthHistory>, Vec<String>) {
    let (mut resumed, mut lines) = (HashMap::new(), Vec::new());
    for saved in saved {
        let key = (saved.service, saved.backend);
        let Some((_, maps, settings)) = current.iter().find(|(k, _, _)| *k == key) else { continue };
        let ((name, addr), maps) = (&key, *maps);
        if *settings != saved.settings {
            lines.push(format!("service {name}: backend {addr}: its health settings changed, its checks start from the maps' health ({})", word(maps)));
        } else if saved.history.health != maps {
            lines.push(format!(
                "service {name}: backend {addr}: saved health {}, the maps say {}: its checks start from the maps' health",
                word(saved.history.health),
                word(maps)
            ));
        } else {
            if saved.history.streak > 0 {
                let (toward, threshold, kind) = match maps {
                    Health::Up => ("down", &settings["fall"], "failures"),
                    Health::Down => ("up", &settings["rise"], "successes"),
                };
                lines.push(format!(
                    "service {name}: backend {addr} resumes its health checks {}: {} of {threshold} {kind} toward {toward}",
                    word(maps),
                    saved.history.streak
                ));
            }
            resumed.insert(key, saved.history);
        }
    }
    (resumed, lines)
}

fn word(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::HealthConfig, health::HealthState};

    fn key(service: &str, addr: &str) -> Key {
        (service.to_string(), addr.parse().expect("address"))
    }

    fn settings(rise: u32, fall: u32) -> serde_json::Value {
        serde_json::to_value(HealthConfig { rise, fall, ..HealthConfig::default() }).expect("JSON")
    }

    #[test]
    fn saved_streaks_read_back_and_resume_where_the_maps_agree() {
        let dir = std::env::temp_dir().join(format!("lb-health-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).expect("dir");
        // Before the restart: .11 down with 2 of 3 rise successes, .12 up with 1 of 2 failures,
        // .13 up and steady, .14 down (the maps will say up), .15 checked with rise 3 (now 2).
        let (mut rising, mut failing) = (HealthState::new(3, 2), HealthState::initial_up(3, 2));
        for ok in [true, false, false, true, true] {
            rising.record(ok);
        }
        failing.record(false);
        let histories: HashMap<Key, HealthHistory> = [
            (key("web", "10.0.1.11:80"), rising.history()),
            (key("web", "10.0.1.12:80"), failing.history()),
            (key("web", "10.0.1.13:80"), HealthHistory::starting(Health::Up)),
            (key("web", "10.0.1.14:80"), HealthHistory::starting(Health::Down)),
            (key("dns", "10.0.2.15:53"), rising.history()),
        ]
        .into();
        let before: Vec<Current> = vec![
            (key("web", "10.0.1.11:80"), Health::Down, settings(3, 2)),
            (key("web", "10.0.1.12:80"), Health::Up, settings(3, 2)),
            (key("web", "10.0.1.13:80"), Health::Up, settings(3, 2)),
            (key("web", "10.0.1.14:80"), Health::Down, settings(3, 2)),
            (key("dns", "10.0.2.15:53"), Health::Down, settings(3, 2)),
        ];
        let mut file = HealthFile::load(store.clone(), "web1").expect("load");
        file.save_histories(&histories, &before);

        let file = HealthFile::load(store.clone(), "web1").expect("load");
        assert_eq!(file.loaded.len(), 5, "read back: {:?}", file.loaded);
        let after: Vec<Current> = vec![
            (key("web", "10.0.1.11:80"), Health::Down, settings(3, 2)),
            (key("web", "10.0.1.12:80"), Health::Up, settings(3, 2)),
            (key("web", "10.0.1.13:80"), Health::Up, settings(3, 2)),
            (key("web", "10.0.1.14:80"), Health::Up, settings(3, 2)),
            (key("dns", "10.0.2.15:53"), Health::Down, settings(2, 2)),
        ];
        let (resumed, lines) = restore(file.loaded, &after);
        let mut keys: Vec<&Key> = resumed.keys().collect();
        keys.sort();
        assert_eq!(keys, [&key("web", "10.0.1.11:80"), &key("web", "10.0.1.12:80"), &key("web", "10.0.1.13:80")]);
        // One more success brings .11 up; one more failure takes .12 down.
        let mut s11 = HealthState::resume(3, 2, resumed[&key("web", "10.0.1.11:80")]);
        assert_eq!(s11.record(true), Some(Health::Up));
        let mut s12 = HealthState::resume(3, 2, resumed[&key("web", "10.0.1.12:80")]);
        assert_eq!(s12.record(false), Some(Health::Down));
        let text = lines.join("\n");
        for expected in [
            "service web: backend 10.0.1.11:80 resumes its health checks down: 2 of 3 successes toward up",
            "service web: backend 10.0.1.12:80 resumes its health checks up: 1 of 2 failures toward down",
            "service web: backend 10.0.1.14:80: saved health down, the maps say up: its checks start from the maps' health",
            "service dns: backend 10.0.2.15:53: its health settings changed",
        ] {
            assert!(text.contains(expected), "{expected}\nnot in\n{text}");
        }
        assert!(HealthFile::load(store, "other").expect("load").loaded.is_empty(), "another instance has none");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_corrupt_document_is_set_aside_another_version_refuses() {
        let dir = std::env::temp_dir().join(format!("lb-health-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).expect("dir");
        std::fs::write(dir.join("health-web1.json"), b"{\"version\": 1, \"data\": {\"backends\": [{").expect("write");
        assert!(HealthFile::load(store.clone(), "web1").expect("not refused").loaded.is_empty());
        let names: Vec<String> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        assert!(names.iter().any(|n| n.starts_with("health-web1.json.corrupt-")), "{names:?}");
        std::fs::write(dir.join("health-web1.json"), b"{\"version\": 7, \"data\": {}}").expect("write");
        assert!(HealthFile::load(store, "web1").err().expect("refused").to_string().contains("version 7"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
