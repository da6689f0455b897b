//! Live changes survive a restart. The running services (the config file plus the live
//! changes made since it was applied) are saved in the state directory as document
//! `running-<instance>`, with the digest of the file's bytes they were based on and that
//! file's services; written atomically whenever the running services change (after a live
//! change, a reload, a drain that ended; checked again once a second) and at shutdown.
//!
//! The rule, at a start that adopts the data plane: if the config file is the one last applied
//! (same digest), the saved running services are restored, as if lb had never stopped; if it
//! changed while lb was down, the file wins as `lb reload` would, and each live change it
//! undoes is logged by name. A first start (nothing adopted) has no running state to continue:
//! it applies the file and replaces the document. Saved services that fail validation (or this
//! host's checks) are set aside and reported, and the file is applied.

use serde::{Deserialize, Serialize};

use super::{
    instance_files::document_name,
    live_changes::{LiveChange, live_changes},
};
use crate::{
    balancer::Balancer,
    config::Config,
    state::{self, FileStore, StateError, StateStore},
};

const VERSION: u32 = 1;

/// The document as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedRunning {
    /// FNV-1a (64 bit, 16 hex digits) of the bytes of the config file last applied: a change
    /// detector, not a security check.
    file_digest: String,
    /// The services lb ran, live changes included, in the config file's shape (JSON). Kept as
    /// a value so that a document whose services do not validate is still read (and reported).
    running: serde_json::Value,
    /// The services of the file last applied: `running` minus these are the live changes.
    file: serde_json::Value,
}

/// What a start applies, and what to tell the operator about it.
#[derive(Debug)]
pub(in crate::daemon) struct Chosen {
    pub config: Config,
    pub info: Vec<String>,
    pub warnings: Vec<String>,
}

pub(in crate::daemon) struct RunningFile {
    store: FileStore,
    document: String,
    /// Read at start, for `choose`.
    loaded: Option<SavedRunning>,
    /// The config file the running services are based on: its digest and services.
    basis: (u64, Config),
    /// What was last written (digest, running); None until the first write.
    written: Option<(u64, Config)>,
}

impl RunningFile {
    /// Reads the saved running services of `instance`; `file` and `digest` are the config file
    /// as read at this start. A corrupt document is set aside and reported (the file is used);
    /// one of another format version, or one that cannot be read, refuses the start (left
    /// untouched for the lb that wrote it).
    pub fn load(store: FileStore, instance: &str, file: &Config, digest: u64) -> Result<RunningFile, StateError> {
        let document = document_name("running", instance);
        let loaded = state::load_or_report::<SavedRunning>(&store, &document, VERSION, "; the config file is applied")?;
        Ok(RunningFile { store, document, loaded, basis: (digest, file.clone()), written: None })
    }

    /// The services this start applies (see the module's rule). `adopting`: the data plane of
    /// an earlier lb was adopted. `check` is what any config must pass on this host besides
    /// validation (preflight).
    pub fn choose(&mut self, adopting: bool, check: impl Fn(&Config) -> anyhow::Result<()>) -> Chosen {
        let file = self.basis.1.clone();
        let mut chosen = Chosen { config: file.clone(), info: Vec::new(), warnings: Vec::new() };
        let Some(saved) = self.loaded.take() else { return chosen };
        let location = self.store.location(&self.document);
        if !adopting {
            chosen.info.push(format!(
                "a first start (no data plane to adopt) applies the config file; the running services saved in \
                 {location} are not continued and will be replaced"
            ));
            return chosen;
        }
        if saved.file_digest != digest_text(self.basis.0) {
            // The file wins, as `lb reload` would: list what it undoes.
            match (Config::from_json(saved.file, "the saved config file"), Config::from_json(saved.running, "the saved running services")) {
                (Ok(old_file), Ok(running)) => {
                    for change in live_changes(&old_file, &running) {
                        if change.kept_by(&file, &running) {
                            chosen.info.push(format!("live change kept (the changed config file has it too): {change}"));
                        } else {
                            chosen.warnings.push(format!("live change dropped (the config file changed while lb was down): {change}"));
                        }
                    }
                }
                (Err(e), _) | (_, Err(e)) => chosen.warnings.push(format!(
                    "the config file changed while lb was down: it is applied; the live changes saved in {location} \
                     cannot be listed ({e})"
                )),
            }
            return chosen;
        }
        match restorable(saved.running, &file, &check) {
            Ok(running) => {
                let changes: Vec<LiveChange> = live_changes(&file, &running);
                if !changes.is_empty() {
                    let listed: Vec<String> = changes.iter().map(ToString::to_string).collect();
                    chosen.info.push(format!(
                        "the config file is unchanged since it was applied: the running services saved in {location} \
                         are restored, with {} live change(s): {}",
                        changes.len(),
                        listed.join("; ")
                    ));
                }
                chosen.config = running;
            }
            Err(reason) => {
                let aside = match self.store.set_aside(&self.document) {
                    Ok(aside) => format!("set aside as {aside}"),
                    Err(e) => format!("could not be set aside ({e})"),
                };
                chosen.warnings.push(format!(
                    "the running services saved in {location} are not valid ({reason:#}): {aside}; the config file is \
                     applied, live changes made before the restart are undone"
                ));
            }
        }
        chosen
    }

    /// `lb reload` applied the file `file` (of `digest`): the running services are based on it now.
    pub fn rebase(&mut self, file: Config, digest: u64) {
        self.basis = (digest, file);
    }

    /// Writes the running services of `balancer` if they (or the file they are based on)
    /// changed since the last write. A failed write is reported and tried again at the next call.
    pub fn save_if_changed(&mut self, balancer: &Balancer) {
        self.save_running(balancer.running_config());
    }

    fn save_running(&mut self, running: Config) {
        if self.written.as_ref().is_some_and(|(digest, written)| *digest == self.basis.0 && *written == running) {
            return;
        }
        let saved = SavedRunning {
            file_digest: digest_text(self.basis.0),
            running: serde_json::to_value(&running).unwrap_or_default(),
            file: serde_json::to_value(&self.basis.1).unwrap_or_default(),
        };
        match state::save(&self.store, &self.document, VERSION, &saved) {
            Ok(()) => self.written = Some((self.basis.0, running)),
            Err(e) => tracing::error!("saving the running services (live changes): {e}"),
        }
    }
}

/// The saved running services, if they pass what the file passed: validation, the session
/// table size lb was started with (it sized the maps), and this host's checks.
fn restorable(value: serde_json::Value, file: &Config, check: &impl Fn(&Config) -> anyhow::Result<()>) -> anyhow::Result<Config> {
    let running = Config::from_json(value, "the saved running services")?;
    if running.sessions != file.sessions {
        anyhow::bail!(
            "[sessions] capacity {} differs from the config file's {}",
            running.sessions.capacity,
            file.sessions.capacity
        );
    }
    check(&running)?;
    Ok(running)
}

fn digest_text(digest: u64) -> String {
    format!("{digest:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[sessions]
capacity = 65536

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
"#;

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("lb-running-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Dir(dir)
        }

        fn store(&self) -> FileStore {
            FileStore::open(&self.0).expect("dir")
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> =
                std::fs::read_dir(&self.0).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
            names.sort();
            names
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ok(_: &Config) -> anyhow::Result<()> {
        Ok(())
    }

    /// FILE with live changes: backend 10.0.1.13:8080 added, 10.0.1.11's weight 5.
    fn changed(file: &Config) -> Config {
        let mut running = file.clone();
        running.services[0].backends.push(crate::config::BackendConfig::primary("10.0.1.13".parse().expect("ip"), 8080, 2));
        running.services[0].backends[0].weight = 5;
        running
    }

    /// Saves `running`, based on FILE (digest 1), as lb does at exit.
    fn saved_at_exit(dir: &Dir, running: &Config) {
        let file = Config::parse(FILE).expect("valid");
        let mut doc = RunningFile::load(dir.store(), "web1", &file, 1).expect("load");
        doc.save_running(running.clone());
    }

    #[test]
    fn same_file_the_saved_running_services_win() {
        let dir = Dir::new("same");
        let file = Config::parse(FILE).expect("valid");
        saved_at_exit(&dir, &changed(&file));
        let mut doc = RunningFile::load(dir.store(), "web1", &file, 1).expect("load");
        let chosen = doc.choose(true, ok);
        assert_eq!(chosen.config, changed(&file), "the live changes are restored");
        assert!(chosen.warnings.is_empty(), "{:?}", chosen.warnings);
        let info = chosen.info.join("\n");
        assert!(
            info.contains("2 live change(s): backend 10.0.1.11:8080 of web: weight 1 -> 5; backend 10.0.1.13:8080 added to web (weight 2)"),
            "{info}"
        );
        // Another instance in the same directory has none of it.
        let mut other = RunningFile::load(dir.store(), "web2", &file, 1).expect("load");
        assert_eq!(other.choose(true, ok).config, file);
    }

    #[test]
    fn changed_file_the_file_wins_and_each_dropped_change_is_named() {
        let dir = Dir::new("changed");
        let file = Config::parse(FILE).expect("valid");
        saved_at_exit(&dir, &changed(&file));
        // While lb was down, 10.0.1.12's weight was set to 3 in the file.
        let mut new_file = file.clone();
        new_file.services[0].backends[1].weight = 3;
        let mut doc = RunningFile::load(dir.store(), "web1", &new_file, 2).expect("load");
        let chosen = doc.choose(true, ok);
        assert_eq!(chosen.config, new_file);
        assert_eq!(
            chosen.warnings,
            [
                "live change dropped (the config file changed while lb was down): backend 10.0.1.11:8080 of web: weight 1 -> 5",
                "live change dropped (the config file changed while lb was down): backend 10.0.1.13:8080 added to web (weight 2)",
            ]
        );
        // Saved again, the document is based on the new file and holds no live change.
        doc.save_running(new_file.clone());
        let mut again = RunningFile::load(dir.store(), "web1", &new_file, 2).expect("load");
        let chosen = again.choose(true, ok);
        assert_eq!(chosen.config, new_file);
        assert!(chosen.info.is_empty() && chosen.warnings.is_empty(), "{chosen:?}");
    }

    #[test]
    fn invalid_saved_services_are_set_aside_and_the_file_is_used() {
        let dir = Dir::new("invalid");
        let file = Config::parse(FILE).expect("valid");
        saved_at_exit(&dir, &changed(&file));
        let path = dir.0.join("running-web1.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("saved")).expect("JSON");
        json["data"]["running"]["service"][0]["backend"][0]["weight"] = serde_json::json!(0);
        std::fs::write(&path, serde_json::to_vec(&json).expect("JSON")).expect("write");
        let mut doc = RunningFile::load(dir.store(), "web1", &file, 1).expect("a readable document loads");
        let chosen = doc.choose(true, ok);
        assert_eq!(chosen.config, file);
        let warning = chosen.warnings.join("\n");
        assert!(warning.contains("are not valid") && warning.contains("weight") && warning.contains("set aside as"), "{warning}");
        let names = dir.names();
        assert!(names.iter().any(|n| n.starts_with("running-web1.json.corrupt-")) && !names.contains(&"running-web1.json".into()), "{names:?}");

        // Valid, but refused by this host's checks (preflight): the same.
        saved_at_exit(&dir, &changed(&file));
        let mut doc = RunningFile::load(dir.store(), "web1", &file, 1).expect("load");
        let chosen = doc.choose(true, |_| anyhow::bail!("no route to 10.0.1.13"));
        assert_eq!(chosen.config, file);
        assert!(chosen.warnings.join("").contains("no route to 10.0.1.13"), "{:?}", chosen.warnings);
    }

    #[test]
    fn a_first_start_applies_the_file_and_says_so() {
        let dir = Dir::new("first");
        let file = Config::parse(FILE).expect("valid");
        saved_at_exit(&dir, &changed(&file));
        let mut doc = RunningFile::load(dir.store(), "web1", &file, 1).expect("load");
        let chosen = doc.choose(false, ok);
        assert_eq!(chosen.config, file);
        assert!(chosen.info.join("").contains("a first start"), "{chosen:?}");
    }

    #[test]
    fn corrupt_is_set_aside_another_version_refuses_untouched() {
        let dir = Dir::new("corrupt");
        let file = Config::parse(FILE).expect("valid");
        std::fs::create_dir_all(&dir.0).expect("dir");
        std::fs::write(dir.0.join("running-web1.json"), b"{\"version\": 1, \"data\": {\"file_dig").expect("write");
        let mut doc = RunningFile::load(dir.store(), "web1", &file, 1).expect("a corrupt document does not refuse the start");
        assert_eq!(doc.choose(true, ok).config, file);
        assert!(dir.names().iter().any(|n| n.starts_with("running-web1.json.corrupt-")), "{:?}", dir.names());

        let text = b"{\"version\": 99, \"data\": {}}";
        std::fs::write(dir.0.join("running-web1.json"), text).expect("write");
        let err = RunningFile::load(dir.store(), "web1", &file, 1).err().expect("refused");
        assert!(err.to_string().contains("version 99"), "{err}");
        assert_eq!(std::fs::read(dir.0.join("running-web1.json")).expect("still there"), text);
    }
}
