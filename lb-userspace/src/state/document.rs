//! A document as stored: `{"version": N, "data": ...}`. A document that is not that (cut
//! short, garbled, of the wrong shape) is set aside and reported, never half-trusted; one of
//! another version is left untouched for the lb that wrote it.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{StateError, StateStore, check_name};

#[derive(Serialize)]
struct Envelope<'a, T> {
    version: u32,
    data: &'a T,
}

#[derive(Deserialize)]
struct StoredEnvelope {
    version: u32,
    data: serde_json::Value,
}

/// Saves `value` as document `name`, format `version`.
pub fn save<T: Serialize>(store: &dyn StateStore, name: &str, version: u32, value: &T) -> Result<(), StateError> {
    check_name(name)?;
    let bytes = serde_json::to_vec_pretty(&Envelope { version, data: value })
        .map_err(|e| StateError::Encode { location: store.location(name), reason: e.to_string() })?;
    store.write(name, &bytes)
}

/// Reads document `name` of format `version`: None if it was never written. A corrupt one is
/// set aside (`StateError::Corrupt` says where); the caller starts from empty.
pub fn load<T: DeserializeOwned>(store: &dyn StateStore, name: &str, version: u32) -> Result<Option<T>, StateError> {
    check_name(name)?;
    let Some(bytes) = store.read(name)? else { return Ok(None) };
    let stored: StoredEnvelope = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => return Err(set_aside(store, name, e.to_string())),
    };
    if stored.version != version {
        return Err(StateError::Version { location: store.location(name), found: stored.version, expected: version });
    }
    serde_json::from_value(stored.data).map(Some).map_err(|e| set_aside(store, name, e.to_string()))
}

/// `load`, for a document the start can do without: a corrupt one is reported (as an error,
/// followed by `otherwise`, what happens instead) and reads as never written. Another version,
/// or a store that cannot be read, is still an error.
pub fn load_or_report<T: DeserializeOwned>(store: &dyn StateStore, name: &str, version: u32, otherwise: &str) -> Result<Option<T>, StateError> {
    match load(store, name, version) {
        Err(e @ StateError::Corrupt { .. }) => {
            tracing::error!("{e}{otherwise}");
            Ok(None)
        }
        loaded => loaded,
    }
}

fn set_aside(store: &dyn StateStore, name: &str, reason: String) -> StateError {
    match store.set_aside(name) {
        Ok(set_aside_as) => StateError::Corrupt { location: store.location(name), set_aside_as, reason },
        Err(e) => e,
    }
}
