//! SESSIONS, mapped into our memory and read in place: the XDP program is its only writer (see
//! lb_common::session_table). A walk of all slots (2^20 by default) is a scan of mapped memory
//! (16 MiB), not 2^20 pairs of bpf() calls.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use aya::maps::Map;
use lb_common::{FlowKey, Session, SessionBucket, SessionSlot, generation_tag, session_bucket, session_hash};

use super::{DataplaneError, mapped::Mapped};

/// Session records per backend incarnation: (id, generation tag) as records hold them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionCounts(HashMap<(u32, u16), u64>);

impl SessionCounts {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, session: &Session) {
        *self.0.entry((u32::from(session.backend_id), session.generation)).or_default() += 1;
    }

    /// Records over all backends.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Records naming backend `id` of generation `generation`.
    pub fn of(&self, id: u32, generation: u32) -> u64 {
        self.0.get(&(id, generation_tag(generation))).copied().unwrap_or(0)
    }
}

/// Counts by (id, generation), for tests.
impl<const N: usize> From<[((u32, u32), u64); N]> for SessionCounts {
    fn from(counts: [((u32, u32), u64); N]) -> Self {
        SessionCounts(counts.into_iter().map(|((id, generation), n)| ((id, generation_tag(generation)), n)).collect())
    }
}

/// Buckets between two looks at a walk's cancel flag (1 MiB of table).
const CANCEL_EVERY: usize = 4096;

/// A read-only handle on the mapped table that another thread may hold: it keeps the mapping
/// (and the map behind it) alive, so a walk off the daemon's loop can never read unmapped
/// memory, even if the Dataplane is dropped meanwhile.
#[derive(Clone)]
pub struct SessionReader {
    mem: Arc<Mapped>,
    /// Buckets the loader sized the map with (lb_common::session_buckets).
    buckets: u32,
}

impl SessionReader {
    fn bucket(&self, i: usize) -> SessionBucket {
        let n = self.buckets as usize;
        assert!(i < n, "SESSIONS read past the map's end");
        // SAFETY: in bounds of a live mapping; volatile, as the program writes it meanwhile.
        unsafe { self.mem.elements::<SessionBucket>(n).add(i).read_volatile() }
    }

    /// The records (hash, session) of buckets `range` (a slot caught mid-write is skipped).
    fn records(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = (u64, Session)> + '_ {
        range.flat_map(move |i| self.bucket(i).slots.into_iter().filter(|s| s.is_valid()).map(|s| (s.hash, s.session)))
    }

    /// How many active records (handshake confirmed, not closing) name each (backend id,
    /// generation): one walk of the whole table. None if `cancel` was set meanwhile. Closed UDP
    /// flows and TCP flows whose FIN/RST was never seen stay counted until a new flow takes
    /// their slot.
    pub fn counts(&self, cancel: &AtomicBool) -> Option<SessionCounts> {
        let mut counts = SessionCounts::new();
        let n = self.buckets as usize;
        for start in (0..n).step_by(CANCEL_EVERY) {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            for (_, s) in self.records(start..n.min(start + CANCEL_EVERY)).filter(|(_, s)| s.is_active()) {
                counts.add(&s);
            }
        }
        Some(counts)
    }
}

pub(super) struct SessionTable {
    reader: SessionReader,
}

impl SessionTable {
    pub(super) fn new(map: Map, buckets: u32) -> Result<Self, DataplaneError> {
        let mem = Mapped::new("SESSIONS", map, buckets as usize * size_of::<SessionBucket>())?;
        Ok(SessionTable { reader: SessionReader { mem: Arc::new(mem), buckets } })
    }

    pub(super) fn reader(&self) -> SessionReader {
        self.reader.clone()
    }

    /// Buckets in the table.
    pub(super) fn buckets(&self) -> u32 {
        self.reader.buckets
    }

    /// The flow's record, if it holds one.
    pub(super) fn get(&self, flow: &FlowKey) -> Option<Session> {
        self.slot(flow).map(|s| s.session)
    }

    /// The slot holding the flow's record, if any.
    pub(super) fn slot(&self, flow: &FlowKey) -> Option<SessionSlot> {
        let hash = session_hash(flow);
        let bucket = self.reader.bucket(session_bucket(hash, self.buckets()) as usize);
        bucket.slots.into_iter().find(|s| s.hash == hash)
    }

    /// Every record, as (its flow's session hash, session); a slot caught mid-write is skipped.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, Session)> + '_ {
        self.reader.records(0..self.buckets() as usize)
    }

    /// Forgets every record. Tests and benchmarks only: a packet being handled meanwhile may
    /// still write its slot, and a walk meanwhile may count some records and not others.
    pub(super) fn clear(&mut self) {
        // SAFETY: the whole live, writable mapping; all-zero is the empty table.
        let n = self.buckets() as usize;
        unsafe { std::ptr::write_bytes(self.reader.mem.elements::<SessionBucket>(n), 0, n) };
    }
}
