//! What survives a restart: small named documents (the contribution accounts, later the
//! open-state table), saved whole as versioned JSON through a `StateStore`.
//!
//! - `file`: the store under `--state-dir`, written atomically (temp file, fsync, rename,
//!   fsync of the directory), so a crash leaves the old document or the new one, never a mix;
//! - `memory`: a store in memory, for tests and for running without a state directory;
//! - `document`: the versioned envelope, and what happens to a document that cannot be read
//!   (set aside, reported, never trusted);
//! - `digest`: FNV-1a, to notice that a file changed (not a security check).
//!
//! The trait is bytes in, bytes out, so another store (Redis) can back it.

mod digest;
mod document;
mod error;
mod file;
mod memory;

#[cfg(test)]
mod tests;

pub use digest::fnv1a64;
pub use document::{load, load_or_report, save};
pub use error::StateError;
pub use file::FileStore;
pub use memory::MemoryStore;

/// Where documents are kept. A name is `[a-z0-9_-]{1,64}`.
pub trait StateStore {
    /// The document as last written, None if it was never written.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Replaces the document all at once: after a crash it reads as before or as after.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StateError>;
    /// Moves a document that cannot be trusted out of the way, keeping its bytes for a human;
    /// returns where it went. The name reads as never written afterwards.
    fn set_aside(&self, name: &str) -> Result<String, StateError>;
    /// Where the document lives, for messages.
    fn location(&self, name: &str) -> String;
}

pub(crate) fn check_name(name: &str) -> Result<(), StateError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(StateError::Name(name.to_string())) }
}
