//! SERVICE_BANKS, mapped into our memory: one 8-byte word per service id saying which banks of
//! its table and in-service list are live (lb_common::ServiceBanks). A flip is one aligned
//! 8-byte store, which the program reads with one load: it sees the old banks or the new ones,
//! never a mix, and a change of many services costs no syscall and no freed map element each.

use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::Map;
use lb_common::{MAX_SERVICES, ServiceBanks};

use super::{DataplaneError, mapped::Mapped};

pub(super) struct ServiceBanksMemory {
    mem: Mapped,
}

impl ServiceBanksMemory {
    pub(super) fn new(map: Map) -> Result<Self, DataplaneError> {
        Ok(ServiceBanksMemory { mem: Mapped::new("SERVICE_BANKS", map, MAX_SERVICES as usize * size_of::<u64>())? })
    }

    fn word(&self, service_id: u32) -> &AtomicU64 {
        assert!(service_id < MAX_SERVICES, "SERVICE_BANKS index past the map's end");
        let words = self.mem.elements::<u64>(MAX_SERVICES as usize);
        // SAFETY: in bounds of a live mapping of 8-byte aligned (page-aligned) u64 values; the
        // program only loads them, so atomics are the right view of memory the kernel shares.
        unsafe { AtomicU64::from_ptr(words.add(service_id as usize)) }
    }

    /// Makes `banks` the service's live banks. Release: the banks' contents, written before,
    /// are visible to any run that loads the new word.
    pub(super) fn store(&mut self, service_id: u32, banks: &ServiceBanks) {
        self.word(service_id).store(banks.to_word(), Ordering::Release);
    }

    pub(super) fn load(&self, service_id: u32) -> ServiceBanks {
        ServiceBanks::from_word(self.word(service_id).load(Ordering::Acquire))
    }
}
