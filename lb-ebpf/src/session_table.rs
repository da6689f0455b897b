//! The mechanics of SESSIONS (layout and rules in lb_common::session_table): find a flow's
//! slot, store a record, keep `seen` right, claim and release slots without locks. What a
//! record means is session.rs's.

use core::ptr::{read_volatile, write_volatile};

use lb_common::{
    DEFAULT_SESSION_BUCKETS, FlowKey, SESSION_WAYS, SESSION_WRITING, Session, SessionBucket, SessionSlot,
    session_clock, session_hash, session_idle, victim_rank,
};

use crate::{atomic::compare_and_swap, maps::SESSIONS};

/// A flow and its SESSIONS hash, computed once per packet.
pub struct Flow<'a> {
    pub key: &'a FlowKey,
    pub hash: u64,
}

impl<'a> Flow<'a> {
    #[inline(always)]
    pub fn new(key: &'a FlowKey) -> Self {
        Flow { key, hash: session_hash(key) }
    }
}

/// A flow's record as `find` read it: its slot, and a copy of its session taken while the slot
/// held the flow.
pub struct Found {
    pub slot: *mut SessionSlot,
    pub session: Session,
}

/// SESSIONS's buckets less one (their count is a power of two). A read-only global: the loader
/// (userspace `dataplane`) sets it with the size it gives SESSIONS, from `[sessions] capacity`.
#[unsafe(no_mangle)]
static SESSION_BUCKET_MASK: u32 = DEFAULT_SESSION_BUCKETS - 1;

/// The flow's bucket: lb_common::session_bucket with the loaded table's size.
#[inline(always)]
fn bucket_of(flow: &Flow) -> u32 {
    (flow.hash as u32) & unsafe { read_volatile(&SESSION_BUCKET_MASK) }
}

/// Starts loading the flow's bucket without waiting for it. A new flow's bucket is a cache
/// miss (and, past the TLB's reach, a page walk) that would otherwise stall `store` at the end
/// of the path; issued before the table lookup, it overlaps that lookup's own miss and the rest
/// of the choice (BPF has no prefetch instruction: a load whose value is unused is one).
#[inline(always)]
pub fn warm(flow: &Flow) {
    if let Some(bucket) = SESSIONS.get_ptr(bucket_of(flow)) {
        unsafe { read_volatile(&(*bucket).slots[0].hash) };
    }
}

/// Records `session` for `flow` in the slot `victim` picks; false if no slot may be taken, or
/// another CPU took it first.
#[inline(always)]
pub fn store(flow: &Flow, session: &Session, now_ns: u64) -> bool {
    let Some(bucket) = SESSIONS.get_ptr_mut(bucket_of(flow)) else {
        return false;
    };
    let now = session_clock(now_ns);
    let Some((i, held)) = victim(bucket, flow.hash, now) else {
        return false;
    };
    let slot = unsafe { &raw mut (*bucket).slots[i] };
    // Claimed first: until the flow's hash is back, no reader takes the session for its flow's,
    // and no other writer takes the slot.
    if !unsafe { compare_and_swap(&raw mut (*slot).hash, held, SESSION_WRITING) } {
        return false;
    }
    unsafe {
        write_volatile(&raw mut (*slot).session, *session);
        write_volatile(&raw mut (*slot).seen, now);
        write_volatile(&raw mut (*slot).hash, flow.hash);
    }
    true
}

/// Notes that a packet of the slot's flow passed now. One write a second at most: a busy flow
/// does not keep dirtying its cache line.
#[inline(always)]
pub fn touch(slot: *mut SessionSlot, now_ns: u64) {
    let now = session_clock(now_ns);
    unsafe {
        if (*slot).seen != now {
            (*slot).seen = now;
        }
    }
}

/// Ticks of the session clock since the slot's flow was last seen.
#[inline(always)]
pub fn idle(slot: *const SessionSlot, now_ns: u64) -> u32 {
    session_idle(unsafe { (*slot).seen }, session_clock(now_ns))
}

/// Sets `set` and clears `clear` (SESSION_F_* bits) in the record `found` read. Writes only if
/// that changes something.
#[inline(always)]
pub fn change_flags(found: &Found, set: u8, clear: u8) {
    let flags = (found.session.flags | set) & !clear;
    if flags != found.session.flags {
        unsafe { (*found.slot).session.flags = flags };
    }
}

/// Empties the slot if it still holds the record of the flow of hash `hash`: its flow is over.
#[inline(always)]
pub fn forget(hash: u64, slot: *mut SessionSlot) {
    unsafe { compare_and_swap(&raw mut (*slot).hash, hash, 0) };
}

/// The slot a new record of `flow` (of hash `hash`) takes, and the hash it holds: its own old
/// record, else the one lb_common::victim_rank ranks first; None if it may take none.
#[inline(always)]
fn victim(bucket: *const SessionBucket, hash: u64, now: u16) -> Option<(usize, u64)> {
    let mut victim = None;
    let mut best = 0u32;
    for i in 0..SESSION_WAYS {
        let slot = unsafe { &(*bucket).slots[i] };
        let held = unsafe { read_volatile(&slot.hash) };
        if held == hash {
            return Some((i, held));
        }
        if held == SESSION_WRITING {
            continue;
        }
        let session = if held == 0 { None } else { Some(&slot.session) };
        if let Some(rank) = victim_rank(session, session_idle(slot.seen, now)) {
            if victim.is_none() || rank > best {
                victim = Some((i, held));
                best = rank;
            }
        }
    }
    victim
}

/// The flow's record, if its bucket holds one.
#[inline(always)]
pub fn find(flow: &Flow) -> Option<Found> {
    let bucket = SESSIONS.get_ptr_mut(bucket_of(flow))?;
    for i in 0..SESSION_WAYS {
        let slot = unsafe { &raw mut (*bucket).slots[i] };
        if unsafe { read_volatile(&(*slot).hash) } == flow.hash {
            let session = unsafe { read_volatile(&(*slot).session) };
            // A writer taking the slot meanwhile claimed it (its hash changed) before it wrote
            // the session: the copy is the flow's only if the hash is still the flow's.
            if unsafe { read_volatile(&(*slot).hash) } != flow.hash {
                return None;
            }
            return Some(Found { slot, session });
        }
    }
    None
}
