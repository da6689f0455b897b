//! SESSIONS, mapped into our memory and read in place: the XDP program is its only writer (see
//! lb_common::session_table). A walk of all 2^20 slots is a 64 MiB memory scan, not 2^20 pairs
//! of bpf() calls.

use aya::maps::Map;
use lb_common::{FlowKey, SESSION_BUCKETS, Session, SessionBucket, SessionSlot, session_bucket, session_hash};

use super::{DataplaneError, mapped::Mapped};

const BUCKETS: usize = SESSION_BUCKETS as usize;

pub(super) struct SessionTable {
    mem: Mapped,
}

impl SessionTable {
    pub(super) fn new(map: Map) -> Result<Self, DataplaneError> {
        Ok(SessionTable { mem: Mapped::new("SESSIONS", map, BUCKETS * size_of::<SessionBucket>())? })
    }

    fn bucket(&self, i: usize) -> SessionBucket {
        assert!(i < BUCKETS, "SESSIONS read past the map's end");
        // SAFETY: in bounds of a live mapping; volatile, as the program writes it meanwhile.
        unsafe { self.mem.elements::<SessionBucket>(BUCKETS).add(i).read_volatile() }
    }

    /// The flow's record, if it holds one.
    pub(super) fn get(&self, flow: &FlowKey) -> Option<Session> {
        self.slot(flow).map(|s| s.session)
    }

    /// The slot holding the flow's whole record, if any.
    pub(super) fn slot(&self, flow: &FlowKey) -> Option<SessionSlot> {
        let bucket = self.bucket(session_bucket(session_hash(flow)) as usize);
        bucket.slots.into_iter().find(|s| s.flow == *flow && s.is_valid())
    }

    /// Every whole record (a slot caught mid-write is skipped).
    pub(super) fn iter(&self) -> impl Iterator<Item = (FlowKey, Session)> + '_ {
        (0..BUCKETS).flat_map(move |i| {
            self.bucket(i).slots.into_iter().filter(|s| s.check != 0 && s.is_valid()).map(|s| (s.flow, s.session))
        })
    }

    /// Forgets every record. Tests and benchmarks only: a packet being handled meanwhile may
    /// still write its slot.
    pub(super) fn clear(&mut self) {
        // SAFETY: the whole live, writable mapping; all-zero is the empty table.
        unsafe { std::ptr::write_bytes(self.mem.elements::<SessionBucket>(BUCKETS), 0, BUCKETS) };
    }
}
