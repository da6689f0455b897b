//! SERVICE_FILTER upkeep: the bitmap the XDP program tests before its SERVICES lookup. A bit
//! must be set while any service's key maps to it, so the bitmap is recomputed from the set of
//! live service keys rather than toggled.

use std::collections::HashSet;

use lb_common::{ServiceKey, filter_slot, service_filter_bit};

use super::{Dataplane, DataplaneError};

/// The services whose keys the bitmap covers.
#[derive(Default)]
pub(super) struct ServiceFilter {
    keys: HashSet<ServiceKey>,
}

fn word_and_bit(key: &ServiceKey) -> (u32, u64) {
    service_filter_bit(filter_slot(&key.addr, key.port, key.proto))
}

impl Dataplane {
    /// Sets the key's bit. Called before the key's SERVICES entry is written.
    pub(super) fn filter_add(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        if !self.filter.keys.insert(*key) {
            return Ok(());
        }
        self.write_filter_word(word_and_bit(key).0)
    }

    /// Clears the key's bit unless another service shares it. Called after the SERVICES entry
    /// is gone.
    pub(super) fn filter_remove(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        if !self.filter.keys.remove(key) {
            return Ok(());
        }
        self.write_filter_word(word_and_bit(key).0)
    }

    fn write_filter_word(&mut self, word: u32) -> Result<(), DataplaneError> {
        let value = self
            .filter
            .keys
            .iter()
            .map(word_and_bit)
            .filter(|&(w, _)| w == word)
            .fold(0u64, |acc, (_, bit)| acc | bit);
        self.service_filter
            .set(word, value, 0)
            .map_err(|source| DataplaneError::Write { name: "SERVICE_FILTER", source })
    }
}

impl Dataplane {
    /// Word `word` of SERVICE_FILTER as the kernel holds it (tests, diagnostics).
    pub fn service_filter_word(&self, word: u32) -> Result<u64, DataplaneError> {
        self.service_filter
            .get(&word, 0)
            .map_err(|source| DataplaneError::Write { name: "SERVICE_FILTER", source })
    }
}
