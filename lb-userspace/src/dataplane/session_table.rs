//! SESSIONS, mapped into our memory and read in place: the XDP program is its only writer (see
//! lb_common::session_table). A walk of all slots (2^20 by default) is a scan of mapped memory
//! (64 MiB), not 2^20 pairs of bpf() calls.

use aya::maps::Map;
use lb_common::{FlowKey, Session, SessionBucket, SessionSlot, session_bucket, session_hash};

use super::{DataplaneError, mapped::Mapped};

pub(super) struct SessionTable {
    mem: Mapped,
    /// Buckets the loader sized the map with (lb_common::session_buckets).
    buckets: u32,
}

impl SessionTable {
    pub(super) fn new(map: Map, buckets: u32) -> Result<Self, DataplaneError> {
        let mem = Mapped::new("SESSIONS", map, buckets as usize * size_of::<SessionBucket>())?;
        Ok(SessionTable { mem, buckets })
    }

    /// Buckets in the table.
    pub(super) fn buckets(&self) -> u32 {
        self.buckets
    }

    fn bucket(&self, i: usize) -> SessionBucket {
        let n = self.buckets as usize;
        assert!(i < n, "SESSIONS read past the map's end");
        // SAFETY: in bounds of a live mapping; volatile, as the program writes it meanwhile.
        unsafe { self.mem.elements::<SessionBucket>(n).add(i).read_volatile() }
    }

    /// The flow's record, if it holds one.
    pub(super) fn get(&self, flow: &FlowKey) -> Option<Session> {
        self.slot(flow).map(|s| s.session)
    }

    /// The slot holding the flow's whole record, if any.
    pub(super) fn slot(&self, flow: &FlowKey) -> Option<SessionSlot> {
        let bucket = self.bucket(session_bucket(session_hash(flow), self.buckets) as usize);
        bucket.slots.into_iter().find(|s| s.flow == *flow && s.is_valid())
    }

    /// Every whole record (a slot caught mid-write is skipped).
    pub(super) fn iter(&self) -> impl Iterator<Item = (FlowKey, Session)> + '_ {
        (0..self.buckets as usize).flat_map(move |i| {
            self.bucket(i).slots.into_iter().filter(|s| s.check != 0 && s.is_valid()).map(|s| (s.flow, s.session))
        })
    }

    /// Forgets every record. Tests and benchmarks only: a packet being handled meanwhile may
    /// still write its slot.
    pub(super) fn clear(&mut self) {
        // SAFETY: the whole live, writable mapping; all-zero is the empty table.
        let n = self.buckets as usize;
        unsafe { std::ptr::write_bytes(self.mem.elements::<SessionBucket>(n), 0, n) };
    }
}
