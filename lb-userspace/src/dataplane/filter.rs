//! Upkeep of the bitmap pre-filters the XDP program tests before a hash lookup: SERVICE_FILTER
//! (service keys) and NAT_REPLY_FILTER (NAT backend endpoints). A bit must stay set while any
//! live key maps to it, so each changed word is recomputed from the set of live keys rather
//! than toggled.

use std::collections::HashSet;

use aya::maps::{Array, MapData};
use lb_common::{Endpoint, filter_bit, filter_slot};

use super::DataplaneError;

/// One bitmap map and the keys it covers.
pub(super) struct KeyBitmap {
    name: &'static str,
    map: Array<MapData, u64>,
    keys: HashSet<Endpoint>,
}

fn word_and_bit(key: &Endpoint) -> (u32, u64) {
    filter_bit(filter_slot(&key.addr, key.port, key.proto))
}

impl KeyBitmap {
    pub(super) fn new(name: &'static str, map: Array<MapData, u64>) -> Self {
        KeyBitmap { name, map, keys: HashSet::new() }
    }

    /// Sets the key's bit. Called before the record the key guards is written.
    pub(super) fn add(&mut self, key: &Endpoint) -> Result<(), DataplaneError> {
        if !self.keys.insert(*key) {
            return Ok(());
        }
        self.write_word(word_and_bit(key).0)
    }

    /// Clears the key's bit unless another key shares it. Called after the guarded record is
    /// gone.
    pub(super) fn remove(&mut self, key: &Endpoint) -> Result<(), DataplaneError> {
        if !self.keys.remove(key) {
            return Ok(());
        }
        self.write_word(word_and_bit(key).0)
    }

    /// Takes `keys` as covered without writing (adopted maps already have their bits set).
    pub(super) fn adopt(&mut self, keys: impl Iterator<Item = Endpoint>) {
        self.keys.extend(keys);
    }

    /// Word `word` as the kernel holds it (tests, diagnostics).
    pub(super) fn word(&self, word: u32) -> Result<u64, DataplaneError> {
        self.map.get(&word, 0).map_err(|source| DataplaneError::Write { name: self.name, source })
    }

    fn write_word(&mut self, word: u32) -> Result<(), DataplaneError> {
        let value = self
            .keys
            .iter()
            .map(word_and_bit)
            .filter(|&(w, _)| w == word)
            .fold(0u64, |acc, (_, bit)| acc | bit);
        self.map.set(word, value, 0).map_err(|source| DataplaneError::Write { name: self.name, source })
    }
}
