//! The state file under crashes and corruption, on a real directory.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use super::*;

/// A fresh directory under the system's temp dir, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lb-state-{}-{test}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TestDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Accounts {
    openings: u64,
    note: String,
}

fn accounts(openings: u64) -> Accounts {
    Accounts { openings, note: "x".repeat(4096) }
}

#[test]
fn a_saved_document_reads_back_and_is_versioned_json() {
    let dir = TestDir::new("roundtrip");
    let store = FileStore::open(&dir.path().join("nested/state")).expect("creates the directory");
    assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), None, "never written");
    save(&store, "accounts", 1, &accounts(3)).expect("saved");
    assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), Some(accounts(3)));
    let text = fs::read_to_string(store.dir().join("accounts.json")).expect("the file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["version"], 1);
    assert_eq!(json["data"]["openings"], 3);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(store.dir()).expect("dir").permissions().mode() & 0o777, 0o700);
}

#[test]
fn a_crash_that_left_a_half_written_temp_file_leaves_the_previous_content() {
    let dir = TestDir::new("crash");
    let store = FileStore::open(dir.path()).expect("dir");
    save(&store, "accounts", 1, &accounts(1)).expect("saved");
    // What a crash between the temp file's write and the rename leaves behind.
    let full = serde_json::to_vec(&serde_json::json!({"version": 1, "data": accounts(2)})).expect("json");
    fs::write(store.temp_path("accounts"), &full[..full.len() / 2]).expect("half a temp file");
    assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), Some(accounts(1)));
    // The next write replaces the leftover and leaves no temp file.
    save(&store, "accounts", 1, &accounts(3)).expect("saved");
    assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), Some(accounts(3)));
    assert_eq!(dir.entries(), ["accounts.json"]);
}

#[test]
fn a_write_that_fails_midway_leaves_the_previous_content_and_says_so() {
    let dir = TestDir::new("failing");
    let store = FileStore::open(dir.path()).expect("dir");
    save(&store, "accounts", 1, &accounts(1)).expect("saved");
    let bytes = serde_json::to_vec(&serde_json::json!({"version": 1, "data": accounts(2)})).expect("json");
    // Half the document reaches the temp file, then the disk is full.
    let err = store
        .write_with("accounts", |f| {
            f.write_all(&bytes[..bytes.len() / 2])?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .expect_err("the write fails");
    let message = err.to_string();
    assert!(message.contains("accounts.json") && message.contains("previous content is intact"), "{message}");
    assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), Some(accounts(1)));
    assert_eq!(dir.entries(), ["accounts.json"], "no temp file left");
}

#[test]
fn a_corrupt_file_is_set_aside_and_reported_not_trusted() {
    let dir = TestDir::new("corrupt");
    let store = FileStore::open(dir.path()).expect("dir");
    for (k, garbage) in [&b"{\"version\": 1, \"data\": {\"openi"[..], b"\0\0\0\0", b"{\"version\": 1, \"data\": {\"openings\": \"many\"}}"]
        .into_iter()
        .enumerate()
    {
        fs::write(store.dir().join("accounts.json"), garbage).expect("corrupt file");
        let err = load::<Accounts>(&store, "accounts", 1).expect_err("corrupt");
        let StateError::Corrupt { set_aside_as, .. } = &err else { panic!("not reported as corrupt: {err}") };
        assert!(err.to_string().contains("is corrupt") && err.to_string().contains("set aside as"), "{err}");
        assert!(set_aside_as.contains("accounts.json.corrupt-"), "{set_aside_as}");
        assert_eq!(fs::read(set_aside_as).expect("kept for a human"), garbage);
        // Gone from its place: the next start begins empty instead of failing again.
        assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), None);
        assert_eq!(dir.entries().iter().filter(|e| e.contains(".corrupt-")).count(), k + 1, "each kept apart");
    }
}

#[test]
fn a_document_of_another_version_is_left_untouched() {
    let dir = TestDir::new("version");
    let store = FileStore::open(dir.path()).expect("dir");
    save(&store, "accounts", 2, &accounts(5)).expect("saved");
    let err = load::<Accounts>(&store, "accounts", 1).expect_err("newer format");
    assert!(matches!(err, StateError::Version { found: 2, expected: 1, .. }), "{err}");
    assert_eq!(dir.entries(), ["accounts.json"]);
}

#[test]
fn names_are_checked_and_a_file_is_no_state_directory() {
    let dir = TestDir::new("names");
    let store = FileStore::open(dir.path()).expect("dir");
    assert!(matches!(save(&store, "../etc/passwd", 1, &1), Err(StateError::Name(_))));
    assert!(matches!(store.read(""), Err(StateError::Name(_))));
    let file = dir.path().join("plain-file");
    fs::write(&file, b"").expect("file");
    let err = FileStore::open(&file).expect_err("not a directory");
    assert!(err.to_string().contains("--state-dir"), "{err}");
}

#[test]
fn the_memory_store_behaves_the_same() {
    let store = MemoryStore::default();
    save(&store, "accounts", 1, &accounts(1)).expect("saved");
    assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), Some(accounts(1)));
    store.write("accounts", b"not json").expect("written");
    assert!(matches!(load::<Accounts>(&store, "accounts", 1), Err(StateError::Corrupt { .. })));
    assert_eq!(load::<Accounts>(&store, "accounts", 1).expect("readable"), None);
    assert_eq!(store.set_aside_documents(), [("memory:accounts.corrupt-1".to_string(), b"not json".to_vec())]);
}
