//! LOOKUP, mapped into our memory. The map is BPF_F_MMAPABLE, so a whole table bank is written
//! with plain stores instead of one bpf() call per slot (65,537 calls for a default table): a new
//! table goes live in microseconds after it is built. Only inactive banks are ever written, and
//! the SERVICES update that flips to a bank is a syscall, so the program never sees a bank while
//! it is being filled.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::maps::{Map, MapData};
use lb_common::{MAX_SERVICES, MAX_TABLE_SIZE, TABLE_BANKS};

use super::DataplaneError;

const SLOTS: usize = (MAX_SERVICES * TABLE_BANKS * MAX_TABLE_SIZE) as usize;
/// The kernel stores array values in 8-byte elements: a u32 slot is the first half of one.
const WORDS_PER_SLOT: usize = 2;

pub(super) struct LookupMemory {
    slots: NonNull<u32>,
    bytes: usize,
    /// Keeps the map (and so the mapping's backing) alive as long as the mapping.
    _map: MapData,
}

// The mapping is only reached through &self / &mut self, like any owned buffer.
unsafe impl Send for LookupMemory {}
unsafe impl Sync for LookupMemory {}

impl LookupMemory {
    pub(super) fn new(map: Map) -> Result<Self, DataplaneError> {
        let Map::Array(map) = map else {
            return Err(DataplaneError::Map { name: "LOOKUP", detail: "not an array map".into() });
        };
        let bytes = SLOTS * WORDS_PER_SLOT * size_of::<u32>();
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a shared mapping of a map fd we own; the kernel checks size and flags.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if addr == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            return Err(DataplaneError::Map { name: "LOOKUP", detail: format!("mmap failed: {err} (is it BPF_F_MMAPABLE?)") });
        }
        let slots = NonNull::new(addr.cast::<u32>()).expect("mmap returned a null mapping");
        Ok(LookupMemory { slots, bytes, _map: map })
    }

    /// Copies `values` into slots `start..start + values.len()`.
    pub(super) fn write(&mut self, start: u32, values: &[u32]) {
        let start = start as usize;
        assert!(start + values.len() <= SLOTS, "LOOKUP write past the map's end");
        for (i, value) in values.iter().enumerate() {
            // SAFETY: in bounds (checked above) of a live, writable mapping.
            unsafe { self.slots.as_ptr().add((start + i) * WORDS_PER_SLOT).write(*value) };
        }
    }

    pub(super) fn read(&self, index: u32) -> u32 {
        assert!((index as usize) < SLOTS, "LOOKUP read past the map's end");
        // SAFETY: in bounds of a live mapping; volatile, as the kernel shares the memory.
        unsafe { self.slots.as_ptr().add(index as usize * WORDS_PER_SLOT).read_volatile() }
    }
}

impl Drop for LookupMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.slots.as_ptr().cast(), self.bytes) };
    }
}
