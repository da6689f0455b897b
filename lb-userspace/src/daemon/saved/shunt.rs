//! Shunting survives a restart. The adopted maps show which overflow backends take new flows,
//! not why, since when, nor for how long: that is saved in the state directory as document
//! `shunt-<instance>` (per shunted service, by name: `ServiceShunt::snapshot` and the times the
//! pool opened), written atomically when it changed (checked at every tick, once a second)
//! and at shutdown. A start that adopts the data plane takes it up before its first tick
//! (`Shunting::restore`): a pool open before the restart stays open, with no close, no reopen
//! and no hook run again; a TTL or drain_timeout that ran out while lb was down runs out at
//! the first tick. A first start ignores the document (the maps start empty, every pool
//! closed) and replaces it at its first tick.
//!
//! A crash loses at most the last second's changes of the pool state (the maps then follow the
//! saved state at the first tick).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{super::shunting::Shunting, instance_files::document_name};
use crate::{
    policy::ShuntSnapshot,
    state::{self, FileStore, StateError},
};

const VERSION: u32 = 1;

/// One service's shunting as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(in crate::daemon) struct SavedService {
    pub shunt: ShuntSnapshot,
    /// Times the pool went from closed to opening (`lb_shunt_openings_total`).
    pub opened_total: u64,
}

/// Per service name.
pub(in crate::daemon) type SavedServices = BTreeMap<String, SavedService>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedShunting {
    services: SavedServices,
}

pub(in crate::daemon) struct ShuntFile {
    store: FileStore,
    document: String,
    /// What was last written; None until the first write (which always happens).
    written: Option<SavedServices>,
    /// Read at start, until `take_loaded`.
    loaded: SavedServices,
}

impl ShuntFile {
    /// Reads the saved shunting. A corrupt file is set aside and reported (nothing restored); a
    /// file of another format version, or one that cannot be read, refuses the start (it is
    /// left untouched for the lb that wrote it).
    pub fn load(store: FileStore, instance: &str) -> Result<ShuntFile, StateError> {
        let document = document_name("shunt", instance);
        let loaded = state::load_or_report::<SavedShunting>(&store, &document, VERSION, "")?.unwrap_or_default().services;
        Ok(ShuntFile { store, document, written: None, loaded })
    }

    /// The state read at start (once; empty afterwards).
    pub fn take_loaded(&mut self) -> SavedServices {
        std::mem::take(&mut self.loaded)
    }

    /// Writes the shunting state if it changed since the last write. A failed write is
    /// reported and tried again at the next call.
    pub fn save_if_changed(&mut self, shunting: &Shunting) {
        let services = shunting.saved();
        if self.written.as_ref() == Some(&services) {
            return;
        }
        let saved = SavedShunting { services };
        match state::save(&self.store, &self.document, VERSION, &saved) {
            Ok(()) => self.written = Some(saved.services),
            Err(e) => tracing::error!("saving the shunting state: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-shunt-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn shunted(name: &str, port: u16) -> String {
        format!(
            "[[service]]\nname = \"{name}\"\nvip = \"10.0.0.1\"\nport = {port}\nprotocol = \"tcp\"\n[service.shunt]\n\
             [[service.backend]]\naddress = \"10.0.1.1\"\n[[service.backend]]\naddress = \"10.0.1.2\"\npool = \"overflow\"\n"
        )
    }

    #[test]
    fn saved_state_reads_back_and_a_service_the_config_dropped_is_forgotten() {
        let dir = temp_dir("roundtrip");
        let store = FileStore::open(&dir).expect("dir");
        let both = crate::config::Config::parse(&(shunted("web", 80) + &shunted("api", 81))).expect("config");
        let accounts = || super::super::super::accounts::Accounts::load(store.clone()).expect("accounts");
        let before = Shunting::new(&both, accounts(), 1_700_000_000);
        let mut file = ShuntFile::load(store.clone(), "web1").expect("load");
        file.save_if_changed(&before);
        let mut again = ShuntFile::load(store.clone(), "web1").expect("load");
        assert_eq!(again.take_loaded(), before.saved(), "read back as written");
        assert!(again.take_loaded().is_empty(), "taken once");
        // The next lb's config has web only: api's saved state is dropped, and said so.
        let web = crate::config::Config::parse(&shunted("web", 80)).expect("config");
        let mut after = Shunting::new(&web, accounts(), 1_700_000_100);
        let lines = after.restore(ShuntFile::load(store, "web1").expect("load").take_loaded());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("service api: saved shunt state (closed) dropped"), "{lines:?}");
        assert!(lines[1].starts_with("service web: overflow pool closed") && lines[1].ends_with("goes on"), "{lines:?}");
        assert_eq!(after.saved().keys().collect::<Vec<_>>(), ["web"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_nothing_is_restored() {
        let dir = temp_dir("corrupt");
        let store = FileStore::open(&dir).expect("dir");
        std::fs::write(dir.join("shunt-default.json"), b"{\"version\": 1, \"data\": {\"servi").expect("write");
        let mut file = ShuntFile::load(store, "default").expect("a corrupt file does not refuse the start");
        assert!(file.take_loaded().is_empty());
        let names: Vec<String> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        assert!(names.iter().any(|n| n.starts_with("shunt-default.json.corrupt-")), "{names:?}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_file_of_another_version_refuses_the_start_and_is_left_alone() {
        let dir = temp_dir("version");
        let store = FileStore::open(&dir).expect("dir");
        let text = b"{\"version\": 99, \"data\": {\"services\": {}}}";
        std::fs::write(dir.join("shunt-default.json"), text).expect("write");
        let err = ShuntFile::load(store, "default").err().expect("refused");
        assert!(err.to_string().contains("version 99"), "{err}");
        assert_eq!(std::fs::read(dir.join("shunt-default.json")).expect("still there"), text);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
