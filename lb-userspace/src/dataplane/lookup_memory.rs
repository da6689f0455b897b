//! LOOKUP, mapped into our memory. The map is BPF_F_MMAPABLE, so a whole table bank is written
//! with plain stores instead of one bpf() call per slot (65,537 calls for a default table): a new
//! table goes live in microseconds after it is built. Only inactive banks are ever written, and
//! the SERVICE_BANKS store that flips to a bank comes after them (a release store, ordered after
//! the bank's stores), so the program never sees a bank while it is being filled.

use aya::maps::Map;
use lb_common::{MAX_SERVICES, MAX_TABLE_SIZE, TABLE_BANKS};

use super::{DataplaneError, mapped::Mapped};

const SLOTS: usize = (MAX_SERVICES * TABLE_BANKS * MAX_TABLE_SIZE) as usize;
/// The kernel stores array values in 8-byte elements: a u32 slot is the first half of one.
const WORDS_PER_SLOT: usize = 2;

pub(super) struct LookupMemory {
    mem: Mapped,
}

impl LookupMemory {
    pub(super) fn new(map: Map) -> Result<Self, DataplaneError> {
        Ok(LookupMemory { mem: Mapped::new("LOOKUP", map, SLOTS * WORDS_PER_SLOT * size_of::<u32>())? })
    }

    fn words(&self) -> *mut u32 {
        self.mem.elements::<u32>(SLOTS * WORDS_PER_SLOT)
    }

    /// Copies `values` into slots `start..start + values.len()`.
    pub(super) fn write(&mut self, start: u32, values: &[u32]) {
        let start = start as usize;
        assert!(start + values.len() <= SLOTS, "LOOKUP write past the map's end");
        let words = self.words();
        for (i, value) in values.iter().enumerate() {
            // SAFETY: in bounds (checked above) of a live, writable mapping.
            unsafe { words.add((start + i) * WORDS_PER_SLOT).write(*value) };
        }
    }

    pub(super) fn read(&self, index: u32) -> u32 {
        assert!((index as usize) < SLOTS, "LOOKUP read past the map's end");
        // SAFETY: in bounds of a live mapping; volatile, as the kernel shares the memory.
        unsafe { self.words().add(index as usize * WORDS_PER_SLOT).read_volatile() }
    }
}
