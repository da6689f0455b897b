//! The state documents that belong to one instance (`--instance`): their names, and their
//! removal by `lb detach`. Instances sharing a state directory keep theirs apart by name;
//! the contribution accounts (`contributions.json`) are shared and are not among them.

use std::path::{Path, PathBuf};

use crate::state::fnv1a64;

/// What each per-instance document holds, as the first part of its name: the drains in
/// progress, the running services (live changes), the health checkers' history, shunting.
pub const KINDS: [&str; 4] = ["drains", "running", "health", "shunt"];

/// The longest document name `crate::state` accepts.
const MAX_NAME: usize = 64;

/// The document of `kind` for `instance`: `<kind>-<instance>`, or, for an instance name a
/// document cannot carry (upper case, too long), `<kind>-h<FNV-1a of the name, 16 hex digits>`.
pub fn document_name(kind: &str, instance: &str) -> String {
    let fits = kind.len() + 1 + instance.len() <= MAX_NAME;
    let plain = fits && instance.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if plain {
        return format!("{kind}-{instance}");
    }
    format!("{kind}-h{:016x}", fnv1a64(instance.as_bytes()))
}

/// Removes `instance`'s documents from the state directory `dir` (for `lb detach`): each of
/// `KINDS`, a temp file a crash left, and copies set aside as corrupt. Other instances' files
/// and the shared contribution accounts stay. The paths removed; a missing directory is none.
pub fn remove_instance_files(dir: &Path, instance: &str) -> std::io::Result<Vec<PathBuf>> {
    let mine: Vec<(String, String, String)> = KINDS
        .iter()
        .map(|kind| {
            let document = document_name(kind, instance);
            (format!("{document}.json"), format!(".{document}.json.tmp"), format!("{document}.json.corrupt-"))
        })
        .collect();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if mine.iter().any(|(file, temp, aside)| name == file || name == temp || name.starts_with(aside.as_str())) {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_name_gives_a_valid_document_name_of_its_own() {
        assert_eq!(document_name("drains", "default"), "drains-default");
        assert_eq!(document_name("running", "default"), "running-default");
        let long = "a".repeat(64);
        for kind in KINDS {
            for name in ["Web", "web", long.as_str(), "x_Y-z", &"b".repeat(57)] {
                let document = document_name(kind, name);
                assert!(crate::state::check_name(&document).is_ok(), "{name}: {document}");
                assert!(document.starts_with(&format!("{kind}-")), "{document}");
            }
            assert_ne!(document_name(kind, "Web"), document_name(kind, "WEB"));
        }
        // Drains documents keep the names earlier lbs gave them (57 characters still plain).
        assert_eq!(document_name("drains", &"b".repeat(57)), format!("drains-{}", "b".repeat(57)));
        assert_eq!(document_name("drains", "Web"), format!("drains-h{:016x}", fnv1a64(b"Web")));
    }

    #[test]
    fn removing_an_instances_files_keeps_other_instances_and_the_accounts() {
        let dir = std::env::temp_dir().join(format!("lb-instance-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut mine = Vec::new();
        for kind in KINDS {
            mine.extend([format!("{kind}-web.json"), format!(".{kind}-web.json.tmp"), format!("{kind}-web.json.corrupt-1700000000")]);
        }
        let mut others: Vec<String> = KINDS.iter().flat_map(|k| [format!("{k}-web-2.json"), format!("{k}-webx.json"), format!(".{k}-web-2.json.tmp")]).collect();
        others.push("contributions.json".into());
        for name in mine.iter().chain(&others) {
            std::fs::write(dir.join(name), b"{}").expect("write");
        }
        let removed = remove_instance_files(&dir, "web").expect("removed");
        let mut expected: Vec<_> = mine.iter().map(|n| dir.join(n)).collect();
        expected.sort();
        assert_eq!(removed, expected);
        let mut left: Vec<String> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        left.sort();
        others.sort();
        assert_eq!(left, others);
        // Nothing there (or no directory at all): nothing to remove, no error.
        assert!(remove_instance_files(&dir, "web").expect("again").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(remove_instance_files(&dir, "web").expect("no directory").is_empty());
    }
}
