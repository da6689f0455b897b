//! Reads and writes for changing a running balancer: zeroing the counters of a reused id,
//! counting the sessions that still point at each backend, and reading back what tests of
//! live changes compare.

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use lb_common::{ServiceInfo, ServiceKey, TrafficCounters, in_service_index};

use super::{Dataplane, DataplaneError, SessionCounts, SessionReader};

fn zero(map: &mut PerCpuArray<MapData, TrafficCounters>, name: &'static str, index: u32) -> Result<(), DataplaneError> {
    let write = |source| DataplaneError::Write { name, source };
    let cpus = map.get(&index, 0).map_err(write)?.len();
    let zeros = PerCpuValues::try_from(vec![TrafficCounters::default(); cpus])
        .map_err(|e| write(aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "zero counters", io_error: e })))?;
    map.set(index, zeros, 0).map_err(write)
}

impl Dataplane {
    /// Zeroes a backend id's traffic counters (before the id serves a new backend).
    pub fn reset_backend_counters(&mut self, id: u32) -> Result<(), DataplaneError> {
        zero(&mut self.backend_stats, "BACKEND_STATS", id)
    }

    /// Zeroes a service id's traffic counters (before the id serves a new service).
    pub fn reset_service_counters(&mut self, id: u32) -> Result<(), DataplaneError> {
        zero(&mut self.service_stats, "SERVICE_STATS", id)
    }

    /// How many active session records (handshake confirmed, not closing) name each (backend
    /// id, generation): one walk of SESSIONS, on the calling thread (see `SessionReader::counts`).
    pub fn session_counts(&self) -> SessionCounts {
        let never = std::sync::atomic::AtomicBool::new(false);
        self.sessions.reader().counts(&never).unwrap_or_default()
    }

    /// A handle on SESSIONS for walks on another thread (the daemon's census).
    pub fn session_reader(&self) -> SessionReader {
        self.sessions.reader()
    }

    /// Every service as the program would read it: its SERVICES entry with its SERVICE_BANKS word.
    pub fn service_entries(&self) -> Vec<(ServiceKey, ServiceInfo)> {
        self.services
            .iter()
            .filter_map(Result::ok)
            .map(|(key, entry)| (key, ServiceInfo::new(entry, self.service_banks.load(entry.id))))
            .collect()
    }

    /// Entry `i` of bank `bank` of the service's in-service list.
    pub fn in_service_slot(&self, service_id: u32, bank: u32, i: u32) -> Result<u32, DataplaneError> {
        self.in_service
            .get(&in_service_index(service_id, bank, i), 0)
            .map_err(|source| DataplaneError::Write { name: "IN_SERVICE", source })
    }
}
