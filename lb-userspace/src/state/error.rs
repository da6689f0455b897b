use std::path::PathBuf;

#[derive(thiserror::Error, Debug)]
pub enum StateError {
    #[error("state directory {}: {source}; create it, or give another --state-dir", dir.display())]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("cannot read {location}: {source}")]
    Read { location: String, source: std::io::Error },
    #[error("cannot write {location}: {source}; its previous content is intact")]
    Write { location: String, source: std::io::Error },
    #[error("cannot set aside {location}: {source}")]
    SetAside { location: String, source: std::io::Error },
    /// The document could not be read back; its bytes were moved to `set_aside_as`.
    #[error("{location} is corrupt ({reason}): set aside as {set_aside_as}, not used; the state starts empty")]
    Corrupt { location: String, set_aside_as: String, reason: String },
    /// Written by another version of lb: left untouched.
    #[error(
        "{location} is format version {found}, this lb reads version {expected}; it was left untouched: \
         run the lb that wrote it, or move the file away to start empty"
    )]
    Version { location: String, found: u32, expected: u32 },
    #[error("cannot encode {location}: {reason}")]
    Encode { location: String, reason: String },
    #[error("invalid state document name {0:?}: use 1 to 64 of a-z, 0-9, '_' and '-'")]
    Name(String),
}
