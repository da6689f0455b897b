//! The session table (SESSIONS): where each flow was sent, kept by the XDP program itself in a
//! set-associative array instead of a kernel hash map. A kernel LRU insert cost ~300 ns per new
//! flow on our machines (its locks and free lists), more than the whole rest of the packet path;
//! writing one slot of an array costs a few ns.
//!
//! A flow lives in one bucket (chosen by its hash) of SESSION_WAYS slots; a bucket is one 64-byte
//! cache line, so finding a flow, or the slot a new one takes, costs one cache miss at most.
//! A record is 16 bytes: the flow's 64-bit hash stands for the flow (its low bits place it, the
//! rest, 42 bits or more, tell it from the bucket's other flows: two flows of one bucket share a
//! hash once in 10^12 looks, and then they share their table choice too, the low 32 bits being
//! the flow hash that picks backends). At 16 bytes a table of 2^20 records is 16 MiB, within
//! the last-level cache and the TLB's reach far more often than the 64 MiB that whole keys took
//! (a new flow's cost at 2^20 records fell from ~280 to ~200 ns of program time).
//!
//! A new record (always unconfirmed: made by the flow's first packet) takes the slot
//! `victim_rank` ranks first: an empty one, else an unconfirmed one (a first packet nobody
//! followed up), else a closing flow's, else the confirmed one seen longest ago if it has gone
//! unseen for about a minute. It never displaces a confirmed, recently seen record, so a flood
//! of spoofed first packets (SYN or not) cannot evict live connections.
//!
//! Slots are written without locks by every CPU. A writer claims a slot by swapping the hash it
//! read there for SESSION_WRITING (compare-and-swap: of two CPUs taking one slot, one wins, the
//! other records nothing), writes the session, then the flow's hash; a reader that reads the
//! hash, the session, then the hash again, both times its flow's, holds that flow's session.
//! A slot whose hash is 0 is empty.

use crate::{
    hash::flow_hash64,
    layout::{FlowKey, HASH_FIVE_TUPLE, Session},
    limits::{DEFAULT_SESSION_CAPACITY, MAX_SESSION_CAPACITY, MIN_SESSION_CAPACITY},
};

/// Slots per bucket: four 16-byte slots, one flow in each.
pub const SESSION_WAYS: usize = 4;
/// Buckets of SESSIONS for a capacity of `sessions` records (a power of two, so a flow's
/// bucket is a mask of its hash). The loader sizes the map with it and passes the mask to the
/// program (SESSION_BUCKET_MASK).
#[inline(always)]
pub const fn session_buckets(sessions: u32) -> u32 {
    sessions / SESSION_WAYS as u32
}
/// Buckets of SESSIONS at DEFAULT_SESSION_CAPACITY: how the object declares the map.
pub const DEFAULT_SESSION_BUCKETS: u32 = session_buckets(DEFAULT_SESSION_CAPACITY);
const _: () = assert!(
    DEFAULT_SESSION_CAPACITY.is_power_of_two()
        && MIN_SESSION_CAPACITY.is_power_of_two()
        && MAX_SESSION_CAPACITY.is_power_of_two()
        && session_buckets(MIN_SESSION_CAPACITY) > 0
        && MIN_SESSION_CAPACITY <= DEFAULT_SESSION_CAPACITY
        && DEFAULT_SESSION_CAPACITY <= MAX_SESSION_CAPACITY
);

/// `SessionSlot::hash` of a slot a CPU is writing: no flow's (session_hash never returns it).
pub const SESSION_WRITING: u64 = u64::MAX;

/// One flow's record.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionSlot {
    /// `session_hash` of the flow; 0 in an empty slot, SESSION_WRITING in one being written.
    pub hash: u64,
    pub session: Session,
    /// Coarse clock (about seconds, see `session_clock`) when a packet of the flow last passed.
    pub seen: u16,
}
const _: () = assert!(size_of::<SessionSlot>() == 16);

/// SESSIONS value: one bucket, one cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionBucket {
    pub slots: [SessionSlot; SESSION_WAYS],
}
const _: () = assert!(size_of::<SessionBucket>() == 64);

/// The hash that places a flow and stands for it in its slot: the five-tuple flow hash at 64
/// bits, whose low half picks the backend of a service hashing the five-tuple (the default), so
/// a new flow is hashed once. Never 0 nor SESSION_WRITING: those two have a bit of their high
/// half flipped (the low half, the flow hash, is always kept).
#[inline(always)]
pub fn session_hash(flow: &FlowKey) -> u64 {
    match flow_hash64(flow, HASH_FIVE_TUPLE) {
        h @ (0 | SESSION_WRITING) => h ^ (1 << 63),
        h => h,
    }
}

/// The bucket of a flow with hash `hash` in a table of `buckets` buckets (session_buckets).
#[inline(always)]
pub const fn session_bucket(hash: u64, buckets: u32) -> u32 {
    (hash as u32) & (buckets - 1)
}

/// The clock of `SessionSlot::seen`: nanoseconds >> 30, ticks of 1.07 s, wrapping every 19.5
/// hours (a record unseen that long looks recently seen for a minute of every 19.5 hours).
#[inline(always)]
pub const fn session_clock(ns: u64) -> u16 {
    (ns >> 30) as u16
}

/// Ticks of the session clock from `seen` to `now`.
#[inline(always)]
pub const fn session_idle(seen: u16, now: u16) -> u32 {
    now.wrapping_sub(seen) as u32
}

/// Ticks a confirmed record must have gone unseen before a new record may take its slot (about
/// a minute): a flood cannot evict a connection that is in use.
pub const IDLE_FOR_GOOD_TICKS: u32 = 60;

/// Rank offsets of `victim_rank`: every unconfirmed record goes before every closing one,
/// which goes before every confirmed one; within a kind, the longest idle first.
const UNCONFIRMED_RANK: u32 = 1 << 31;
const CLOSING_RANK: u32 = 1 << 30;
const IDLE_RANK_MAX: u32 = CLOSING_RANK - 1;

/// How readily a slot is given up for a new record (the highest rank is taken; the slot of the
/// new record's own flow is taken before all). `slot` is None for an empty (or torn) slot;
/// `idle` is the session clock's ticks since the slot's flow was seen. None: the slot may not
/// be taken.
#[inline(always)]
pub const fn victim_rank(slot: Option<&Session>, idle: u32) -> Option<u32> {
    let Some(s) = slot else {
        return Some(u32::MAX);
    };
    let idle = if idle > IDLE_RANK_MAX { IDLE_RANK_MAX } else { idle };
    if s.is_unconfirmed() {
        Some(UNCONFIRMED_RANK | idle)
    } else if s.is_closing() {
        Some(CLOSING_RANK | idle)
    } else if idle < IDLE_FOR_GOOD_TICKS {
        None
    } else {
        Some(idle)
    }
}

impl SessionSlot {
    /// Whether the slot holds a session (is neither empty nor being written).
    pub const fn is_valid(&self) -> bool {
        self.hash != 0 && self.hash != SESSION_WRITING
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{FAMILY_V4, addr_v4, port_raw};

    fn flow(sport: u16) -> FlowKey {
        FlowKey {
            src_addr: addr_v4([10, 0, 0, 1]),
            dst_addr: addr_v4([10, 9, 9, 9]),
            src_port: port_raw(sport),
            dst_port: port_raw(80),
            proto: 6,
            family: FAMILY_V4,
            _pad: [0; 2],
        }
    }

    const CONFIRMED: Session = Session { backend_id: 1, generation: 1, service_id: 0, flags: 0 };
    const fn with(flags: u8) -> Session {
        Session { flags, ..CONFIRMED }
    }

    #[test]
    fn a_new_record_never_displaces_a_live_confirmed_one() {
        use crate::layout::{SESSION_F_CLOSING, SESSION_F_UNCONFIRMED as U};
        // What a new record may take, and in which order.
        let empty = victim_rank(None, 0).unwrap();
        let unconfirmed_fresh = victim_rank(Some(&with(U)), 0).unwrap();
        let unconfirmed_old = victim_rank(Some(&with(U)), 5).unwrap();
        let closing = victim_rank(Some(&with(SESSION_F_CLOSING)), 1000).unwrap();
        let idle_for_good = victim_rank(Some(&CONFIRMED), IDLE_FOR_GOOD_TICKS).unwrap();
        let idle_longer = victim_rank(Some(&CONFIRMED), u32::MAX).unwrap();
        assert!(empty > unconfirmed_old && unconfirmed_old > unconfirmed_fresh);
        assert!(unconfirmed_fresh > closing && closing > idle_longer && idle_longer > idle_for_good);
        for idle in [0, 1, IDLE_FOR_GOOD_TICKS - 1] {
            assert_eq!(victim_rank(Some(&CONFIRMED), idle), None, "idle {idle}");
        }
    }

    #[test]
    fn an_empty_slot_is_not_valid() {
        assert!(!SessionSlot::default().is_valid());
        assert!(SessionSlot { hash: session_hash(&flow(1000)), ..Default::default() }.is_valid());
        assert!(!SessionSlot { hash: SESSION_WRITING, ..Default::default() }.is_valid());
    }

    #[test]
    fn the_clock_wraps_and_idle_follows_it() {
        let seen = session_clock(u64::from(u16::MAX) << 30);
        assert_eq!(session_idle(seen, session_clock((u64::from(u16::MAX) + 5) << 30)), 5);
        assert_eq!(session_idle(seen, seen), 0);
    }

    #[test]
    fn the_session_hash_keeps_the_flow_hash_in_its_low_half() {
        for port in 0..1000 {
            let key = flow(port);
            assert_eq!(session_hash(&key) as u32, crate::hash::flow_hash(&key, HASH_FIVE_TUPLE));
        }
    }

    #[test]
    fn structured_flows_have_distinct_hashes() {
        // 2^20 flows that differ only in client address and port: no two share a hash.
        let mut hashes = std::vec::Vec::with_capacity(1 << 20);
        for client in 0..256u32 {
            for port in 0..4096u16 {
                let mut key = flow(1024 + port);
                key.src_addr = addr_v4([10, 1, (client >> 8) as u8, client as u8]);
                hashes.push(session_hash(&key));
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), 1 << 20);
    }

    #[test]
    fn structured_flows_spread_over_buckets_like_random_ones() {
        // 2^20 flows that differ only in client address and port (what real traffic looks
        // like) into 2^18 buckets: a random placement leaves e^-4 of the buckets (~4,800)
        // empty and none holding more than ~16.
        let mut load = std::vec![0u8; DEFAULT_SESSION_BUCKETS as usize];
        for client in 0..256u32 {
            for port in 0..4096u16 {
                let mut key = flow(1024 + port);
                key.src_addr = addr_v4([10, 1, (client >> 8) as u8, client as u8]);
                let b = &mut load[session_bucket(session_hash(&key), DEFAULT_SESSION_BUCKETS) as usize];
                *b = b.saturating_add(1);
            }
        }
        let empty = load.iter().filter(|&&n| n == 0).count();
        let fullest = *load.iter().max().unwrap();
        assert!((4000..5600).contains(&empty), "{empty} empty buckets, expected ~4800");
        assert!(fullest <= 18, "a bucket holds {fullest} flows");
    }

    #[test]
    fn buckets_cover_the_table() {
        for capacity in [MIN_SESSION_CAPACITY, DEFAULT_SESSION_CAPACITY, MAX_SESSION_CAPACITY] {
            let buckets = session_buckets(capacity);
            assert_eq!(session_bucket(u64::MAX, buckets), buckets - 1);
            assert_eq!(session_bucket(u64::from(buckets), buckets), 0);
            assert_eq!(buckets as usize * SESSION_WAYS, capacity as usize);
        }
    }
}
