//! Drains in progress survive a restart. The maps tell the next lb that a backend is draining
//! (a healthy primary backend outside its table) but not since when nor for how long: that is
//! saved in the state directory as document `drains-<instance>` (service, backend address,
//! wall-clock start, timeout; one per instance, so instances sharing a directory keep theirs
//! apart), written atomically whenever the set of drains changes (checked once a
//! second) and at shutdown. A start that adopts the data plane gives each backend the maps show
//! draining its saved clock, so it ends on its original deadline (at once if that passed while
//! lb was down). Matched by service name and backend address: ids are the maps' business.
//!
//! What the maps and the config say wins: a saved drain of a backend the config removed, or
//! that the adopted maps show taking new flows, is dropped. A crash loses at most the drains of
//! its last second (those backends drain again from the restart, as before this file existed).

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::instance_files::document_name;
use crate::{
    balancer::Balancer,
    state::{self, FileStore, StateError},
};

const VERSION: u32 = 1;

/// One drain as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::daemon) struct SavedDrain {
    pub service: String,
    pub backend: SocketAddr,
    /// When it began, in milliseconds since the Unix epoch (the monotonic clock does not
    /// survive a reboot, and its origin is not shared with anyone).
    pub started_unix_ms: u64,
    pub timeout_secs: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedDrains {
    drains: Vec<SavedDrain>,
}

/// A drain as the balancer holds it, to notice changes: (service, backend, since, timeout).
type Held = (String, SocketAddr, Instant, Duration);

pub(in crate::daemon) struct DrainFile {
    store: FileStore,
    document: String,
    /// What was last written; None until the first write (which always happens).
    written: Option<Vec<Held>>,
    /// Read at start, for `restore`.
    loaded: Vec<SavedDrain>,
}

impl DrainFile {
    /// Reads the saved drains. A corrupt file is set aside and reported (no drain restored); a
    /// file of another format version, or one that cannot be read, refuses the start (it is
    /// left untouched for the lb that wrote it).
    pub fn load(store: FileStore, instance: &str) -> Result<DrainFile, StateError> {
        let document = document_name("drains", instance);
        let loaded = state::load_or_report::<SavedDrains>(&store, &document, VERSION, "")?.unwrap_or_default().drains;
        Ok(DrainFile { store, document, written: None, loaded })
    }

    /// After adopting the data plane: gives every backend that is draining the clock of its
    /// saved drain. Lines to log, one per saved drain.
    pub fn restore(&self, balancer: &mut Balancer) -> Vec<String> {
        let (now, now_unix_ms) = (Instant::now(), unix_ms(SystemTime::now()));
        let mut lines = Vec::new();
        for d in &self.loaded {
            let elapsed = Duration::from_millis(now_unix_ms.saturating_sub(d.started_unix_ms));
            let timeout = Duration::from_secs(d.timeout_secs);
            // A start further back than the monotonic clock reaches (a reboot since): the same
            // deadline, counted from now.
            let (since, timeout) = match now.checked_sub(elapsed) {
                Some(since) => (since, timeout),
                None => (now, timeout.saturating_sub(elapsed)),
            };
            let (service, backend) = (&d.service, d.backend);
            let line = if balancer.restore_drain(service, backend, since, timeout) {
                let left = (since + timeout).saturating_duration_since(now).as_secs();
                format!("service {service}: backend {backend} goes on draining: its {} s timeout ends in {left} s", d.timeout_secs)
            } else {
                format!("service {service}: saved drain of backend {backend} dropped: the config and the maps have it not draining")
            };
            lines.push(line);
        }
        lines
    }

    /// Writes the drains `balancer` holds if they changed since the last write. A failed write
    /// is reported and tried again at the next call.
    pub fn save_if_changed(&mut self, balancer: &Balancer) {
        let held = held(balancer);
        if self.written.as_ref() == Some(&held) {
            return;
        }
        let (now, now_unix_ms) = (Instant::now(), unix_ms(SystemTime::now()));
        let drains = held
            .iter()
            .map(|(service, backend, since, timeout)| SavedDrain {
                service: service.clone(),
                backend: *backend,
                started_unix_ms: now_unix_ms.saturating_sub(now.saturating_duration_since(*since).as_millis() as u64),
                timeout_secs: timeout.as_secs(),
            })
            .collect();
        match state::save(&self.store, &self.document, VERSION, &SavedDrains { drains }) {
            Ok(()) => self.written = Some(held),
            Err(e) => tracing::error!("saving the drains in progress: {e}"),
        }
    }
}

fn held(balancer: &Balancer) -> Vec<Held> {
    let services = balancer.services().iter();
    let backends = services.flat_map(|s| s.backends.iter().map(move |b| (s, b)));
    backends.filter_map(|(s, b)| b.drain.map(|d| (s.config.name.clone(), b.addr, d.since, d.timeout))).collect()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-drains-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn saved_drains_read_back_as_written() {
        let dir = temp_dir("roundtrip");
        let store = FileStore::open(&dir).expect("dir");
        let drain = SavedDrain { service: "web".into(), backend: "10.0.3.11:8080".parse().expect("addr"), started_unix_ms: 1_700_000_000_123, timeout_secs: 30 };
        state::save(&store, "drains-web1", VERSION, &SavedDrains { drains: vec![drain.clone()] }).expect("save");
        let file = DrainFile::load(store.clone(), "web1").expect("load");
        assert_eq!(file.loaded, vec![drain]);
        // Another instance in the same directory has drains of its own.
        assert!(DrainFile::load(store, "web2").expect("load").loaded.is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_nothing_is_restored() {
        let dir = temp_dir("corrupt");
        let store = FileStore::open(&dir).expect("dir");
        std::fs::write(dir.join("drains-default.json"), b"{\"version\": 1, \"data\": {\"drai").expect("write");
        let file = DrainFile::load(store, "default").expect("a corrupt file does not refuse the start");
        assert!(file.loaded.is_empty());
        let names: Vec<String> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        assert!(names.iter().any(|n| n.starts_with("drains-default.json.corrupt-")), "{names:?}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_file_of_another_version_refuses_the_start_and_is_left_alone() {
        let dir = temp_dir("version");
        let store = FileStore::open(&dir).expect("dir");
        let text = b"{\"version\": 99, \"data\": {\"drains\": []}}";
        std::fs::write(dir.join("drains-default.json"), text).expect("write");
        let err = DrainFile::load(store, "default").err().expect("refused");
        assert!(err.to_string().contains("version 99"), "{err}");
        assert_eq!(std::fs::read(dir.join("drains-default.json")).expect("still there"), text);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
