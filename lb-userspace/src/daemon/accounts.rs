//! The contribution accounts as the daemon keeps them: loaded from the state directory at
//! start, added to every second, saved every `SAVE_EVERY` (when they changed) and at shutdown.
//! A save runs on a blocking thread (it fsyncs), one at a time, from a copy: the loop never
//! waits for the disk. A crash loses at most the seconds since the last save.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::{
    policy::Contributions,
    state::{self, FileStore, StateError, StateStore},
};

/// How often changed accounts are written.
pub(super) const SAVE_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Accounts {
    contributions: Contributions,
    store: FileStore,
    /// What was last handed to a save (so an unchanged account is not written again).
    saved: Contributions,
    last_save: Instant,
    saving: Option<JoinHandle<()>>,
}

impl Accounts {
    /// Loads the accounts from `store`. A corrupt file is set aside and reported (the accounts
    /// start empty); a file of another format version, or one that cannot be read, refuses the
    /// start (it is left untouched, so nothing of it is lost).
    pub fn load(store: FileStore) -> Result<Accounts, StateError> {
        let loaded = state::load::<Contributions>(&store, Contributions::DOCUMENT, Contributions::VERSION);
        let contributions = match loaded {
            Ok(Some(c)) => {
                tracing::info!(file = %store.location(Contributions::DOCUMENT), "contribution accounts loaded");
                c
            }
            Ok(None) => Contributions::default(),
            Err(e @ StateError::Corrupt { .. }) => {
                tracing::error!("{e}");
                Contributions::default()
            }
            Err(e) => return Err(e),
        };
        Ok(Accounts { saved: contributions.clone(), contributions, store, last_save: Instant::now(), saving: None })
    }

    pub fn get(&self) -> &Contributions {
        &self.contributions
    }

    pub fn get_mut(&mut self) -> &mut Contributions {
        &mut self.contributions
    }

    /// Where the accounts are kept, for messages.
    pub fn location(&self) -> String {
        self.store.location(Contributions::DOCUMENT)
    }

    /// Starts a save if `SAVE_EVERY` has passed, the accounts changed and no save is running.
    pub fn save_if_due(&mut self, now: Instant) {
        let busy = self.saving.as_ref().is_some_and(|s| !s.is_finished());
        if busy || now < self.last_save + SAVE_EVERY || self.contributions == self.saved {
            return;
        }
        self.last_save = now;
        self.saved = self.contributions.clone();
        let (store, copy) = (self.store.clone(), self.saved.clone());
        self.saving = Some(tokio::task::spawn_blocking(move || write(&store, &copy)));
    }

    /// Waits for a save in progress, then writes what the accounts hold now (at shutdown).
    pub async fn save_now(&mut self) {
        if let Some(saving) = self.saving.take() {
            let _ = saving.await;
        }
        if self.contributions != self.saved {
            self.saved = self.contributions.clone();
            let (store, copy) = (self.store.clone(), self.saved.clone());
            let _ = tokio::task::spawn_blocking(move || write(&store, &copy)).await;
        }
    }
}

fn write(store: &FileStore, contributions: &Contributions) {
    match state::save(store, Contributions::DOCUMENT, Contributions::VERSION, contributions) {
        Ok(()) => tracing::debug!("contribution accounts saved"),
        // The file keeps its previous content; the next save tries again.
        Err(e) => tracing::error!("saving the contribution accounts: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{BackendSample, OverflowBackendState};

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-accounts-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn one_second(accounts: &mut Accounts, new_sessions: u64) {
        let addr = "10.0.3.21:80".parse().expect("addr");
        let sample = BackendSample { addr, new_sessions, active_sessions: 0, packets: 10, bytes: 1000 };
        accounts.get_mut().record_second("web", OverflowBackendState::Open, &sample);
    }

    #[tokio::test]
    async fn accounts_survive_a_restart_and_are_saved_only_when_due_and_changed() {
        let dir = temp_dir("restart");
        let mut a = Accounts::load(FileStore::open(&dir).expect("dir")).expect("nothing to load");
        assert_eq!(a.get(), &Contributions::default());
        one_second(&mut a, 7);
        let t0 = a.last_save;
        a.save_if_due(t0 + SAVE_EVERY / 2);
        assert!(a.saving.is_none(), "not due yet");
        a.save_if_due(t0 + SAVE_EVERY);
        a.saving.take().expect("a save started").await.expect("save task");
        one_second(&mut a, 5);
        a.save_now().await;
        let b = Accounts::load(FileStore::open(&dir).expect("dir")).expect("loads");
        assert_eq!(b.get(), a.get());
        let c = b.get().get("web", "10.0.3.21:80".parse().expect("addr")).expect("its account");
        assert_eq!((c.seconds_open, c.new_sessions, c.bytes), (2, 12, 2000));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_the_accounts_start_empty() {
        let dir = temp_dir("corrupt");
        let store = FileStore::open(&dir).expect("dir");
        std::fs::write(dir.join("contributions.json"), b"{\"version\": 1, \"data\": {\"servi").expect("write");
        let a = Accounts::load(store).expect("a corrupt file does not refuse the start");
        assert_eq!(a.get(), &Contributions::default());
        let names: Vec<String> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        assert!(names.iter().any(|n| n.starts_with("contributions.json.corrupt-")), "{names:?}");
        assert!(!names.iter().any(|n| n == "contributions.json"), "{names:?}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_file_of_another_version_refuses_the_start_and_is_left_alone() {
        let dir = temp_dir("version");
        let store = FileStore::open(&dir).expect("dir");
        let text = b"{\"version\": 99, \"data\": {}}";
        std::fs::write(dir.join("contributions.json"), text).expect("write");
        let err = Accounts::load(store).err().expect("refused");
        assert!(err.to_string().contains("version 99"), "{err}");
        assert_eq!(std::fs::read(dir.join("contributions.json")).expect("still there"), text);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
